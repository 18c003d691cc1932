//! Trap entry: per-vector stubs that undo Xen's PV64 bounce frame, save the registers and call the reporter.
//!
//! On a 64-bit PV guest Xen delivers an exception on the kernel stack as the CPU would, plus two
//! words on top: `[rsp] = rcx`, `[rsp+8] = r11`, then the error code (for vectors that have one),
//! RIP, CS, RFLAGS, RSP, SS (`public/arch-x86/xen-x86_64.h`; Mini-OS `arch/x86/x86_64.S`). The
//! stubs reload rcx and r11 from those words, drop them, push a zero error code where the CPU
//! has none and the vector, so every trap reaches `trap_common` with the same [`TrapFrame`].
//! Every trap grantsvc takes is fatal for now: the reporter prints and crashes the domain.

use grantsvc::abi::arch_x86_64::{vector, TrapInfo, FLAT_KERNEL_CS, TRAP_INFO_MASK_EVENTS};

/// The registers as `trap_common` leaves them on the stack (lowest address first).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    /// CS in the low 16 bits; Xen keeps the saved upcall mask in bits 32-39.
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

macro_rules! trap_stubs {
    ($(($vector:literal, $name:ident, $has_error_code:literal)),* $(,)?) => {
        core::arch::global_asm!(
            $(
                concat!(
                    ".pushsection .text.traps, \"ax\", @progbits\n",
                    ".globl ", stringify!($name), "\n",
                    stringify!($name), ":\n",
                    "    movq (%rsp), %rcx\n",
                    "    movq 8(%rsp), %r11\n",
                    "    addq $16, %rsp\n",
                    ".if ", stringify!($has_error_code), " == 0\n",
                    "    pushq $0\n",
                    ".endif\n",
                    "    pushq $", stringify!($vector), "\n",
                    "    jmp trap_common\n",
                    ".popsection\n",
                ),
            )*
            options(att_syntax)
        );
        extern "C" {
            $(fn $name();)*
        }
        // The stubs' error-code handling must agree with the architecture's list.
        $(const _: () = assert!(vector::has_error_code($vector) == ($has_error_code == 1));)*
        /// How many vectors have a stub.
        const STUB_COUNT: usize = [$($vector),*].len();
        /// (vector, entry stub) for every vector grantsvc handles.
        fn stubs() -> [(u8, u64); STUB_COUNT] {
            [$(($vector, $name as *const () as u64)),*]
        }
    };
}

trap_stubs!(
    (0, trap_divide_error, 0),
    (1, trap_debug, 0),
    (3, trap_breakpoint, 0),
    (4, trap_overflow, 0),
    (5, trap_bound_range, 0),
    (6, trap_invalid_opcode, 0),
    (7, trap_device_not_available, 0),
    (8, trap_double_fault, 1),
    (9, trap_coprocessor_segment_overrun, 0),
    (10, trap_invalid_tss, 1),
    (11, trap_segment_not_present, 1),
    (12, trap_stack_segment, 1),
    (13, trap_general_protection, 1),
    (14, trap_page_fault, 1),
    (16, trap_x87_floating_point, 0),
    (17, trap_alignment_check, 1),
    (18, trap_machine_check, 0),
    (19, trap_simd_floating_point, 0),
    (20, trap_virtualization, 0),
    (21, trap_control_protection, 1),
);

core::arch::global_asm!(
    r#"
    .pushsection .text.traps, "ax", @progbits
trap_common:"#,
    push_general_registers!(),
    r#"
    movq %rsp, %rdi
    andq $-16, %rsp             /* the System V ABI wants a 16-byte aligned call */
    call trap_report
1:  ud2
    jmp 1b
    .popsection
    "#,
    options(att_syntax)
);

/// Called by `trap_common` with the saved frame.
///
/// # Safety
/// Only `trap_common` calls this, with a pointer to the frame it just pushed.
#[no_mangle]
unsafe extern "C" fn trap_report(frame: *const TrapFrame) -> ! {
    // SAFETY: `trap_common` passes the address of the TrapFrame it built on the current stack.
    let frame = unsafe { core::ptr::read(frame) };
    crate::kernel::fault_report::report_fatal_trap(&frame)
}

/// The virtual IDT for `set_trap_table`, ending with the zero-address sentinel Xen expects.
pub fn trap_table() -> [TrapInfo; STUB_COUNT + 1] {
    let mut table = [TrapInfo::default(); STUB_COUNT + 1];
    for (slot, (vector_number, address)) in table.iter_mut().zip(stubs()) {
        // `int3` and `into` are instructions the kernel may execute on purpose: allow them
        // from the kernel's privilege (1); every other vector is raised by the CPU only.
        let privilege = match vector_number {
            vector::BREAKPOINT | vector::OVERFLOW => 3,
            _ => 0,
        };
        *slot = TrapInfo {
            vector: vector_number,
            flags: privilege | TRAP_INFO_MASK_EVENTS,
            cs: FLAT_KERNEL_CS,
            address,
        };
    }
    table
}

/// Reads one byte at `address`, which the caller expects to be unmapped: the lab's `fault`
/// switch uses it to prove the page-fault report works. Returns only if the address was mapped.
#[cfg(feature = "lab")]
pub fn read_byte_expecting_fault(address: u64) -> u8 {
    let value: u8;
    // SAFETY: an asm load, not a Rust dereference: if the page is unmapped the CPU raises #PF,
    // whose handler reports and never returns; if it is mapped, one byte is read and nothing
    // else is touched.
    unsafe {
        core::arch::asm!(
            "mov {value}, byte ptr [{address}]",
            address = in(reg) address,
            value = out(reg_byte) value,
            options(nostack, readonly),
        );
    }
    value
}
