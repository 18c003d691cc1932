//! The grant list: every mapped grant region, found from any of its pages in O(1) through a page index.

use super::layout::PageRange;
use super::page_index::PageIndex;
use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::ids::{DomId, GrantHandle, GrantRef};
use alloc::vec::Vec;
use core::num::NonZeroU32;

/// Names the `enter_gnt` call a region came from; the pieces of a partly removed region keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionId(pub u64);

/// One mapped grant page: the peer's ref and the handle Xen gave for our mapping of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantPage {
    pub grant_ref: GrantRef,
    pub handle: GrantHandle,
}

/// A run of consecutive grant pages of one peer, all mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantRegion {
    pub id: RegionId,
    pub start: VirtAddr,
    pub peer: DomId,
    pub readonly: bool,
    /// Page `i` is mapped at `start + i * 4096`.
    pub pages: RegionPages,
}

/// A region's pages: a one-page region's (a ring, a request's one segment) in the record itself,
/// larger ones in a vector. Under emulation every distinct page a grant map+unmap touches
/// costs a refill after Xen's TLB flush of the unmap (README, issue 10): the slot holds a
/// one-page region whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionPages {
    One(GrantPage),
    Many(Vec<GrantPage>),
}

impl core::ops::Deref for RegionPages {
    type Target = [GrantPage];

    fn deref(&self) -> &[GrantPage] {
        match self {
            RegionPages::One(page) => core::slice::from_ref(page),
            RegionPages::Many(pages) => pages,
        }
    }
}

impl From<Vec<GrantPage>> for RegionPages {
    /// One page inline (the vector is dropped), more in the vector.
    fn from(pages: Vec<GrantPage>) -> RegionPages {
        match pages.as_slice() {
            [page] => RegionPages::One(*page),
            _ => RegionPages::Many(pages),
        }
    }
}

impl GrantRegion {
    /// Raw address one past the last page.
    pub fn end_raw(&self) -> u64 {
        self.start.as_u64() + self.pages.len() as u64 * PAGE_SIZE as u64
    }

    /// The page at `address`, with its index, if the region holds it.
    pub fn page_at(&self, address: VirtAddr) -> Option<(usize, &GrantPage)> {
        let offset = address.as_u64().checked_sub(self.start.as_u64())?;
        let index = usize::try_from(offset / PAGE_SIZE as u64).ok()?;
        self.pages.get(index).map(|page| (index, page))
    }

    /// Splits the region into the maximal runs of pages for which `keep` is true.
    pub fn keep_runs(self, keep: &[bool]) -> Vec<GrantRegion> {
        let mut runs = Vec::new();
        // The current run: its first page's index and its pages.
        let mut current: Option<(usize, Vec<GrantPage>)> = None;
        let run_region = |(first, pages): (usize, Vec<GrantPage>)| GrantRegion {
            id: self.id,
            start: self
                .start
                .checked_add_pages(first as u64)
                .unwrap_or(self.start),
            peer: self.peer,
            readonly: self.readonly,
            pages: pages.into(),
        };
        for (index, page) in self.pages.iter().enumerate() {
            if keep.get(index).copied().unwrap_or(true) {
                let (_, pages) = current.get_or_insert_with(|| (index, Vec::new()));
                pages.push(*page);
            } else if let Some(run) = current.take() {
                runs.push(run_region(run));
            }
        }
        runs.extend(current.map(run_region));
        runs
    }
}

/// All live grant regions; no two overlap.
///
/// Regions live in a slab (a vector whose emptied slots are reused) and every page of a region
/// names its slot in a [`PageIndex`]: finding the region that holds an address is one table
/// walk, whatever the number of regions, and recording or dropping a region writes one entry
/// per page, which `enter_gnt` and `remove` pay for their PTEs anyway. Once the slab and the
/// index have grown to a working set, inserting and taking allocate nothing.
#[derive(Debug, Default)]
pub struct GrantList {
    /// Slot `i` holds the region whose pages carry `i + 1` in `by_page`.
    slots: Vec<Slot>,
    /// The emptied slot reused first (the rest follow through [`Slot::Vacant`]), before the
    /// slab grows.
    first_vacant: Option<u32>,
    by_page: PageIndex,
    next_id: u64,
    /// Live regions and their pages, kept as regions come and go so that counting is O(1).
    regions: usize,
    pages: usize,
}

/// One place of the slab.
#[derive(Debug)]
enum Slot {
    Live(GrantRegion),
    /// Emptied, with the emptied slot to reuse after this one: the free list is threaded
    /// through the slab, so that recording and dropping a region touch no other vector (under
    /// emulation each distinct page a grant map+unmap touches costs a refill after Xen's TLB
    /// flush, README issue 10).
    Vacant {
        next: Option<u32>,
    },
}

impl Slot {
    fn live(&self) -> Option<&GrantRegion> {
        match self {
            Slot::Live(region) => Some(region),
            Slot::Vacant { .. } => None,
        }
    }
}

fn page_number(address: VirtAddr) -> u64 {
    address.as_u64() / PAGE_SIZE as u64
}

impl GrantList {
    /// A fresh id for a new region.
    pub fn next_id(&mut self) -> RegionId {
        self.next_id += 1;
        RegionId(self.next_id)
    }

    /// The region holding `address`, in O(1): one walk of the page index. Inlined, as are
    /// [`Self::insert`] and [`Self::take`]: the steady map+unmap path calls them, and under
    /// emulation each call and return is a jump QEMU looks up again after Xen's TLB flush
    /// (README, issue 10). Other callers use the `_out_of_line` twins, so that the image
    /// carries one more copy of each, not one per caller.
    #[inline(always)]
    pub fn find(&self, address: VirtAddr) -> Option<&GrantRegion> {
        let slot = self.by_page.get(page_number(address))?;
        self.slots.get(slot.get() as usize - 1)?.live()
    }

    /// The start of a live region overlapping `range`, if any: one look at each page of the
    /// range (a region cannot overlap it without holding one of them).
    pub fn overlapping(&self, range: &PageRange) -> Option<VirtAddr> {
        let first = page_number(range.start());
        let (_, slot) = self.by_page.first_set(first, first + range.pages())?;
        let region = self.slots.get(slot.get() as usize - 1)?.live()?;
        Some(region.start)
    }

    /// [`Self::find`], not inlined: for callers off the steady map+unmap path.
    #[inline(never)]
    pub fn find_out_of_line(&self, address: VirtAddr) -> Option<&GrantRegion> {
        self.find(address)
    }

    /// Records a region. The caller has checked that it overlaps nothing; a region it would
    /// overlap is dropped from the list rather than left half-indexed.
    #[inline(always)]
    pub fn insert(&mut self, region: GrantRegion) {
        if region.pages.is_empty() {
            return;
        }
        let first = page_number(region.start);
        let end = first + region.pages.len() as u64;
        let vacant = self.first_vacant.and_then(|index| {
            let next = match self.slots.get(index as usize)? {
                Slot::Vacant { next } => *next,
                Slot::Live(_) => return None,
            };
            Some((index as usize, next))
        });
        let index = match vacant {
            Some((index, next)) => {
                self.first_vacant = next;
                index
            }
            None => {
                self.slots.push(Slot::Vacant { next: None });
                self.slots.len() - 1
            }
        };
        let Some(slot) = u32::try_from(index + 1).ok().and_then(NonZeroU32::new) else {
            return;
        };
        // Usually one walk: the region's entries in its leaf, checked vacant and filled.
        let recorded = match self.by_page.leaf_span_mut(first, end) {
            Some(entries) if entries.iter().all(Option::is_none) => {
                entries.fill(Some(slot));
                true
            }
            _ => false,
        };
        if !recorded {
            while let Some((_, old)) = self.by_page.first_set(first, end) {
                let old = self.slots.get(old.get() as usize - 1);
                let Some(start) = old.and_then(Slot::live).map(|old| old.start) else {
                    break;
                };
                if self.take_out_of_line(start).is_none() {
                    break;
                }
            }
            self.by_page.fill(first, end, Some(slot));
        }
        self.regions += 1;
        self.pages += region.pages.len();
        if let Some(entry) = self.slots.get_mut(index) {
            *entry = Slot::Live(region);
        }
    }

    /// [`Self::insert`], not inlined: for callers off the steady map+unmap path.
    #[inline(never)]
    pub fn insert_out_of_line(&mut self, region: GrantRegion) {
        self.insert(region)
    }

    /// [`Self::take`], not inlined: for callers off the steady map+unmap path.
    #[inline(never)]
    pub fn take_out_of_line(&mut self, start: VirtAddr) -> Option<GrantRegion> {
        self.take(start)
    }

    /// Takes the region starting at `start` out of the list.
    #[inline(always)]
    pub fn take(&mut self, start: VirtAddr) -> Option<GrantRegion> {
        let first = page_number(start);
        // One walk: the entries from the region's first page to the end of its leaf.
        let entries = self.by_page.rest_of_leaf_mut(first)?;
        let slot = (*entries.first()?)?;
        let index = slot.get() as usize - 1;
        let entry = self.slots.get_mut(index)?;
        if entry.live()?.start != start {
            return None;
        }
        let emptied = Slot::Vacant {
            next: self.first_vacant,
        };
        let Slot::Live(region) = core::mem::replace(entry, emptied) else {
            return None;
        };
        let pages = region.pages.len();
        match entries.get_mut(..pages) {
            Some(in_leaf) => in_leaf.fill(None),
            None => self.by_page.fill(first, first + pages as u64, None),
        }
        self.first_vacant = Some(slot.get() - 1);
        self.regions -= 1;
        self.pages -= pages;
        Some(region)
    }

    /// Live regions, in no particular order.
    pub fn regions(&self) -> impl Iterator<Item = &GrantRegion> {
        self.slots.iter().filter_map(Slot::live)
    }

    /// Number of live regions.
    pub fn region_count(&self) -> usize {
        self.regions
    }

    /// Number of mapped grant pages, in O(1).
    pub fn page_count(&self) -> usize {
        self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: u64, pages: u32) -> GrantRegion {
        GrantRegion {
            id: RegionId(id),
            start: VirtAddr::try_new(start).unwrap(),
            peer: DomId::new(3).unwrap(),
            readonly: false,
            pages: (0..pages)
                .map(|index| GrantPage {
                    grant_ref: GrantRef::new(index),
                    handle: GrantHandle::new(100 + index),
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }

    const BASE: u64 = 0xffff_c000_0000_0000;

    #[test]
    fn lookup_finds_the_holding_region_only() {
        let mut list = GrantList::default();
        list.insert(region(1, BASE, 4));
        list.insert(region(2, BASE + 8 * 4096, 2));
        let inside = VirtAddr::try_new(BASE + 3 * 4096).unwrap();
        assert_eq!(list.find(inside).unwrap().id, RegionId(1));
        assert!(list
            .find(VirtAddr::try_new(BASE + 4 * 4096).unwrap())
            .is_none());
        assert_eq!(
            list.find(VirtAddr::try_new(BASE + 9 * 4096).unwrap())
                .unwrap()
                .id,
            RegionId(2)
        );
        assert!(list
            .find(VirtAddr::try_new(BASE + 10 * 4096).unwrap())
            .is_none());
    }

    #[test]
    fn overlap_is_detected_on_every_side() {
        let mut list = GrantList::default();
        list.insert(region(1, BASE + 4 * 4096, 4));
        let at = |page: u64, pages: u64| {
            PageRange::new(VirtAddr::try_new(BASE + page * 4096).unwrap(), pages).unwrap()
        };
        assert!(list.overlapping(&at(0, 4)).is_none());
        assert!(list.overlapping(&at(0, 5)).is_some());
        assert!(list.overlapping(&at(7, 3)).is_some());
        assert!(list.overlapping(&at(5, 1)).is_some());
        assert!(list.overlapping(&at(8, 2)).is_none());
        assert!(list.overlapping(&at(0, 20)).is_some());
    }

    #[test]
    fn an_overlapped_region_is_dropped_and_regions_across_leaves_come_and_go() {
        let mut list = GrantList::default();
        list.insert(region(1, BASE + 4 * 4096, 4));
        // Within one leaf of the page index, then across one (pages 510 to 514).
        list.insert(region(2, BASE + 6 * 4096, 1));
        let at = |page: u64| VirtAddr::try_new(BASE + page * 4096).unwrap();
        assert!(list.find(at(4)).is_none());
        assert_eq!(list.find(at(6)).unwrap().id, RegionId(2));
        assert_eq!((list.region_count(), list.page_count()), (1, 1));
        list.insert(region(3, BASE + 510 * 4096, 5));
        assert_eq!(list.find(at(514)).unwrap().id, RegionId(3));
        list.insert(region(4, BASE + 512 * 4096, 1));
        assert!(list.find(at(510)).is_none());
        assert_eq!(list.take(at(512)).unwrap().id, RegionId(4));
        assert!(list.take(at(510)).is_none());
        list.insert(region(5, BASE + 509 * 4096, 6));
        assert!(list.take(at(510)).is_none());
        assert_eq!(list.take(at(509)).unwrap().pages.len(), 6);
        assert!((505..520).all(|page| list.find(at(page)).is_none()));
        assert_eq!((list.region_count(), list.page_count()), (1, 1));
    }

    #[test]
    fn keeping_runs_splits_around_removed_pages() {
        let pieces = region(7, BASE, 6).keep_runs(&[true, false, true, true, false, true]);
        let shapes: Vec<(u64, usize)> = pieces
            .iter()
            .map(|piece| ((piece.start.as_u64() - BASE) / 4096, piece.pages.len()))
            .collect();
        assert_eq!(shapes, [(0, 1), (2, 2), (5, 1)]);
        assert!(pieces.iter().all(|piece| piece.id == RegionId(7)));
        assert_eq!(pieces[1].pages[0].grant_ref, GrantRef::new(2));
        assert!(region(1, BASE, 2).keep_runs(&[false, false]).is_empty());
    }
}
