//! Page protections as the pmap's callers state them, and the PTE bits they become under Xen PV.

use crate::abi::mmu::pte;
use bitflags::bitflags;

bitflags! {
    /// What a mapping allows beyond reading (every mapping is readable).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u8 {
        /// Writes are allowed.
        const WRITE = 1 << 0;
        /// Instruction fetches are allowed.
        const EXECUTE = 1 << 1;
    }
}

impl Prot {
    /// Read-only, no execute.
    pub const READ_ONLY: Prot = Prot::empty();
    /// Read-write, no execute: data.
    pub const READ_WRITE: Prot = Prot::WRITE;

    /// The leaf PTE flags for this protection. A 64-bit PV kernel runs in ring 3, so Xen
    /// requires `USER` on its mappings (Mini-OS sets it in its `L1_PROT`).
    pub const fn leaf_flags(self) -> u64 {
        let mut flags = pte::PRESENT | pte::USER | pte::ACCESSED;
        if self.contains(Prot::WRITE) {
            flags |= pte::WRITABLE | pte::DIRTY;
        }
        if !self.contains(Prot::EXECUTE) {
            flags |= pte::NO_EXECUTE;
        }
        flags
    }

    /// The protection a present leaf PTE grants.
    pub const fn from_leaf(entry: u64) -> Prot {
        let mut prot = Prot::empty();
        if entry & pte::WRITABLE != 0 {
            prot = prot.union(Prot::WRITE);
        }
        if entry & pte::NO_EXECUTE == 0 {
            prot = prot.union(Prot::EXECUTE);
        }
        prot
    }
}

/// Flags of an intermediate entry (L4/L3/L2): permissive, the leaf decides.
pub const TABLE_FLAGS: u64 = pte::PRESENT | pte::WRITABLE | pte::USER | pte::ACCESSED;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_flags_round_trip_and_always_carry_user() {
        for prot in [
            Prot::READ_ONLY,
            Prot::WRITE,
            Prot::EXECUTE,
            Prot::WRITE | Prot::EXECUTE,
        ] {
            let flags = prot.leaf_flags();
            assert_ne!(flags & pte::USER, 0);
            assert_eq!(Prot::from_leaf(flags), prot);
        }
    }
}
