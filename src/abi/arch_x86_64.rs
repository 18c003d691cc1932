//! Xen ABI for x86-64 PV guests: flat selectors, the hypervisor's reserved VA range and M2P, `struct trap_info`.

/// `FLAT_KERNEL_CS`: the 64-bit code selector a PV kernel runs with (ring 3 under Xen).
pub const FLAT_KERNEL_CS: u16 = 0xe033;
/// `FLAT_KERNEL_SS`.
pub const FLAT_KERNEL_SS: u16 = 0xe02b;

/// Start of the VA range Xen reserves in every 64-bit PV address space.
pub const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of the VA range Xen reserves.
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;
/// The read-only machine-to-phys table (`machine_to_phys_mapping`): one u64 pfn per mfn.
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// End of the machine-to-phys table.
pub const MACH2PHYS_VIRT_END: u64 = 0xffff_8040_0000_0000;
/// Entries of the machine-to-phys table.
pub const MACH2PHYS_NR_ENTRIES: u64 = (MACH2PHYS_VIRT_END - MACH2PHYS_VIRT_START) / 8;

// The M2P lies inside the range Xen reserves.
const _: () = assert!(
    MACH2PHYS_VIRT_START >= HYPERVISOR_VIRT_START && MACH2PHYS_VIRT_END <= HYPERVISOR_VIRT_END
);

/// `struct trap_info`: one entry of the virtual IDT given to `set_trap_table`, which ends at
/// an entry whose `address` is 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrapInfo {
    pub vector: u8,
    /// Bits 0-1: lowest privilege level allowed to raise it with `int`; bit 2: mask events on entry.
    pub flags: u8,
    pub cs: u16,
    pub address: u64,
}

/// `TrapInfo::flags` bit: Xen masks event upcalls while the handler runs.
pub const TRAP_INFO_MASK_EVENTS: u8 = 1 << 2;

/// The x86 exception vectors, for trap tables and reports.
pub mod vector {
    pub const DIVIDE_ERROR: u8 = 0;
    pub const DEBUG: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BREAKPOINT: u8 = 3;
    pub const OVERFLOW: u8 = 4;
    pub const BOUND_RANGE: u8 = 5;
    pub const INVALID_OPCODE: u8 = 6;
    pub const DEVICE_NOT_AVAILABLE: u8 = 7;
    pub const DOUBLE_FAULT: u8 = 8;
    pub const COPROCESSOR_SEGMENT_OVERRUN: u8 = 9;
    pub const INVALID_TSS: u8 = 10;
    pub const SEGMENT_NOT_PRESENT: u8 = 11;
    pub const STACK_SEGMENT: u8 = 12;
    pub const GENERAL_PROTECTION: u8 = 13;
    pub const PAGE_FAULT: u8 = 14;
    pub const X87_FLOATING_POINT: u8 = 16;
    pub const ALIGNMENT_CHECK: u8 = 17;
    pub const MACHINE_CHECK: u8 = 18;
    pub const SIMD_FLOATING_POINT: u8 = 19;
    pub const VIRTUALIZATION: u8 = 20;
    pub const CONTROL_PROTECTION: u8 = 21;

    /// The mnemonic of an exception vector.
    pub const fn name(vector: u8) -> &'static str {
        match vector {
            DIVIDE_ERROR => "#DE divide error",
            DEBUG => "#DB debug",
            NMI => "NMI",
            BREAKPOINT => "#BP breakpoint",
            OVERFLOW => "#OF overflow",
            BOUND_RANGE => "#BR bound range exceeded",
            INVALID_OPCODE => "#UD invalid opcode",
            DEVICE_NOT_AVAILABLE => "#NM device not available",
            DOUBLE_FAULT => "#DF double fault",
            COPROCESSOR_SEGMENT_OVERRUN => "coprocessor segment overrun",
            INVALID_TSS => "#TS invalid TSS",
            SEGMENT_NOT_PRESENT => "#NP segment not present",
            STACK_SEGMENT => "#SS stack-segment fault",
            GENERAL_PROTECTION => "#GP general protection",
            PAGE_FAULT => "#PF page fault",
            X87_FLOATING_POINT => "#MF x87 floating point",
            ALIGNMENT_CHECK => "#AC alignment check",
            MACHINE_CHECK => "#MC machine check",
            SIMD_FLOATING_POINT => "#XM SIMD floating point",
            VIRTUALIZATION => "#VE virtualization",
            CONTROL_PROTECTION => "#CP control protection",
            _ => "unknown vector",
        }
    }

    /// True for the vectors where the CPU (and Xen's bounce frame) pushes an error code.
    pub const fn has_error_code(vector: u8) -> bool {
        matches!(
            vector,
            DOUBLE_FAULT
                | INVALID_TSS
                | SEGMENT_NOT_PRESENT
                | STACK_SEGMENT
                | GENERAL_PROTECTION
                | PAGE_FAULT
                | ALIGNMENT_CHECK
                | CONTROL_PROTECTION
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_and_general_protection_carry_error_codes_but_invalid_opcode_does_not() {
        assert!(vector::has_error_code(vector::PAGE_FAULT));
        assert!(vector::has_error_code(vector::GENERAL_PROTECTION));
        assert!(!vector::has_error_code(vector::INVALID_OPCODE));
        assert!(!vector::has_error_code(vector::BREAKPOINT));
    }
}
