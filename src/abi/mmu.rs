//! Xen ABI for the PV MMU: `mmu_update` requests, `mmuext_op` commands and the x86-64 PTE bits.

use crate::addr::MachineAddr;

/// `MMU_NORMAL_PT_UPDATE`: a checked write of `val` to the PTE at machine address `ptr`.
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// `MMU_MACHPHYS_UPDATE`: set the M2P entry of the frame at `ptr` to `val`.
pub const MMU_MACHPHYS_UPDATE: u64 = 1;
/// `MMU_PT_UPDATE_PRESERVE_AD`: like a normal update, keeping the accessed/dirty bits.
pub const MMU_PT_UPDATE_PRESERVE_AD: u64 = 2;
/// `MMU_PT_UPDATE_NO_TRANSLATE` (Xen >= 4.11): the PTE value is used verbatim even for a translated foreign domain.
pub const MMU_PT_UPDATE_NO_TRANSLATE: u64 = 3;

/// One `struct mmu_update`: the command is in the two low bits of `ptr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MmuUpdate {
    /// Machine address of the PTE, ORed with the `MMU_*` command.
    pub ptr: u64,
    /// New contents of the PTE.
    pub val: u64,
}

impl MmuUpdate {
    /// A checked write of `value` to the PTE at `pte`, with the given `MMU_*` command.
    pub const fn new(pte: MachineAddr, value: u64, command: u64) -> MmuUpdate {
        MmuUpdate {
            ptr: pte.get() | command,
            val: value,
        }
    }

    /// The machine address of the PTE this request writes.
    pub const fn pte_address(&self) -> MachineAddr {
        MachineAddr::new_truncate(self.ptr & !3)
    }

    /// The `MMU_*` command.
    pub const fn command(&self) -> u64 {
        self.ptr & 3
    }
}

/// `mmuext_op` commands (`enum mmuext_cmd`).
pub mod mmuext {
    pub const PIN_L1_TABLE: u32 = 0;
    pub const PIN_L2_TABLE: u32 = 1;
    pub const PIN_L3_TABLE: u32 = 2;
    pub const PIN_L4_TABLE: u32 = 3;
    pub const UNPIN_TABLE: u32 = 4;
    pub const NEW_BASEPTR: u32 = 5;
    pub const TLB_FLUSH_LOCAL: u32 = 6;
    pub const INVLPG_LOCAL: u32 = 7;
    pub const TLB_FLUSH_MULTI: u32 = 8;
    pub const INVLPG_MULTI: u32 = 9;
    pub const TLB_FLUSH_ALL: u32 = 10;
    pub const INVLPG_ALL: u32 = 11;
    pub const NEW_USER_BASEPTR: u32 = 15;
}

/// One `struct mmuext_op`: `arg1` is an mfn or a linear address, `arg2` a count or a vcpu mask pointer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MmuextOp {
    pub cmd: u32,
    pub arg1: u64,
    pub arg2: u64,
}

impl MmuextOp {
    /// Flush every vcpu's whole TLB.
    pub const fn tlb_flush_all() -> MmuextOp {
        MmuextOp {
            cmd: mmuext::TLB_FLUSH_ALL,
            arg1: 0,
            arg2: 0,
        }
    }

    /// Invalidate one page's translation on every vcpu.
    pub const fn invlpg_all(linear_address: u64) -> MmuextOp {
        MmuextOp {
            cmd: mmuext::INVLPG_ALL,
            arg1: linear_address,
            arg2: 0,
        }
    }
}

/// x86-64 page-table entry bits as Xen validates them for a PV guest.
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const CACHE_DISABLE: u64 = 1 << 4;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    pub const HUGE: u64 = 1 << 7;
    pub const GLOBAL: u64 = 1 << 8;
    /// Bits 9-11 are free for the guest; Xen's debug builds use one for grant PTEs.
    pub const AVAILABLE_MASK: u64 = 0b111 << 9;
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// The machine-frame field of an entry (bits 12..51).
    pub const FRAME_MASK: u64 = 0x000f_ffff_ffff_f000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bits_ride_in_the_low_bits_of_ptr() {
        let update = MmuUpdate::new(
            MachineAddr::new(0x1234_5008).unwrap(),
            7,
            MMU_PT_UPDATE_NO_TRANSLATE,
        );
        assert_eq!(update.pte_address(), MachineAddr::new(0x1234_5008).unwrap());
        assert_eq!(update.command(), MMU_PT_UPDATE_NO_TRANSLATE);
    }
}
