//! The event upcall and failsafe entry points Xen calls back into: save every register, run the Rust handler, return with the `iret` hypercall.
//!
//! Xen delivers an event upcall like an exception without an error code, on the current kernel
//! stack: `[rsp] = rcx`, `[rsp+8] = r11`, then RIP, CS (the saved upcall mask in bits 32-39),
//! RFLAGS (IF = the interrupted context's events were unmasked), RSP, SS
//! (`public/arch-x86/xen-x86_64.h`). Xen has set `evtchn_upcall_mask` before entering, so the
//! handler runs with events masked and cannot nest.
//!
//! The way back is `HYPERVISOR_iret`, entered by jumping to its stub in the hypercall page with
//! `flags` pushed below RIP; the stub pushes rcx, r11 and rax itself, completing Xen's
//! `struct iret_context`. Xen restores the upcall mask from the saved RFLAGS.IF and, on its
//! way out, checks for events again: an event that arrived after the handler's last scan is
//! delivered at once, so no unmask race exists (Mini-OS needs a critical-region fixup because
//! it unmasks and `iretq`s by itself).

use grantsvc::abi::hypercall_numbers::{HYPERCALL_ENTRY_SIZE, IRET};

core::arch::global_asm!(
    r#"
    .pushsection .text.upcall, "ax", @progbits
    .globl hypervisor_event_callback
hypervisor_event_callback:
    movq (%rsp), %rcx           /* Xen saved the interrupted rcx and r11 on top */
    movq 8(%rsp), %r11
    addq $16, %rsp              /* now at RIP: the iret frame */"#,
    push_general_registers!(),
    r#"
    movq %rsp, %rbx             /* callee-saved: survives the call */
    andq $-16, %rsp             /* the System V ABI wants a 16-byte aligned call */
    call event_upcall
    movq %rbx, %rsp"#,
    pop_general_registers!(),
    r#"
    pushq $0                    /* iret_context.flags: not returning from a syscall */
    jmp hypercall_page + {iret_offset}

    .globl hypervisor_failsafe_callback
hypervisor_failsafe_callback:
    /* Xen could not load the segment registers of a frame it returned to: [rsp] = rcx,
       [rsp+8] = r11, then ds, es, fs, gs, RIP, CS, RFLAGS, RSP, SS. Nothing to recover. */
    movq %rsp, %rdi
    andq $-16, %rsp
    call failsafe_report
1:  ud2
    jmp 1b
    .popsection
    "#,
    iret_offset = const IRET as usize * HYPERCALL_ENTRY_SIZE,
    options(att_syntax)
);

extern "C" {
    fn hypervisor_event_callback();
    fn hypervisor_failsafe_callback();
}

/// Called by `hypervisor_event_callback` with events masked and every register saved.
#[no_mangle]
extern "C" fn event_upcall() {
    crate::kernel::event_wait::on_upcall();
}

/// Xen's failsafe frame (see the asm above).
#[repr(C)]
struct FailsafeFrame {
    rcx: u64,
    r11: u64,
    ds: u64,
    es: u64,
    fs: u64,
    gs: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Called by `hypervisor_failsafe_callback` with Xen's frame.
///
/// # Safety
/// Only the failsafe entry calls this, with the address of the frame Xen pushed.
#[no_mangle]
unsafe extern "C" fn failsafe_report(frame: *const FailsafeFrame) -> ! {
    // SAFETY: the entry passes the address of the 11-word frame Xen just pushed on our stack.
    let frame = unsafe { core::ptr::read(frame) };
    crate::kernel::console::write_emergency(format_args!(
        "grantsvc: FATAL: Xen's failsafe callback: returning to RIP {:#x} (CS {:#x}, RSP {:#x} SS {:#x}, RFLAGS {:#x}) failed to load segments ds {:#x} es {:#x} fs {:#x} gs {:#x} (rcx {:#x} r11 {:#x})\n",
        frame.rip, frame.cs & 0xffff, frame.rsp, frame.ss, frame.rflags, frame.ds, frame.es, frame.fs, frame.gs, frame.rcx, frame.r11
    ));
    crate::kernel::console::drain();
    crate::kernel::xen::sched::shutdown(grantsvc::abi::sched::ShutdownReason::Crash)
}

/// The (event, failsafe) entry addresses for `set_callbacks`.
pub fn entry_points() -> (u64, u64) {
    (
        hypervisor_event_callback as *const () as u64,
        hypervisor_failsafe_callback as *const () as u64,
    )
}
