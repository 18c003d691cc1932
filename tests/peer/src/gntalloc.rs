//! Hypervisor interface: pages shared with another domain through Linux's `/dev/xen/gntalloc` (all of this tool's unsafe for it).
//!
//! Layouts from Linux `include/uapi/xen/gntalloc.h`: `IOCTL_GNTALLOC_ALLOC_GREF` grants `count`
//! fresh zeroed pages to `domid` and returns their refs and a file offset (`index`, in bytes) at
//! which `mmap` maps them; `IOCTL_GNTALLOC_DEALLOC_GREF` ends the grants once they are unmapped
//! here too. If the other domain still maps a page, Linux keeps the grant and the page until it
//! lets go (it cannot revoke a live mapping), so dealloc never fails for that reason: only Xen's
//! grant-table dump shows it (see `pins`).

use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// `_IOC(_IOC_NONE, type, number, size)` on x86-64 (direction bits 0).
const fn ioctl_none(kind: u8, number: u8, size: usize) -> libc::c_ulong {
    ((size as libc::c_ulong) << 16) | ((kind as libc::c_ulong) << 8) | number as libc::c_ulong
}

/// `struct ioctl_gntalloc_alloc_gref` with its one declared `gref_ids` slot: the size the
/// request number encodes (24 bytes with padding).
#[repr(C)]
struct AllocGref {
    domid: u16,
    flags: u16,
    count: u32,
    index: u64,
    gref_ids: [u32; 1],
}

/// `struct ioctl_gntalloc_dealloc_gref`.
#[repr(C)]
struct DeallocGref {
    index: u64,
    count: u32,
}

const IOCTL_GNTALLOC_ALLOC_GREF: libc::c_ulong =
    ioctl_none(b'G', 5, std::mem::size_of::<AllocGref>());
const IOCTL_GNTALLOC_DEALLOC_GREF: libc::c_ulong =
    ioctl_none(b'G', 6, std::mem::size_of::<DeallocGref>());
const GNTALLOC_FLAG_WRITABLE: u16 = 1;
/// Bytes before `gref_ids` in the request.
const REFS_OFFSET: usize = std::mem::offset_of!(AllocGref, gref_ids);

/// Pages granted to one domain and mapped here.
pub struct GrantedPages {
    device: File,
    index: u64,
    refs: Vec<GrantRef>,
    base: NonNull<u8>,
    /// Set once unmapped and deallocated, so that Drop does not do it twice.
    released: bool,
}

impl GrantedPages {
    /// Grants `count` new pages to `domid` (writable or not) and maps them here read-write.
    pub fn allocate(domid: DomId, count: u32, writable: bool) -> io::Result<GrantedPages> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/gntalloc")?;
        // The request is the struct followed by the rest of the refs array: u64 words keep it
        // aligned for the struct.
        let bytes = REFS_OFFSET + 4 * count as usize;
        let mut request = vec![0u64; bytes.div_ceil(8).max(3)];
        let header = AllocGref {
            domid: domid.get(),
            flags: if writable { GNTALLOC_FLAG_WRITABLE } else { 0 },
            count,
            index: 0,
            gref_ids: [0],
        };
        let request_pointer = request.as_mut_ptr().cast::<AllocGref>();
        // SAFETY: `request` is at least 24 bytes (3 words) and 8-byte aligned, so it holds one
        // `AllocGref`; the write stays inside it.
        unsafe { request_pointer.write(header) };
        // SAFETY: the ioctl reads the header and writes `index` and `count` refs, all inside
        // `request`, which outlives the call; `device` is an open gntalloc file.
        let result = unsafe {
            libc::ioctl(
                device.as_raw_fd(),
                IOCTL_GNTALLOC_ALLOC_GREF,
                request_pointer,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `index`; reading it from our own initialized buffer.
        let index = unsafe { (*request_pointer).index };
        let refs = (0..count as usize)
            .map(|slot| {
                let offset = REFS_OFFSET + 4 * slot;
                let word = request.get(offset / 8).copied().unwrap_or(0);
                let value = (word >> ((offset % 8) * 8)) as u32;
                GrantRef::new(value)
            })
            .collect();
        let length = count as usize * PAGE_SIZE;
        // SAFETY: a fresh shared mapping of the pages just allocated at file offset `index`;
        // no existing memory is affected.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device.as_raw_fd(),
                index as libc::off_t,
            )
        };
        let Some(base) = NonNull::new(mapped.cast::<u8>()).filter(|_| mapped != libc::MAP_FAILED)
        else {
            let error = io::Error::last_os_error();
            // Nothing is mapped here: end the grants at once.
            let _ = dealloc(&device, index, count);
            return Err(error);
        };
        Ok(GrantedPages {
            device,
            index,
            refs,
            base,
            released: false,
        })
    }

    pub fn refs(&self) -> &[GrantRef] {
        &self.refs
    }

    fn count(&self) -> usize {
        self.refs.len()
    }

    fn page_pointer(&self, page: u32) -> io::Result<*mut u8> {
        if page as usize >= self.count() {
            return Err(io::Error::other(format!(
                "page {page} beyond {}",
                self.count()
            )));
        }
        // SAFETY: `page` < count, so the offset stays inside the mapping of count pages.
        Ok(unsafe { self.base.as_ptr().add(page as usize * PAGE_SIZE) })
    }

    /// Copies page `page` out. Another domain may write it meanwhile, so each byte is read
    /// once, volatile.
    pub fn read_page(&self, page: u32) -> io::Result<[u8; PAGE_SIZE]> {
        let source = self.page_pointer(page)?;
        let mut copy = [0u8; PAGE_SIZE];
        for (offset, byte) in copy.iter_mut().enumerate() {
            // SAFETY: `source + offset` lies in page `page` of our live mapping; volatile
            // because grantsvc writes the same memory.
            *byte = unsafe { source.add(offset).read_volatile() };
        }
        Ok(copy)
    }

    /// Writes page `page`.
    pub fn write_page(&self, page: u32, bytes: &[u8; PAGE_SIZE]) -> io::Result<()> {
        let target = self.page_pointer(page)?;
        for (offset, byte) in bytes.iter().enumerate() {
            // SAFETY: `target + offset` lies in page `page` of our live, writable mapping.
            unsafe { target.add(offset).write_volatile(*byte) };
        }
        Ok(())
    }

    /// The address of `length` bytes at byte `offset` of the shared pages, if inside them.
    fn range_pointer(&self, offset: usize, length: usize) -> io::Result<*mut u8> {
        let end = offset.checked_add(length);
        if end.is_none_or(|end| end > self.count() * PAGE_SIZE) {
            return Err(io::Error::other(format!(
                "{length} bytes at {offset} are beyond {} pages",
                self.count()
            )));
        }
        // SAFETY: offset + length stays inside the mapping of count pages (checked above).
        Ok(unsafe { self.base.as_ptr().add(offset) })
    }

    /// Copies bytes out, each read once, volatile (grantsvc may write the same memory).
    pub fn read_bytes(&self, offset: usize, into: &mut [u8]) -> io::Result<()> {
        let source = self.range_pointer(offset, into.len())?;
        for (index, byte) in into.iter_mut().enumerate() {
            // SAFETY: `source + index` lies inside the checked range of our live mapping.
            *byte = unsafe { source.add(index).read_volatile() };
        }
        Ok(())
    }

    /// Copies bytes in, volatile.
    pub fn write_bytes(&self, offset: usize, from: &[u8]) -> io::Result<()> {
        let target = self.range_pointer(offset, from.len())?;
        for (index, byte) in from.iter().enumerate() {
            // SAFETY: `target + index` lies inside the checked range of our live, writable mapping.
            unsafe { target.add(index).write_volatile(*byte) };
        }
        Ok(())
    }

    /// The aligned 32-bit word at `offset`, as an atomic shared with grantsvc.
    fn word(&self, offset: usize) -> io::Result<&AtomicU32> {
        if offset % 4 != 0 {
            return Err(io::Error::other(format!(
                "word offset {offset} is not aligned"
            )));
        }
        let pointer = self.range_pointer(offset, 4)?;
        // SAFETY: 4-aligned, inside our live mapping (checked), only ever accessed atomically
        // here; the reference does not outlive `self`, which keeps the mapping.
        Ok(unsafe { AtomicU32::from_ptr(pointer.cast::<u32>()) })
    }

    /// The byte at `offset`, as an atomic shared with grantsvc.
    fn byte(&self, offset: usize) -> io::Result<&AtomicU8> {
        let pointer = self.range_pointer(offset, 1)?;
        // SAFETY: inside our live mapping (checked), accessed atomically only; the reference
        // does not outlive `self`, which keeps the mapping.
        Ok(unsafe { AtomicU8::from_ptr(pointer) })
    }

    pub fn load_u32(&self, offset: usize) -> io::Result<u32> {
        Ok(self.word(offset)?.load(Ordering::Acquire))
    }

    pub fn store_u32(&self, offset: usize, value: u32) -> io::Result<()> {
        self.word(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    pub fn load_u8(&self, offset: usize) -> io::Result<u8> {
        Ok(self.byte(offset)?.load(Ordering::Acquire))
    }

    pub fn store_u8(&self, offset: usize, value: u8) -> io::Result<()> {
        self.byte(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    /// Sets `bits` in the byte at `offset`, returning its old value (a full barrier).
    pub fn fetch_or_u8(&self, offset: usize, bits: u8) -> io::Result<u8> {
        Ok(self.byte(offset)?.fetch_or(bits, Ordering::SeqCst))
    }

    /// Keeps only `bits` of the byte at `offset`, returning its old value (a full barrier).
    pub fn fetch_and_u8(&self, offset: usize, bits: u8) -> io::Result<u8> {
        Ok(self.byte(offset)?.fetch_and(bits, Ordering::SeqCst))
    }

    /// Unmaps the pages here and ends the grants.
    pub fn release(mut self) -> io::Result<()> {
        self.released = true;
        self.unmap_and_dealloc()
    }

    fn unmap_and_dealloc(&self) -> io::Result<()> {
        // SAFETY: `base` is the start of our mapping of count pages, made by `allocate`; no
        // reference into it outlives this call (every access copies).
        let unmapped = unsafe { libc::munmap(self.base.as_ptr().cast(), self.count() * PAGE_SIZE) };
        let unmap_result = if unmapped < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        dealloc(&self.device, self.index, self.count() as u32).and(unmap_result)
    }
}

/// The blkif frontend's ring code runs over grantsvc's own [`SharedMemory`] trait, so that the
/// same ring code is host-tested against grantsvc's backend ring and driven here over gntalloc.
impl SharedMemory for GrantedPages {
    fn size(&self) -> usize {
        self.count() * PAGE_SIZE
    }

    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, into.len(), self.size())?;
        GrantedPages::read_bytes(self, offset, into)
            .map_err(|_| out_of_bounds(self, offset, into.len()))
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, from.len(), self.size())?;
        GrantedPages::write_bytes(self, offset, from)
            .map_err(|_| out_of_bounds(self, offset, from.len()))
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        GrantedPages::load_u32(self, offset).map_err(|_| out_of_bounds(self, offset, 4))
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        GrantedPages::store_u32(self, offset, value).map_err(|_| out_of_bounds(self, offset, 4))
    }

    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        GrantedPages::load_u8(self, offset).map_err(|_| out_of_bounds(self, offset, 1))
    }

    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        GrantedPages::store_u8(self, offset, value).map_err(|_| out_of_bounds(self, offset, 1))
    }

    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        GrantedPages::fetch_or_u8(self, offset, bits).map_err(|_| out_of_bounds(self, offset, 1))
    }

    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        GrantedPages::fetch_and_u8(self, offset, bits).map_err(|_| out_of_bounds(self, offset, 1))
    }
}

/// The trait's error for a refused access (misaligned words included: they are refused too).
fn out_of_bounds(pages: &GrantedPages, offset: usize, length: usize) -> OutOfBounds {
    OutOfBounds {
        offset,
        length,
        size: pages.count() * PAGE_SIZE,
    }
}

/// Ends the grants of `count` pages at `index` (they must no longer be mapped here).
fn dealloc(device: &File, index: u64, count: u32) -> io::Result<()> {
    let request = DeallocGref { index, count };
    // SAFETY: the ioctl only reads `request`, which lives across the call.
    let result = unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            IOCTL_GNTALLOC_DEALLOC_GREF,
            &request as *const DeallocGref,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for GrantedPages {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Err(error) = self.unmap_and_dealloc() {
            eprintln!("grantsvc-peer: releasing the shared pages failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layouts_and_numbers_match_the_linux_header() {
        assert_eq!(std::mem::size_of::<AllocGref>(), 24);
        assert_eq!(REFS_OFFSET, 16);
        assert_eq!(std::mem::size_of::<DeallocGref>(), 16);
        // _IOC(_IOC_NONE, 'G', 5, 24) and _IOC(_IOC_NONE, 'G', 6, 16).
        assert_eq!(IOCTL_GNTALLOC_ALLOC_GREF, 0x0018_4705);
        assert_eq!(IOCTL_GNTALLOC_DEALLOC_GREF, 0x0010_4706);
    }
}
