//! What the kernel says when the CPU raises an exception: vector, error code, RIP, CR2, registers; then it crashes the domain.

use super::boot::traps::TrapFrame;
use super::console;
use super::xen::{sched, shared_info};
use core::sync::atomic::{AtomicBool, Ordering};
use grantsvc::abi::arch_x86_64::vector;
use grantsvc::abi::sched::ShutdownReason;

static REPORTING: AtomicBool = AtomicBool::new(false);

/// Prints the trap and crashes the domain. A trap taken while reporting one crashes at once.
pub fn report_fatal_trap(frame: &TrapFrame) -> ! {
    if REPORTING.swap(true, Ordering::SeqCst) {
        sched::shutdown(ShutdownReason::Crash);
    }
    let vector_number = (frame.vector & 0xff) as u8;
    // A PV guest cannot read CR2: Xen copies it into vcpu_info for every page fault.
    let cr2 = shared_info::cr2().unwrap_or(0);
    console::write_emergency(format_args!(
        "grantsvc: FATAL TRAP: vector {} ({}), error code {:#x}{}, RIP {:#018x}, CR2 {:#018x}, RSP {:#018x}, RFLAGS {:#x}, CS {:#x}\n",
        vector_number,
        vector::name(vector_number),
        frame.error_code,
        PageFaultCause(vector_number, frame.error_code),
        frame.rip,
        cr2,
        frame.rsp,
        frame.rflags,
        frame.cs & 0xffff,
    ));
    console::write_emergency(format_args!(
        "grantsvc: registers: rax {:#x} rbx {:#x} rcx {:#x} rdx {:#x} rsi {:#x} rdi {:#x} rbp {:#x} r8 {:#x} r9 {:#x} r10 {:#x} r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}\n",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp,
        frame.r8, frame.r9, frame.r10, frame.r11, frame.r12, frame.r13, frame.r14, frame.r15,
    ));
    console::drain();
    sched::shutdown(ShutdownReason::Crash)
}

/// For a page fault, the error code's bits in words: " (read of a not-present page)".
struct PageFaultCause(u8, u64);

impl core::fmt::Display for PageFaultCause {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let PageFaultCause(vector_number, code) = *self;
        if vector_number != vector::PAGE_FAULT {
            return Ok(());
        }
        let access = if code & (1 << 4) != 0 {
            "instruction fetch"
        } else if code & (1 << 1) != 0 {
            "write"
        } else {
            "read"
        };
        let page = if code & 1 != 0 {
            "a protection violation"
        } else {
            "a not-present page"
        };
        let reserved = if code & (1 << 3) != 0 {
            ", reserved bit set"
        } else {
            ""
        };
        write!(formatter, " ({access} of {page}{reserved})")
    }
}
