//! GrantMapping: an RAII guard over a grant region giving bounds-checked access to its bytes and unmapping it on drop.

use super::grant_list::RegionId;
use super::layout::PageRange;
use super::{GrantMapError, Pmap, RemoveError};
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::{ByteUpdate, Hypervisor, VirtualMemory};
use crate::ids::{DomId, GrantRef};
use crate::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use alloc::sync::Arc;

/// Something that can lend the pmap under its lock: `&spin::Mutex<Pmap>` (the kernel's global)
/// or `Arc<spin::Mutex<Pmap>>` (tests, or owners that share it).
pub trait PmapLock {
    type Hypervisor: Hypervisor + VirtualMemory;
    type Frames: FrameAllocator;
    /// Runs `body` with the pmap locked. Never call while already holding the lock.
    fn with_pmap<R>(&self, body: impl FnOnce(&mut Pmap<Self::Hypervisor, Self::Frames>) -> R) -> R;
}

impl<H: Hypervisor + VirtualMemory, A: FrameAllocator> PmapLock for &spin::Mutex<Pmap<H, A>> {
    type Hypervisor = H;
    type Frames = A;
    fn with_pmap<R>(&self, body: impl FnOnce(&mut Pmap<H, A>) -> R) -> R {
        body(&mut self.lock())
    }
}

impl<H: Hypervisor + VirtualMemory, A: FrameAllocator> PmapLock for Arc<spin::Mutex<Pmap<H, A>>> {
    type Hypervisor = H;
    type Frames = A;
    fn with_pmap<R>(&self, body: impl FnOnce(&mut Pmap<H, A>) -> R) -> R {
        body(&mut self.lock())
    }
}

/// A peer's grant refs mapped at an address the pmap chose. Access goes through the pmap lock
/// and checks that each page is still this mapping's (a `remove` elsewhere takes pages away
/// safely). Dropping it unmaps; a failed unmap is logged and the pages stay accounted.
pub struct GrantMapping<L: PmapLock> {
    lock: L,
    id: RegionId,
    range: PageRange,
    peer: DomId,
    readonly: bool,
    unmapped: bool,
}

impl<L: PmapLock> GrantMapping<L> {
    /// Maps `refs` of `peer` at a fresh range of the chosen-VA region.
    pub fn map(
        lock: L,
        peer: DomId,
        refs: &[GrantRef],
        readonly: bool,
    ) -> Result<Self, GrantMapError> {
        let mapped = lock.with_pmap(|pmap| {
            let pages = u64::try_from(refs.len()).map_err(|_| GrantMapError::Empty)?;
            if refs.is_empty() {
                return Err(GrantMapError::Empty);
            }
            if refs.len() > super::MAX_REGION_PAGES {
                return Err(GrantMapError::TooLarge {
                    pages: refs.len(),
                    limit: super::MAX_REGION_PAGES,
                });
            }
            let range = pmap.allocate_va(pages).ok_or(GrantMapError::BadRange)?;
            match pmap.enter_gnt(range.start(), peer, refs, readonly) {
                Ok(id) => Ok((id, range)),
                Err(error) => {
                    // Pages left mapped by a failed rollback keep their addresses for good.
                    let left = matches!(
                        error,
                        GrantMapError::Grant { left_mapped, .. }
                            | GrantMapError::Hypercall { left_mapped, .. } if left_mapped > 0
                    );
                    if !left {
                        let _ = pmap.free_va(range);
                    }
                    Err(error)
                }
            }
        })?;
        let (id, range) = mapped;
        Ok(GrantMapping {
            lock,
            id,
            range,
            peer,
            readonly,
            unmapped: false,
        })
    }

    /// The mapped range.
    pub fn range(&self) -> PageRange {
        self.range
    }

    /// The first mapped address.
    pub fn start(&self) -> VirtAddr {
        self.range.start()
    }

    /// The peer whose grants these are.
    pub fn peer(&self) -> DomId {
        self.peer
    }

    /// Unmaps now, reporting failures (pages that failed stay mapped and accounted).
    pub fn unmap(mut self) -> Result<(), RemoveError> {
        self.unmap_inner()
    }

    fn unmap_inner(&mut self) -> Result<(), RemoveError> {
        if self.unmapped {
            return Ok(());
        }
        self.unmapped = true;
        let range = self.range;
        self.lock.with_pmap(|pmap| {
            let result = pmap.remove(range);
            if result.is_ok() {
                if let Err(error) = pmap.free_va(range) {
                    log::error!("pmap: freeing the range of a grant mapping: {error}");
                }
            }
            result.map(|_| ())
        })
    }

    /// Runs `access` on the address of `offset` after checking that `length` bytes there are
    /// inside the mapping and still mapped by it.
    fn access<R>(
        &self,
        offset: usize,
        length: usize,
        write: bool,
        access: impl FnOnce(&mut L::Hypervisor, VirtAddr) -> Option<R>,
    ) -> Result<R, OutOfBounds> {
        let size = self.size();
        let refused = OutOfBounds {
            offset,
            length,
            size,
        };
        check_bounds(offset, length, size)?;
        if (write && self.readonly) || self.unmapped {
            return Err(refused);
        }
        let address = self
            .range
            .start()
            .checked_add(offset as u64)
            .ok_or(refused)?;
        let id = self.id;
        self.lock.with_pmap(|pmap| {
            let first = address.page_base().as_u64();
            let last = address.as_u64() + length.max(1) as u64 - 1;
            let mut page = first;
            while page <= last {
                let still_ours = VirtAddr::try_new(page)
                    .and_then(|page| pmap.grant_list().find(page))
                    .is_some_and(|region| region.id == id);
                if !still_ours {
                    return Err(refused);
                }
                page += PAGE_SIZE as u64;
            }
            access(&mut pmap.hypervisor, address).ok_or(refused)
        })
    }
}

impl<L: PmapLock> Drop for GrantMapping<L> {
    fn drop(&mut self) {
        if let Err(error) = self.unmap_inner() {
            log::error!(
                "pmap: unmapping grants of domain {} at {}: {error}",
                self.peer,
                self.range.start()
            );
        }
    }
}

impl<L: PmapLock> SharedMemory for GrantMapping<L> {
    fn size(&self) -> usize {
        usize::try_from(self.range.pages()).unwrap_or(0) * PAGE_SIZE
    }

    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        self.access(offset, into.len(), false, |memory, address| {
            memory.read_virtual(address, into).ok()
        })
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        self.access(offset, from.len(), true, |memory, address| {
            memory.write_virtual(address, from).ok()
        })
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        aligned(offset, 4, self.size())?;
        self.access(offset, 4, false, |memory, address| {
            memory.load_u32_virtual(address).ok()
        })
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        aligned(offset, 4, self.size())?;
        self.access(offset, 4, true, |memory, address| {
            memory.store_u32_virtual(address, value).ok()
        })
    }

    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        self.access(offset, 1, false, |memory, address| {
            memory.update_u8_virtual(address, ByteUpdate::Load).ok()
        })
    }

    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.access(offset, 1, true, |memory, address| {
            memory
                .update_u8_virtual(address, ByteUpdate::Store(value))
                .ok()
                .map(|_| ())
        })
    }

    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        self.access(offset, 1, true, |memory, address| {
            memory.update_u8_virtual(address, ByteUpdate::Or(bits)).ok()
        })
    }

    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        self.access(offset, 1, true, |memory, address| {
            memory
                .update_u8_virtual(address, ByteUpdate::And(bits))
                .ok()
        })
    }
}

/// Refuses a misaligned atomic access (it could straddle pages and is not atomic on x86).
fn aligned(offset: usize, alignment: usize, size: usize) -> Result<(), OutOfBounds> {
    if offset % alignment == 0 {
        Ok(())
    } else {
        Err(OutOfBounds {
            offset,
            length: alignment,
            size,
        })
    }
}
