//! Reads and writes through a page the pmap mapped in the chosen-VA region, for owners of ordinary and foreign mappings.
//!
//! The hypervisor's `VirtualMemory` touches whatever address it is given, so the pmap never
//! hands it out in production; these two methods are the checked way in for ordinary and
//! foreign pages (grant pages have `GrantMapping`). Each page of the access must be one the
//! pmap itself mapped in the chosen-VA region, with the access it needs, and the pmap is
//! borrowed for the whole access, so nothing can unmap the page meanwhile.

use super::layout::in_chosen_region;
use super::{Mapping, Pmap, Prot};
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::{Hypervisor, MemoryFault, VirtualMemory};

impl<H: Hypervisor + VirtualMemory, A: FrameAllocator> Pmap<H, A> {
    /// Copies `into.len()` bytes from `address`, every page of which must be an ordinary or
    /// foreign mapping of the pmap's in the chosen-VA region.
    pub fn read_mapped(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault> {
        self.check_mapped(address, into.len(), false)?;
        self.hypervisor.read_virtual(address, into)
    }

    /// Copies `from` to `address`, every page of which must be a writable ordinary or
    /// foreign mapping of the pmap's in the chosen-VA region.
    pub fn write_mapped(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault> {
        self.check_mapped(address, from.len(), true)?;
        self.hypervisor.write_virtual(address, from)
    }

    fn check_mapped(
        &self,
        address: VirtAddr,
        length: usize,
        write: bool,
    ) -> Result<(), MemoryFault> {
        let refused = MemoryFault { address, write };
        let last = address
            .checked_add(length.max(1) as u64 - 1)
            .ok_or(refused)?;
        let mut page = address.page_base();
        loop {
            let prot = match self.extract(page) {
                Some(Mapping::Ordinary { prot, .. } | Mapping::Foreign { prot, .. }) => prot,
                _ => return Err(refused),
            };
            if !in_chosen_region(page) || (write && !prot.contains(Prot::WRITE)) {
                return Err(refused);
            }
            if page.as_u64() >= last.page_base().as_u64() {
                return Ok(());
            }
            page = page.checked_add(PAGE_SIZE as u64).ok_or(refused)?;
        }
    }
}
