//! `HYPERVISOR_sched_op`: shut down, yield, block, poll.

use super::hypercall::hypercall2;
use grantsvc::abi::hypercall_numbers::SCHED_OP;
#[cfg(feature = "lab")]
use grantsvc::abi::sched::{SchedPoll, SCHEDOP_POLL, SCHED_POLL_MAX_PORTS};
use grantsvc::abi::sched::{
    SchedShutdown, ShutdownReason, SCHEDOP_BLOCK, SCHEDOP_SHUTDOWN, SCHEDOP_YIELD,
};
#[cfg(feature = "lab")]
use grantsvc::hypervisor::XenError;
#[cfg(feature = "lab")]
use grantsvc::ids::EvtchnPort;

/// Ends the domain with `reason`. Xen pauses the vcpu; if it ever runs again we keep asking.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let argument = SchedShutdown {
        reason: reason as u32,
    };
    loop {
        // SAFETY: SCHEDOP_shutdown reads one sched_shutdown struct, which lives on our stack.
        unsafe {
            hypercall2(
                SCHED_OP,
                u64::from(SCHEDOP_SHUTDOWN),
                core::ptr::addr_of!(argument) as u64,
            )
        };
        // SAFETY: SCHEDOP_yield takes no pointer.
        unsafe { hypercall2(SCHED_OP, u64::from(SCHEDOP_YIELD), 0) };
    }
}

/// Gives the physical CPU to another vcpu if one is runnable.
pub fn yield_now() {
    // SAFETY: SCHEDOP_yield takes no pointer.
    unsafe { hypercall2(SCHED_OP, u64::from(SCHEDOP_YIELD), 0) };
}

/// Blocks until an event is pending. Xen clears the vcpu's upcall mask while blocking, so
/// callers must have an event callback registered (see `platform::set_callbacks`).
pub fn block() {
    // SAFETY: SCHEDOP_block takes no pointer.
    unsafe { hypercall2(SCHED_OP, u64::from(SCHEDOP_BLOCK), 0) };
}

/// Blocks until one of `ports` is pending or Xen's system time reaches `deadline_ns`
/// (`None`: no timeout), without unmasking event upcalls.
#[cfg(feature = "lab")]
pub fn poll(ports: &[EvtchnPort], deadline_ns: Option<u64>) -> Result<(), XenError> {
    if ports.len() > SCHED_POLL_MAX_PORTS {
        return Err(XenError::EINVAL);
    }
    let mut raw_ports = [0u32; SCHED_POLL_MAX_PORTS];
    for (slot, port) in raw_ports.iter_mut().zip(ports) {
        *slot = port.get();
    }
    let argument = SchedPoll {
        ports: raw_ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        timeout: deadline_ns.unwrap_or(0),
    };
    // SAFETY: SCHEDOP_poll reads the sched_poll struct and `nr_ports` ports from the array,
    // both on our stack for the duration of the call.
    let result = unsafe {
        hypercall2(
            SCHED_OP,
            u64::from(SCHEDOP_POLL),
            core::ptr::addr_of!(argument) as u64,
        )
    };
    XenError::check(result).map(|_| ())
}
