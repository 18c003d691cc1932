//! Where things live in grantsvc's address space: the direct map, the chosen-VA region, Xen's reserved slots.

use crate::addr::{Pfn, VirtAddr, PAGE_SIZE};

/// The direct map: pseudo-physical frame N is at `DIRECT_MAP_BASE + N * 4096` (the kernel is
/// linked there with a zero physical offset, so Xen's initial mapping already has this shape).
pub const DIRECT_MAP_BASE: u64 = 0xffff_ffff_8000_0000;
// A whole L1 table's worth of frames shares one L1 table (`Pmap::extend_direct_map` walks once
// per table).
const _: () = assert!(DIRECT_MAP_BASE % (ENTRIES_PER_TABLE as u64 * 4096) == 0);

/// First address of the region handed out by the VA allocator (grant regions, test regions).
pub const CHOSEN_REGION_START: u64 = 0xffff_c000_0000_0000;
/// One past the last address of that region (512 GiB, exactly one L4 slot).
pub const CHOSEN_REGION_END: u64 = 0xffff_c080_0000_0000;
/// The root (L4) slot that translates the chosen-VA region.
pub const CHOSEN_L4_SLOT: usize = VirtAddr::new_const(CHOSEN_REGION_START).table_index(4);

/// L4 slots 256..=271 belong to Xen in every PV address space: the pmap never touches them.
pub const XEN_L4_SLOTS: core::ops::RangeInclusive<usize> = 256..=271;

/// Entries in one page-table page.
pub const ENTRIES_PER_TABLE: usize = 512;

/// Bytes one entry of a table at `level` (1..=4) translates.
pub const fn bytes_per_entry(level: u32) -> u64 {
    (PAGE_SIZE as u64) << (9 * (level - 1))
}

/// The direct-map address of a frame, if it is representable (frames beyond 2 GiB are not).
pub fn direct_map_address(frame: Pfn) -> Option<VirtAddr> {
    VirtAddr::try_new(DIRECT_MAP_BASE).and_then(|base| base.checked_add_pages(frame.get()))
}

/// True when `address` lies in the chosen-VA region, the one the VA allocator hands out. The
/// pmap's safe `enter`, `enter_foreign`, `protect` and `remove` accept nothing else: the
/// direct map (kernel image, heap, stacks, page tables) is mapped once at boot and never
/// changed through them, so no safe caller can unmap or alias live kernel memory.
pub const fn in_chosen_region(address: VirtAddr) -> bool {
    address.as_u64() >= CHOSEN_REGION_START && address.as_u64() < CHOSEN_REGION_END
}

/// True when `address` is translated by one of Xen's reserved L4 slots.
pub const fn in_xen_slots(address: VirtAddr) -> bool {
    let slot = address.table_index(4);
    slot >= *XEN_L4_SLOTS.start() && slot <= *XEN_L4_SLOTS.end()
}

/// A page-aligned, non-empty range of virtual pages `[start, start + pages)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRange {
    start: VirtAddr,
    pages: u64,
}

impl PageRange {
    /// The range, if `start` is page aligned, `pages > 0`, and the whole range is canonical
    /// and stays in one half of the address space.
    pub fn new(start: VirtAddr, pages: u64) -> Option<PageRange> {
        if !start.is_page_aligned() || pages == 0 {
            return None;
        }
        // The last page must be representable: checked_add rejects leaving the canonical half.
        start.checked_add_pages(pages - 1)?;
        Some(PageRange { start, pages })
    }

    /// First page.
    pub const fn start(&self) -> VirtAddr {
        self.start
    }

    /// Number of pages.
    pub const fn pages(&self) -> u64 {
        self.pages
    }

    /// Raw address one past the end (may be 2^64 for the top page, hence u128-free saturation).
    pub const fn end_raw(&self) -> u64 {
        self.start
            .as_u64()
            .saturating_add(self.pages.saturating_mul(PAGE_SIZE as u64))
    }

    /// The address of page `index` of the range (callers keep `index < pages`).
    pub fn page(&self, index: u64) -> Option<VirtAddr> {
        if index < self.pages {
            self.start.checked_add_pages(index)
        } else {
            None
        }
    }

    /// True when any page of the range lies in Xen's L4 slots.
    pub fn touches_xen_slots(&self) -> bool {
        // Xen's slots are one contiguous block of the upper half: check the two ends and
        // whether the range straddles the block.
        let xen_start = 0xffff_8000_0000_0000u64;
        let xen_end = 0xffff_8800_0000_0000u64;
        let start = self.start.as_u64();
        let last = start + (self.pages - 1) * PAGE_SIZE as u64;
        start < xen_end && last >= xen_start
    }

    /// True when every page of the range lies in the chosen-VA region (see `in_chosen_region`).
    pub fn inside_chosen_region(&self) -> bool {
        let last = self.start.as_u64() + (self.pages - 1) * PAGE_SIZE as u64;
        self.start.as_u64() >= CHOSEN_REGION_START && last < CHOSEN_REGION_END
    }

    /// True when `address` is a page of this range.
    pub fn contains(&self, address: VirtAddr) -> bool {
        address.as_u64() >= self.start.as_u64()
            && (address.as_u64() - self.start.as_u64()) / (PAGE_SIZE as u64) < self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_slots_are_recognised_at_both_ends() {
        let first = VirtAddr::try_new(0xffff_8000_0000_0000).unwrap();
        let last = VirtAddr::try_new(0xffff_87ff_ffff_f000).unwrap();
        let after = VirtAddr::try_new(0xffff_8800_0000_0000).unwrap();
        assert!(in_xen_slots(first) && in_xen_slots(last));
        assert!(!in_xen_slots(after));
        assert!(
            VirtAddr::try_new(0xffff_7fff_ffff_f000).is_none(),
            "the hole is not canonical"
        );
        let before = PageRange::new(after, 4).unwrap();
        assert!(!before.touches_xen_slots());
        let across = PageRange::new(last, 2).unwrap();
        assert!(across.touches_xen_slots());
    }

    #[test]
    fn ranges_refuse_misalignment_emptiness_and_overflow() {
        let base = VirtAddr::try_new(CHOSEN_REGION_START).unwrap();
        assert!(PageRange::new(base, 0).is_none());
        assert!(PageRange::new(VirtAddr::try_new(CHOSEN_REGION_START + 8).unwrap(), 1).is_none());
        let top = VirtAddr::try_new(0xffff_ffff_ffff_f000).unwrap();
        assert!(PageRange::new(top, 1).is_some());
        assert!(PageRange::new(top, 2).is_none());
        let range = PageRange::new(base, 3).unwrap();
        assert!(range.contains(base.checked_add_pages(2).unwrap()));
        assert!(!range.contains(base.checked_add_pages(3).unwrap()));
    }

    #[test]
    fn direct_map_addresses_follow_the_frame_number() {
        assert_eq!(
            direct_map_address(Pfn::new(3).unwrap()).unwrap().as_u64(),
            DIRECT_MAP_BASE + 3 * 4096
        );
        assert!(direct_map_address(Pfn::new(1 << 19).unwrap()).is_none());
    }
}
