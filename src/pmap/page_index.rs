//! A sparse table from virtual page number to a small slot number, shaped like the page tables: four levels of 512, O(1) per page whatever else it holds.
//!
//! The grant list and the VA allocator find records by page (the region holding an address,
//! the free neighbours of a range). A search tree does that in O(log n) but each level is a
//! cache miss once thousands of records live; here a lookup is four dependent loads whose
//! upper three are shared by every page of the 512 GiB chosen region, so its cost does not grow
//! with the number of records. The leaves lie side by side in one vector and the last leaf
//! reached is remembered, so that a look-up in the same 2 MiB as the one before reads the leaf
//! alone. Nodes are made the first time a page below them is set and are kept when they empty
//! again: a page that was set once costs no allocation the next time, and the memory is
//! bounded by the span of pages ever used (2 KiB per 2 MiB of it).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use core::num::NonZeroU32;

/// Entries per node, as in an x86-64 page table.
const FANOUT: usize = 512;
/// Bits of a page number one level consumes.
const LEVEL_BITS: u32 = 9;
/// Pages one leaf covers.
const LEAF_PAGES: u64 = FANOUT as u64;

/// The bits of a page number that tell canonical addresses apart (48-bit addresses, 4 KiB pages).
const PAGE_NUMBER_BITS: u32 = 36;

// Inner nodes are boxed slices of FANOUT entries, reached with `get` (every index is below
// FANOUT by construction, so the check never fails, but no panic path is compiled in). The
// lowest inner level names leaves by their place in `PageIndex::leaves` (plus one).
type Middle = Box<[Option<NonZeroU32>]>;
type Upper = Box<[Option<Middle>]>;
type Root = Box<[Option<Upper>]>;

/// The slots of one leaf's pages.
type Leaf = [Option<NonZeroU32>; FANOUT];

/// Page number (an address divided by 4096) to slot. Page numbers that differ only above bit
/// 36 (the sign extension of a canonical address) are the same entry.
#[derive(Default)]
pub struct PageIndex {
    root: Option<Root>,
    /// Every leaf, side by side in one allocation.
    leaves: Vec<Leaf>,
    /// The last leaf reached: its span (page number divided by 512) and its place in `leaves`.
    /// A look-up in the same 2 MiB as the last one reads it and the leaf only, not the three
    /// nodes above: under emulation each distinct page a grant map+unmap touches costs a
    /// refill after Xen's TLB flush (README, issue 10). Leaves are never dropped, so the hint
    /// stays true.
    last_leaf: Cell<Option<(u64, usize)>>,
}

impl core::fmt::Debug for PageIndex {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        formatter.write_str("PageIndex")
    }
}

/// The page number without its sign extension.
fn canonical(page: u64) -> u64 {
    page & ((1 << PAGE_NUMBER_BITS) - 1)
}

/// The three inner indexes of a page number's leaf, top level first, and its span.
fn split(page: u64) -> ([usize; 3], u64) {
    let page = canonical(page);
    let at = |level: u32| ((page >> (LEVEL_BITS * level)) as usize) % FANOUT;
    ([at(3), at(2), at(1)], page / LEAF_PAGES)
}

/// The index of a page in its leaf.
fn leaf_index(page: u64) -> usize {
    (canonical(page) % LEAF_PAGES) as usize
}

/// A node of `FANOUT` empty entries.
fn empty_node<T: Clone>(empty: T) -> Box<[T]> {
    vec![empty; FANOUT].into_boxed_slice()
}

/// The child at `index` of a node, if the node has one there.
fn child<T>(node: &[Option<T>], index: usize) -> Option<&T> {
    node.get(index)?.as_ref()
}

impl PageIndex {
    /// The place in `leaves` of `page`'s leaf, if it exists.
    // Inlined: the steady map+unmap path calls it, and under emulation each call and return
    // is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
    #[inline(always)]
    fn find_leaf(&self, page: u64) -> Option<usize> {
        let ([top, upper, middle], span) = split(page);
        if let Some((last, place)) = self.last_leaf.get() {
            if last == span {
                return Some(place);
            }
        }
        let root = self.root.as_ref()?;
        let leaf = *child(child(root, top)?, upper)?.get(middle)?;
        let place = leaf?.get() as usize - 1;
        self.last_leaf.set(Some((span, place)));
        Some(place)
    }

    /// The place in `leaves` of `page`'s leaf, made (empty) with the nodes above it if missing.
    fn make_leaf(&mut self, page: u64) -> Option<usize> {
        if let Some(place) = self.find_leaf(page) {
            return Some(place);
        }
        let ([top, upper, middle], span) = split(page);
        let root = self.root.get_or_insert_with(|| empty_node(None));
        let entry = grow(root, top)
            .and_then(|node| grow(node, upper))
            .and_then(|node| node.get_mut(middle))?;
        let place = self.leaves.len();
        *entry = Some(NonZeroU32::new(u32::try_from(place + 1).ok()?)?);
        self.leaves.push([None; FANOUT]);
        self.last_leaf.set(Some((span, place)));
        Some(place)
    }

    /// The leaf of `page`, if it exists.
    fn leaf(&self, page: u64) -> Option<&Leaf> {
        self.leaves.get(self.find_leaf(page)?)
    }

    /// The leaf of `page`, if it exists (none is made).
    fn leaf_mut(&mut self, page: u64) -> Option<&mut Leaf> {
        let place = self.find_leaf(page)?;
        self.leaves.get_mut(place)
    }

    /// The slot recorded for `page`.
    pub fn get(&self, page: u64) -> Option<NonZeroU32> {
        *self.leaf(page)?.get(leaf_index(page))?
    }

    /// Forgets `page`'s slot (nodes stay, for the next page set below them).
    pub fn clear(&mut self, page: u64) {
        if let Some(slot) = self
            .leaf_mut(page)
            .and_then(|leaf| leaf.get_mut(leaf_index(page)))
        {
            *slot = None;
        }
    }

    /// The first page in `[start, end)` with a slot, and that slot; whole missing leaves are
    /// skipped, so an empty span costs one step per 2 MiB.
    pub fn first_set(&self, start: u64, end: u64) -> Option<(u64, NonZeroU32)> {
        self.root.as_ref()?;
        let mut page = start;
        while page < end {
            let index = leaf_index(page);
            let leaf_end = (page - page % LEAF_PAGES)
                .saturating_add(LEAF_PAGES)
                .min(end);
            if let Some(leaf) = self.leaf(page) {
                let count = (leaf_end - page) as usize;
                let found = leaf
                    .iter()
                    .skip(index)
                    .take(count)
                    .enumerate()
                    .find_map(|(offset, slot)| slot.map(|slot| (page + offset as u64, slot)));
                if found.is_some() {
                    return found;
                }
            }
            page = leaf_end;
        }
        None
    }

    /// Records `slot` for every page in `[start, end)` (with `None`, forgets their slots),
    /// walking down once per leaf rather than once per page: how a region's pages are
    /// recorded and dropped. Leaves are made only to record a slot.
    pub fn fill(&mut self, start: u64, end: u64, slot: Option<NonZeroU32>) {
        let mut page = start;
        while page < end {
            let leaf_end = (page - page % LEAF_PAGES)
                .saturating_add(LEAF_PAGES)
                .min(end);
            let index = leaf_index(page);
            let place = match slot {
                Some(_) => self.make_leaf(page),
                None => self.find_leaf(page),
            };
            let count = (leaf_end - page) as usize;
            if let Some(entries) = place
                .and_then(|place| self.leaves.get_mut(place))
                .and_then(|leaf| leaf.get_mut(index..index + count))
            {
                entries.fill(slot);
            }
            page = leaf_end;
        }
    }

    /// The entries of pages `[start, end)` when they lie in one leaf, made if missing: one
    /// walk down for a region's check and recording together (most regions are far smaller
    /// than a leaf's 2 MiB). `None` when the span crosses a leaf.
    pub fn leaf_span_mut(&mut self, start: u64, end: u64) -> Option<&mut [Option<NonZeroU32>]> {
        if end <= start || (end - 1) / LEAF_PAGES != start / LEAF_PAGES {
            return None;
        }
        let index = leaf_index(start);
        let place = self.make_leaf(start)?;
        self.leaves
            .get_mut(place)?
            .get_mut(index..index + (end - start) as usize)
    }

    /// The entries from `page` to the end of its leaf, if the leaf exists (none is made).
    pub fn rest_of_leaf_mut(&mut self, page: u64) -> Option<&mut [Option<NonZeroU32>]> {
        let index = leaf_index(page);
        self.leaf_mut(page)?.get_mut(index..)
    }

    /// Records `slot` for `page`, making the nodes on its path when they are missing.
    pub fn set(&mut self, page: u64, slot: NonZeroU32) {
        let index = leaf_index(page);
        if let Some(entry) = self
            .make_leaf(page)
            .and_then(|place| self.leaves.get_mut(place))
            .and_then(|leaf| leaf.get_mut(index))
        {
            *entry = Some(slot);
        }
    }
}

/// The child at `index`, made (empty) if missing.
fn grow<T: Clone>(
    node: &mut [Option<Box<[Option<T>]>>],
    index: usize,
) -> Option<&mut Box<[Option<T>]>> {
    Some(node.get_mut(index)?.get_or_insert_with(|| empty_node(None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    /// The chosen region's first page, as the pmap's callers number pages.
    const BASE: u64 = 0xffff_c000_0000_0000 / 4096;

    #[test]
    fn set_get_clear_and_neighbours_stay_apart() {
        let mut index = PageIndex::default();
        assert_eq!(index.get(BASE), None);
        index.set(BASE, slot(1));
        index.set(BASE + 511, slot(2));
        index.set(BASE + 512, slot(3));
        index.set(BASE + (1 << 27) - 1, slot(4));
        assert_eq!(index.get(BASE), Some(slot(1)));
        assert_eq!(index.get(BASE + 1), None);
        assert_eq!(index.get(BASE + 511), Some(slot(2)));
        assert_eq!(index.get(BASE + 512), Some(slot(3)));
        assert_eq!(index.get(BASE + (1 << 27) - 1), Some(slot(4)));
        index.clear(BASE + 511);
        assert_eq!(index.get(BASE + 511), None);
        assert_eq!(index.get(BASE + 512), Some(slot(3)));
        // Clearing what was never set makes no node and changes nothing.
        index.clear(7);
        assert_eq!(index.get(7), None);
    }

    #[test]
    fn filling_a_span_across_leaves_sets_and_clears_exactly_its_pages() {
        let mut index = PageIndex::default();
        index.fill(BASE + 500, BASE + 1100, Some(slot(3)));
        assert_eq!(index.get(BASE + 499), None);
        assert!((500..1100).all(|page| index.get(BASE + page) == Some(slot(3))));
        assert_eq!(index.get(BASE + 1100), None);
        index.fill(BASE + 510, BASE + 1030, None);
        assert_eq!(index.get(BASE + 509), Some(slot(3)));
        assert!((510..1030).all(|page| index.get(BASE + page).is_none()));
        assert_eq!(index.get(BASE + 1030), Some(slot(3)));
        assert_eq!(index.first_set(BASE + 510, BASE + 1030), None);
        // Forgetting where nothing was ever set records nothing there.
        index.fill(BASE + (1 << 20), BASE + (1 << 20) + 2000, None);
        assert_eq!(index.first_set(BASE + (1 << 20), BASE + (1 << 21)), None);
        // An empty span changes nothing.
        index.fill(BASE + 1050, BASE + 1050, Some(slot(9)));
        assert_eq!(index.get(BASE + 1050), Some(slot(3)));
    }

    #[test]
    fn lower_and_upper_half_pages_are_distinct() {
        let mut index = PageIndex::default();
        let upper = 0xffff_8000_0000_0000u64 / 4096;
        // The lower half's first page, which differs from the upper half's in bit 47 only.
        let lower = 0u64;
        index.set(upper, slot(9));
        assert_eq!(index.get(lower), None);
        assert_eq!(index.get(upper), Some(slot(9)));
    }

    #[test]
    fn first_set_skips_missing_leaves_and_respects_the_end() {
        let mut index = PageIndex::default();
        assert_eq!(index.first_set(BASE, BASE + 10), None);
        index.set(BASE + 3000, slot(5));
        index.set(BASE + 3001, slot(6));
        assert_eq!(index.first_set(BASE, BASE + 3000), None);
        assert_eq!(
            index.first_set(BASE, BASE + 3001),
            Some((BASE + 3000, slot(5)))
        );
        assert_eq!(
            index.first_set(BASE + 3001, BASE + 5000),
            Some((BASE + 3001, slot(6)))
        );
        assert_eq!(index.first_set(BASE + 3002, BASE + 1_000_000), None);
        assert_eq!(index.first_set(BASE + 5, BASE + 5), None);
    }
}
