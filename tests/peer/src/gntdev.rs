//! Hypervisor interface: mapping granted pages in this process through Linux's `/dev/xen/gntdev` (the unsafe of the gntdev benchmark).
//!
//! Layouts from `/usr/include/xen/sys/gntdev.h` (Linux `include/uapi/xen/gntdev.h`):
//! `IOCTL_GNTDEV_MAP_GRANT_REF` enters `count` (domid, ref) pairs into the file's table and
//! returns the file offset (`index`) at which `mmap` maps them; the grant map hypercall itself
//! happens at `mmap` (a PV dom0 maps through the PTEs, `GNTMAP_contains_pte`) and the unmap at
//! `munmap`; `IOCTL_GNTDEV_UNMAP_GRANT_REF` then drops the entries.

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

/// `struct ioctl_gntdev_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GrantRefEntry {
    domid: u32,
    grant_ref: u32,
}

/// `struct ioctl_gntdev_map_grant_ref` with its one declared `refs` slot (24 bytes): the size
/// the request number encodes; the rest of the refs follow it.
#[repr(C)]
struct MapGrantRef {
    count: u32,
    pad: u32,
    index: u64,
    refs: [GrantRefEntry; 1],
}

/// `struct ioctl_gntdev_unmap_grant_ref`.
#[repr(C)]
struct UnmapGrantRef {
    index: u64,
    count: u32,
    pad: u32,
}

const IOCTL_GNTDEV_MAP_GRANT_REF: libc::c_ulong =
    ioctl_none(b'G', 0, std::mem::size_of::<MapGrantRef>());
const IOCTL_GNTDEV_UNMAP_GRANT_REF: libc::c_ulong =
    ioctl_none(b'G', 1, std::mem::size_of::<UnmapGrantRef>());
/// Bytes before `refs` in the map request.
const REFS_OFFSET: usize = std::mem::offset_of!(MapGrantRef, refs);

/// An open `/dev/xen/gntdev` with a request buffer kept across calls.
pub struct Gntdev {
    device: File,
    /// The map request: header and refs, in u64 words for alignment.
    request: Vec<u64>,
}

/// Pages mapped here through gntdev: unmapped (`munmap`, then the unmap ioctl) by [`Gntdev::unmap`].
#[must_use = "unmap it with Gntdev::unmap"]
pub struct Mapped {
    index: u64,
    count: usize,
    base: NonNull<u8>,
}

impl Gntdev {
    pub fn open() -> io::Result<Gntdev> {
        let device = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/xen/gntdev")?;
        Ok(Gntdev {
            device,
            request: Vec::new(),
        })
    }

    /// Maps `refs` of `domain` read-write here: the map ioctl, then `mmap`.
    pub fn map(&mut self, domain: DomId, refs: &[GrantRef]) -> io::Result<Mapped> {
        let count = refs.len();
        if count == 0 {
            return Err(io::Error::other("no refs to map"));
        }
        let entry_size = std::mem::size_of::<GrantRefEntry>();
        let words = (REFS_OFFSET + entry_size * count).div_ceil(8).max(3);
        self.request.clear();
        self.request.resize(words, 0);
        let header = self.request.as_mut_ptr().cast::<MapGrantRef>();
        // SAFETY: the buffer is at least 24 bytes (3 words) and 8-byte aligned, so the header
        // fits; each entry is written at REFS_OFFSET + 8 * slot, inside the `words` words sized
        // for `count` entries; u32 fields at 4-byte-aligned offsets.
        unsafe {
            (*header).count = count as u32;
            let entries = header.cast::<u8>().add(REFS_OFFSET).cast::<GrantRefEntry>();
            for (slot, grant_ref) in refs.iter().enumerate() {
                entries.add(slot).write(GrantRefEntry {
                    domid: u32::from(domain.get()),
                    grant_ref: grant_ref.get(),
                });
            }
        }
        // SAFETY: the ioctl reads the header and `count` entries and writes `index`, all inside
        // the buffer, which outlives the call; `device` is an open gntdev file.
        let result =
            unsafe { libc::ioctl(self.device.as_raw_fd(), IOCTL_GNTDEV_MAP_GRANT_REF, header) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel filled `index` in our own initialized buffer.
        let index = unsafe { (*header).index };
        // SAFETY: a fresh shared mapping at the offset the ioctl returned; no existing memory
        // is affected.
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                count * PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.device.as_raw_fd(),
                index as libc::off_t,
            )
        };
        let Some(base) = NonNull::new(mapped.cast::<u8>()).filter(|_| mapped != libc::MAP_FAILED)
        else {
            let error = io::Error::last_os_error();
            let _ = self.unmap_ioctl(index, count);
            return Err(error);
        };
        Ok(Mapped { index, count, base })
    }

    /// Unmaps `mapped`: `munmap` (the grant unmap), then the unmap ioctl.
    pub fn unmap(&mut self, mapped: Mapped) -> io::Result<()> {
        // SAFETY: `base` is the start of the mapping of `count` pages made by `map`; nothing
        // refers into it after this call (`Mapped` is consumed, `touch` only reads).
        let unmapped =
            unsafe { libc::munmap(mapped.base.as_ptr().cast(), mapped.count * PAGE_SIZE) };
        if unmapped < 0 {
            return Err(io::Error::last_os_error());
        }
        self.unmap_ioctl(mapped.index, mapped.count)
    }

    fn unmap_ioctl(&self, index: u64, count: usize) -> io::Result<()> {
        let request = UnmapGrantRef {
            index,
            count: count as u32,
            pad: 0,
        };
        // SAFETY: the ioctl only reads `request`, which lives across the call.
        let result = unsafe {
            libc::ioctl(
                self.device.as_raw_fd(),
                IOCTL_GNTDEV_UNMAP_GRANT_REF,
                &request as *const UnmapGrantRef,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Mapped {
    /// Reads the first byte of every page (volatile, so that each access happens): what a
    /// user of the mapping does at least once, and where a lazily mapping kernel would fault.
    pub fn touch(&self) -> u8 {
        let mut sum = 0u8;
        for page in 0..self.count {
            // SAFETY: page < count, so the byte is inside the live mapping; a volatile read of
            // a u8 has no alignment requirement.
            let byte = unsafe { self.base.as_ptr().add(page * PAGE_SIZE).read_volatile() };
            sum = sum.wrapping_add(byte);
        }
        sum
    }
}
