//! Hypercalls that set up the vcpu: trap table, callbacks, one-shot timer; plus version and console_io.

use super::hypercall::{hypercall1, hypercall2, hypercall3};
use crate::kernel::boot::{traps, upcall};
use grantsvc::abi::hypercall_numbers::{
    CONSOLEIO_WRITE, CONSOLE_IO, SET_CALLBACKS, SET_TIMER_OP, SET_TRAP_TABLE, XENVER_EXTRAVERSION,
    XENVER_VERSION, XEN_VERSION,
};
use grantsvc::hypervisor::XenError;

/// Installs boot's trap stubs as the virtual IDT. It takes no table: Xen jumps to whatever
/// addresses the table holds, so a safe function must not let a caller choose them.
pub fn set_trap_table() -> Result<(), XenError> {
    let table = traps::trap_table();
    if table.last().map(|last| last.address) != Some(0) {
        return Err(XenError::EINVAL);
    }
    // SAFETY: Xen reads trap_info entries up to the zero-address sentinel, which the check
    // above puts inside the array; the addresses are boot's trap stubs, built for Xen's frame.
    let result = unsafe { hypercall1(SET_TRAP_TABLE, table.as_ptr() as u64) };
    XenError::check(result).map(|_| ())
}

/// Registers boot's event-upcall and failsafe entries. Like `set_trap_table` it takes no
/// addresses, so no caller can make Xen jump somewhere else.
pub fn set_callbacks() -> Result<(), XenError> {
    let (event_entry, failsafe_entry) = upcall::entry_points();
    // SAFETY: no pointer is dereferenced by Xen; it jumps to these addresses later, and they
    // are boot's asm entry stubs, written for Xen's upcall and failsafe frames.
    let result = unsafe { hypercall3(SET_CALLBACKS, event_entry, failsafe_entry, 0) };
    XenError::check(result).map(|_| ())
}

/// Arms the one-shot timer for Xen system time `deadline_ns` (0 cancels it).
pub fn set_timer_op(deadline_ns: u64) -> Result<(), XenError> {
    // SAFETY: no pointer.
    let result = unsafe { hypercall1(SET_TIMER_OP, deadline_ns) };
    XenError::check(result).map(|_| ())
}

/// Xen's version: (major, minor, extra version such as ".7").
pub fn xen_version() -> (u32, u32, [u8; 16]) {
    // SAFETY: XENVER_version takes no pointer.
    let packed = unsafe { hypercall2(XEN_VERSION, u64::from(XENVER_VERSION), 0) };
    let mut extra = [0u8; 16];
    // SAFETY: XENVER_extraversion writes 16 bytes to the buffer on our stack.
    let result = unsafe {
        hypercall2(
            XEN_VERSION,
            u64::from(XENVER_EXTRAVERSION),
            extra.as_mut_ptr() as u64,
        )
    };
    if result < 0 {
        extra = [0; 16];
    }
    let packed = packed.max(0) as u64;
    ((packed >> 16) as u32, (packed & 0xffff) as u32, extra)
}

/// Writes to Xen's own console. Release builds of Xen refuse this for a domU (-EPERM), so it
/// is only a best-effort fallback for when the PV console ring is not usable.
pub fn console_io_write(bytes: &[u8]) -> Result<(), XenError> {
    let length = u32::try_from(bytes.len()).map_err(|_| XenError::EINVAL)?;
    // SAFETY: Xen reads `length` bytes from the slice.
    let result = unsafe {
        hypercall3(
            CONSOLE_IO,
            u64::from(CONSOLEIO_WRITE),
            u64::from(length),
            bytes.as_ptr() as u64,
        )
    };
    XenError::check(result).map(|_| ())
}
