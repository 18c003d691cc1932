//! Raw hypercalls through the hypercall page Xen filled in: `call hypercall_page + number * 32`.
//!
//! Arguments go in rdi, rsi, rdx, r10, r8 and the result comes back in rax (Xen's x86-64 PV
//! calling convention). The stubs use `syscall`, which clobbers rcx and r11, and a debug Xen
//! overwrites argument registers on return, so every argument register is marked clobbered.
//! The typed wrappers in the sibling modules are the only callers.
//!
//! The `asm!` blocks do not claim `nostack`: `call` pushes a return address below the stack
//! pointer, which `nostack` forbids. Without it the compiler keeps the stack pointer aligned
//! for a call and the red zone (disabled on x86_64-unknown-none anyway) free at that point.
//!
//! In host tests (`cfg(test)`) the entry is swapped for `fake_xen`, which plays Xen through the
//! very pointers the wrappers pass, so that Miri checks the layer's pointer handling.

#[cfg(not(test))]
use grantsvc::abi::hypercall_numbers::{HYPERCALL_ENTRY_SIZE, HYPERCALL_PAGE_ENTRIES};

#[cfg(not(test))]
extern "C" {
    /// The page Xen fills with one 32-byte stub per hypercall (see `boot::entry`).
    static hypercall_page: [u8; 4096];
}

/// The address of the stub for hypercall `number`.
#[cfg(not(test))]
fn entry(number: u32) -> u64 {
    debug_assert!(number < HYPERCALL_PAGE_ENTRIES);
    let page = core::ptr::addr_of!(hypercall_page) as u64;
    page + u64::from(number % HYPERCALL_PAGE_ENTRIES) * HYPERCALL_ENTRY_SIZE as u64
}

/// A hypercall with up to five arguments.
///
/// # Safety
/// 1. The arguments must be what Xen expects for `number`: every pointer among them must be
///    valid for Xen to read and write for the size the operation implies, for the whole call.
/// 2. The operation's effects must not break what Rust code relies on: no page-table change
///    that unmaps, remaps or aliases memory that Rust code owns or references, no frame
///    given away while Rust code uses it. Each caller's `# Safety` or `// SAFETY:` says which
///    operation it issues and why its effect is harmless.
#[cfg(not(test))]
pub unsafe fn hypercall5(number: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let result: i64;
    // SAFETY: `entry` is a stub in the hypercall page Xen wrote; the caller vouches for the
    // arguments. Registers Xen or the stub may change are declared as outputs.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry(number),
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") result,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    result
}

/// A hypercall with up to five arguments, answered by the host tests' fake Xen.
///
/// # Safety
/// As the kernel's `hypercall5`: the fake reads and writes through the pointers as Xen would.
#[cfg(test)]
pub unsafe fn hypercall5(number: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { super::fake_xen::hypercall(number, [a1, a2, a3, a4, a5]) }
}

/// A hypercall with one argument.
///
/// # Safety
/// As [`hypercall5`].
pub unsafe fn hypercall1(number: u32, a1: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(number, a1, 0, 0, 0, 0) }
}

/// A hypercall with two arguments.
///
/// # Safety
/// As [`hypercall5`].
pub unsafe fn hypercall2(number: u32, a1: u64, a2: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(number, a1, a2, 0, 0, 0) }
}

/// A hypercall with three arguments.
///
/// # Safety
/// As [`hypercall5`].
pub unsafe fn hypercall3(number: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(number, a1, a2, a3, 0, 0) }
}

/// A hypercall with four arguments.
///
/// # Safety
/// As [`hypercall5`].
pub unsafe fn hypercall4(number: u32, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    // SAFETY: forwarded contract.
    unsafe { hypercall5(number, a1, a2, a3, a4, 0) }
}
