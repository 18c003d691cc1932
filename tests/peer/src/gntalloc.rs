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
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

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
            domid: domid.0,
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
                GrantRef(value)
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
