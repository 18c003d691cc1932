//! The entry point Xen jumps to: switch to our own stack, then hand start_info to safe Rust.
//!
//! Xen starts a PV guest on a one-page boot stack with `rsi` pointing at start_info. That stack
//! is too small for Rust (a debug build overflows it), so `_start` first moves to a 64 KiB
//! stack in .bss. The page below that stack is a guard: `start` unmaps it once the hypercall
//! wrappers work, so an overflow faults instead of silently corrupting .bss.
//!
//! Also here: the two page-sized holes Xen fills for us, the hypercall page (written by Xen's
//! loader, found through the `XEN_ELFNOTE_HYPERCALL_PAGE` note) and the page whose mapping is
//! replaced by the shared-info frame.

use crate::kernel::booted::Kernel;
use grantsvc::abi::start_info::StartInfo;

/// Bytes of the kernel stack.
pub const STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .pushsection .text.boot, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    cld
    movq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movq %rsi, %rdi             /* start_info, first argument of kernel_entry */
    call kernel_entry
1:  ud2                         /* kernel_entry never returns */
    jmp 1b
    .size _start, . - _start
    .popsection

    .pushsection .text.hypercall_page, "ax", @progbits
    .balign 4096
    .globl hypercall_page
hypercall_page:
    .fill 4096, 1, 0xcc         /* int3 until Xen writes the stubs */
    .popsection

    .pushsection .bss.page_aligned, "aw", @nobits
    .balign 4096
    .globl shared_info_page
shared_info_page:
    .skip 4096
    .globl boot_stack_guard
boot_stack_guard:
    .skip 4096
boot_stack_bottom:
    .skip {stack_size}
    .globl boot_stack_top
boot_stack_top:
    .popsection
    "#,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);

/// Defines `kernel_entry`, the function `_start` calls, so that it boots and hands the booted
/// `Kernel` to `$run` (a `fn(Kernel) -> !`). The binary's root invokes it: a macro, so that the
/// boot layer names nothing above it (not the service, not the lab) while the root names both.
macro_rules! entry_point {
    ($run:path) => {
        /// Called by `_start` on the new stack with Xen's start_info pointer.
        ///
        /// # Safety
        /// Only `_start` calls this, once, with the `rsi` Xen gave it.
        #[allow(unsafe_code)]
        #[no_mangle]
        unsafe extern "C" fn kernel_entry(
            start_info: *const grantsvc::abi::start_info::StartInfo,
        ) -> ! {
            let run: fn($crate::kernel::booted::Kernel) -> ! = $run;
            // SAFETY: this function's own contract is `boot`'s: `_start` calls it once, with
            // the pointer Xen gave it.
            run(unsafe { $crate::kernel::boot::entry::boot(start_info) })
        }
    };
}
pub(crate) use entry_point;

/// Copies start_info, sets up the heap and runs the boot sequence (`start`).
///
/// # Safety
/// 1. `start_info` is the `rsi` Xen gave `_start`: a start_info page mapped read-write.
/// 2. It is called once, before anything else of the kernel runs.
pub unsafe fn boot(start_info: *const StartInfo) -> Kernel {
    // A plain read, one memcpy: a volatile read of the struct (over 1 KiB) went byte by byte,
    // 27 KB of code (issue 10), and nothing else touches the page meanwhile.
    // SAFETY: Xen's start-of-day contract (public/xen.h) puts a start_info page at `rsi`,
    // mapped read-write in the initial mapping (item 1); nothing else writes it while we copy it.
    let copy = unsafe { core::ptr::read(start_info) };
    super::heap::initialise();
    // SAFETY: (1) `copy` is the start_info Xen put at `start_info`; (2) nothing has written
    // Xen's bootstrap area since entry (the heap lies in the image's .bss), and the frame
    // allocator, made later from this record, manages only frames after that area.
    let recorded = unsafe { crate::kernel::xen::start_of_day::record(&copy, start_info as u64) };
    crate::kernel::start::start(recorded)
}

extern "C" {
    /// The page below the kernel stack (see the asm above).
    static boot_stack_guard: [u8; 4096];
}

/// Unmaps the page below the kernel stack so that an overflow faults. The frame stays part of
/// the image (the frame allocator never hands out image frames). Safe to call again: the page
/// only ever guards, so unmapping it twice changes nothing.
pub fn unmap_stack_guard() -> Result<(), grantsvc::hypervisor::XenError> {
    let address = core::ptr::addr_of!(boot_stack_guard) as u64;
    let address =
        grantsvc::addr::VirtAddr::try_new(address).ok_or(grantsvc::hypervisor::XenError::EINVAL)?;
    // SAFETY: (1) no Rust code owns or references the guard page: it is a reserved page of
    // the image that nothing reads or writes; (2) the entry is cleared, naming no frame.
    unsafe {
        crate::kernel::xen::mmu::update_va_mapping(
            address,
            0,
            grantsvc::abi::hypercall_numbers::UVMF_INVLPG,
        )
    }
}
