//! Distinct types for the address and frame-number kinds of a PV guest, so that they cannot be mixed.
//!
//! A PV guest sees three address spaces: virtual addresses, its own pseudo-physical frames
//! (contiguous from 0, indices into the p2m), and the machine frames Xen really gave it. Page
//! tables hold machine addresses; the frame allocator hands out pseudo-physical frames.

use core::fmt;

/// Bytes in a page on x86-64.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A pseudo-physical frame number: an index into this domain's p2m.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

/// A machine frame number: a real frame of host memory, as page tables and Xen name it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mfn(pub u64);

/// A machine address: a byte address in host memory (for example the address of a PTE).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MachineAddr(pub u64);

/// A virtual address in grantsvc's single address space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(u64);

impl Mfn {
    /// The machine address of the first byte of this frame.
    pub const fn base(self) -> MachineAddr {
        MachineAddr(self.0 << PAGE_SHIFT)
    }
}

impl MachineAddr {
    /// The machine frame this address lies in.
    pub const fn frame(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The offset of this address within its frame.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE as u64 - 1)
    }

    /// This address plus `bytes`, or `None` on overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<MachineAddr> {
        match self.0.checked_add(bytes) {
            Some(sum) => Some(MachineAddr(sum)),
            None => None,
        }
    }
}

impl VirtAddr {
    /// Bits of a canonical x86-64 virtual address (4-level paging).
    const ADDRESS_BITS: u32 = 48;

    /// A virtual address, if `raw` is canonical (bits 63..47 all equal).
    pub const fn try_new(raw: u64) -> Option<VirtAddr> {
        let sign_extended =
            (((raw << (64 - Self::ADDRESS_BITS)) as i64) >> (64 - Self::ADDRESS_BITS)) as u64;
        if sign_extended == raw {
            Some(VirtAddr(raw))
        } else {
            None
        }
    }

    /// A virtual address from a constant known to be canonical; panics otherwise (use only for constants).
    pub const fn new_const(raw: u64) -> VirtAddr {
        match Self::try_new(raw) {
            Some(address) => address,
            None => panic!("non-canonical virtual address constant"),
        }
    }

    /// The raw 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// True when the address is at the start of a page.
    pub const fn is_page_aligned(self) -> bool {
        self.0 & (PAGE_SIZE as u64 - 1) == 0
    }

    /// The start of the page holding this address.
    pub const fn page_base(self) -> VirtAddr {
        VirtAddr(self.0 & !(PAGE_SIZE as u64 - 1))
    }

    /// This address plus `bytes`, if the result is canonical and did not overflow.
    pub const fn checked_add(self, bytes: u64) -> Option<VirtAddr> {
        match self.0.checked_add(bytes) {
            Some(sum) => Self::try_new(sum),
            None => None,
        }
    }

    /// This address plus `pages` pages, if canonical.
    pub const fn checked_add_pages(self, pages: u64) -> Option<VirtAddr> {
        match pages.checked_mul(PAGE_SIZE as u64) {
            Some(bytes) => self.checked_add(bytes),
            None => None,
        }
    }

    /// Index into the page table at `level` (1 = L1 .. 4 = L4) that translates this address.
    pub const fn table_index(self, level: u32) -> usize {
        ((self.0 >> (PAGE_SHIFT + 9 * (level - 1))) & 0x1ff) as usize
    }
}

macro_rules! hex_debug {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{:#x}", self.0)
            }
        }
    )*};
}
hex_debug!(Pfn, Mfn, MachineAddr, VirtAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_addresses_are_accepted_and_others_refused() {
        assert!(VirtAddr::try_new(0x0000_7fff_ffff_f000).is_some());
        assert!(VirtAddr::try_new(0xffff_8000_0000_0000).is_some());
        assert!(VirtAddr::try_new(0x0000_8000_0000_0000).is_none());
        assert!(VirtAddr::try_new(0xffff_7fff_ffff_ffff).is_none());
    }

    #[test]
    fn crossing_the_canonical_hole_is_refused() {
        let top_of_lower_half = VirtAddr::try_new(0x0000_7fff_ffff_f000).unwrap();
        assert_eq!(top_of_lower_half.checked_add_pages(1), None);
    }

    #[test]
    fn table_indices_split_the_address() {
        let va = VirtAddr::try_new(0xffff_ffff_8020_3000).unwrap();
        assert_eq!(va.table_index(4), 511);
        assert_eq!(va.table_index(3), 510);
        assert_eq!(va.table_index(2), 1);
        assert_eq!(va.table_index(1), 3);
    }

    #[test]
    fn machine_addresses_split_into_frame_and_offset() {
        let pte_address = Mfn(0x1234).base().checked_add(0x18).unwrap();
        assert_eq!(pte_address.frame(), Mfn(0x1234));
        assert_eq!(pte_address.page_offset(), 0x18);
    }
}
