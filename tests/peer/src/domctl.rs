//! Hypervisor interface: `XEN_DOMCTL_destroydomain` through Linux's `/dev/xen/privcmd`, the way to kill a domain without the toolstack.
//!
//! `xl destroy` also removes the domain's xenstore nodes, so a backend learns of the death from
//! its watches. A domain destroyed by the hypercall alone keeps its nodes (nothing but libxl
//! removes them), which is the case a backend must still notice through its event channels.
//! Layouts from Xen's `public/domctl.h` (4.17: interface version 0x15, `struct xen_domctl` 144
//! bytes, `domain` at offset 8) and Linux `include/uapi/xen/privcmd.h`.

use grantsvc::ids::DomId;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// `__HYPERVISOR_domctl`.
const HYPERVISOR_DOMCTL: u64 = 36;
/// `XEN_DOMCTL_destroydomain`.
const DOMCTL_DESTROY_DOMAIN: u32 = 2;
/// `XEN_DOMCTL_INTERFACE_VERSION` of Xen 4.17: Xen refuses any other (EACCES).
const DOMCTL_INTERFACE_VERSION: u32 = 0x15;

/// `struct xen_domctl`: the header and the 128-byte union, of which destroydomain uses nothing.
#[repr(C, align(8))]
struct Domctl {
    command: u32,
    interface_version: u32,
    domain: u16,
    padding: [u16; 3],
    payload: [u8; 128],
}

const _: () = assert!(std::mem::size_of::<Domctl>() == 144);
const _: () = assert!(std::mem::offset_of!(Domctl, domain) == 8);

/// `struct privcmd_hypercall`.
#[repr(C)]
struct PrivcmdHypercall {
    operation: u64,
    arguments: [u64; 5],
}

/// `IOCTL_PRIVCMD_HYPERCALL`: `_IOC(_IOC_NONE, 'P', 0, sizeof(privcmd_hypercall_t))`.
const IOCTL_PRIVCMD_HYPERCALL: libc::c_ulong =
    ((std::mem::size_of::<PrivcmdHypercall>() as libc::c_ulong) << 16)
        | ((b'P' as libc::c_ulong) << 8);

/// Destroys `domain` with the hypercall alone: no xenstore clean-up, no device teardown.
pub fn destroy_domain(domain: DomId) -> io::Result<()> {
    let privcmd = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/xen/privcmd")?;
    // Xen reads the argument through dom0's page tables: it must be resident, so it lives in a
    // locked page of its own (libxc's hypercall buffers do the same).
    let mut domctl = Box::new(Domctl {
        command: DOMCTL_DESTROY_DOMAIN,
        interface_version: DOMCTL_INTERFACE_VERSION,
        domain: domain.get(),
        padding: [0; 3],
        payload: [0; 128],
    });
    let argument: *mut Domctl = &mut *domctl;
    // SAFETY: mlock only pins the pages of our own live allocation of that size.
    if unsafe { libc::mlock(argument.cast(), std::mem::size_of::<Domctl>()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let hypercall = PrivcmdHypercall {
        operation: HYPERVISOR_DOMCTL,
        arguments: [argument as u64, 0, 0, 0, 0],
    };
    // SAFETY: the ioctl reads `hypercall`, and Xen reads and writes the 144-byte `domctl` it
    // points to; both live across the call.
    let result = unsafe {
        libc::ioctl(
            privcmd.as_raw_fd(),
            IOCTL_PRIVCMD_HYPERCALL,
            &hypercall as *const PrivcmdHypercall,
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: unlocks the range locked above, still allocated.
    unsafe { libc::munlock(argument.cast(), std::mem::size_of::<Domctl>()) };
    if result < 0 {
        return Err(error);
    }
    Ok(())
}
