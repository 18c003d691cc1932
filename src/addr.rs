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

/// Bits of a machine address on x86-64: the architectural maximum physical-address width
/// (`MAXPHYADDR` is at most 52), which is also the width of the address field of a PTE.
const PHYSICAL_ADDRESS_BITS: u32 = 52;
/// Frame numbers are below 2^40: a frame is a 4 KiB page of a 52-bit physical address space, so
/// a larger number cannot be put in a PTE or named by any Xen frame list.
const FRAME_NUMBER_BITS: u32 = PHYSICAL_ADDRESS_BITS - PAGE_SHIFT;

/// A pseudo-physical frame number: an index into this domain's p2m.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(u64);

/// A machine frame number: a real frame of host memory, as page tables and Xen name it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mfn(u64);

/// A machine address: a byte address in host memory (for example the address of a PTE).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MachineAddr(u64);

/// A virtual address in grantsvc's single address space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VirtAddr(u64);

impl Pfn {
    /// A pseudo-physical frame number, or `None` at or above 2^40 (no 52-bit physical address
    /// space has such a frame, so no p2m can be that long).
    pub const fn new(raw: u64) -> Option<Pfn> {
        if raw >> FRAME_NUMBER_BITS == 0 {
            Some(Pfn(raw))
        } else {
            None
        }
    }

    /// The raw frame number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The frame `count` frames after this one, or `None` beyond 2^40.
    pub const fn checked_add(self, count: u64) -> Option<Pfn> {
        match self.0.checked_add(count) {
            Some(sum) => Pfn::new(sum),
            None => None,
        }
    }
}

impl Mfn {
    /// A machine frame number, or `None` at or above 2^40 (the frame of a 52-bit machine
    /// address, the widest a PTE holds).
    pub const fn new(raw: u64) -> Option<Mfn> {
        if raw >> FRAME_NUMBER_BITS == 0 {
            Some(Mfn(raw))
        } else {
            None
        }
    }

    /// The raw frame number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The frame a page-table entry points at: its address field, bits 12..51. Total, because
    /// the field is 40 bits wide whatever else the entry holds.
    pub const fn of_page_table_entry(entry: u64) -> Mfn {
        Mfn((entry >> PAGE_SHIFT) & ((1 << FRAME_NUMBER_BITS) - 1))
    }

    /// The machine address of the first byte of this frame.
    pub const fn base(self) -> MachineAddr {
        MachineAddr(self.0 << PAGE_SHIFT)
    }
}

impl MachineAddr {
    /// A machine address, or `None` at or above 2^52 (beyond the architectural maximum
    /// physical-address width of x86-64).
    pub const fn new(raw: u64) -> Option<MachineAddr> {
        if raw >> PHYSICAL_ADDRESS_BITS == 0 {
            Some(MachineAddr(raw))
        } else {
            None
        }
    }

    /// The low 52 bits of `raw` as a machine address, dropping whatever the ABI keeps in the
    /// bits above (as the x86_64 crate's `PhysAddr::new_truncate`).
    pub const fn new_truncate(raw: u64) -> MachineAddr {
        MachineAddr(raw & ((1 << PHYSICAL_ADDRESS_BITS) - 1))
    }

    /// The raw address.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The machine frame this address lies in.
    pub const fn frame(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The offset of this address within its frame.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE as u64 - 1)
    }

    /// This address plus `bytes`, or `None` on leaving the 52-bit machine address space.
    pub const fn checked_add(self, bytes: u64) -> Option<MachineAddr> {
        match self.0.checked_add(bytes) {
            Some(sum) => MachineAddr::new(sum),
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
        let frame = Mfn::new(0x1234).unwrap();
        let pte_address = frame.base().checked_add(0x18).unwrap();
        assert_eq!(pte_address.frame(), frame);
        assert_eq!(pte_address.page_offset(), 0x18);
    }

    #[test]
    fn frames_and_machine_addresses_stay_within_52_bits() {
        assert_eq!(Pfn::new((1 << 40) - 1).map(Pfn::get), Some((1 << 40) - 1));
        assert_eq!(Pfn::new(1 << 40), None);
        assert_eq!(Mfn::new((1 << 40) - 1).map(Mfn::get), Some((1 << 40) - 1));
        assert_eq!(Mfn::new(1 << 40), None);
        assert!(MachineAddr::new((1 << 52) - 1).is_some());
        assert_eq!(MachineAddr::new(1 << 52), None);
        assert_eq!(MachineAddr::new_truncate(u64::MAX).get(), (1 << 52) - 1);
        assert_eq!(Pfn::new((1 << 40) - 2).unwrap().checked_add(2), None);
        assert_eq!(
            Mfn::of_page_table_entry(0x8000_0000_1234_5067),
            Mfn::new(0x12345).unwrap()
        );
        let last_frame = Mfn::new((1 << 40) - 1).unwrap().base();
        assert_eq!(last_frame.checked_add(PAGE_SIZE as u64), None);
    }
}
