//! Best-fit allocator of page ranges in the chosen-VA region: free ranges indexed by address and by (size, address), O(log n) per call.

use super::layout::{PageRange, CHOSEN_REGION_END, CHOSEN_REGION_START};
use crate::addr::{VirtAddr, PAGE_SIZE};
use alloc::collections::{BTreeMap, BTreeSet};

/// A free that does not match an allocation: part of the range is already free or outside the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAllocated(pub PageRange);

/// Free ranges kept twice: start page -> length (to merge neighbours on free) and
/// (length, start) (to find the smallest range that fits in O(log n) instead of scanning every
/// hole, as the first-fit list did). Adjacent free ranges are always merged.
#[derive(Debug)]
pub struct VaAllocator {
    /// Keyed by first page number (address / 4096, in the region's upper half).
    free: BTreeMap<u64, u64>,
    /// The same ranges as (length in pages, first page).
    by_size: BTreeSet<(u64, u64)>,
    first_page: u64,
    end_page: u64,
}

impl Default for VaAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl VaAllocator {
    /// An allocator over the whole chosen-VA region.
    pub fn new() -> VaAllocator {
        let page = PAGE_SIZE as u64;
        Self::over(CHOSEN_REGION_START / page, CHOSEN_REGION_END / page)
    }

    fn over(first_page: u64, end_page: u64) -> VaAllocator {
        let mut allocator = VaAllocator {
            free: BTreeMap::new(),
            by_size: BTreeSet::new(),
            first_page,
            end_page,
        };
        allocator.add_free(first_page, end_page - first_page);
        allocator
    }

    fn add_free(&mut self, start: u64, length: u64) {
        self.free.insert(start, length);
        self.by_size.insert((length, start));
    }

    fn remove_free(&mut self, start: u64) -> Option<u64> {
        let length = self.free.remove(&start)?;
        self.by_size.remove(&(length, start));
        Some(length)
    }

    /// `pages` pages from the start of the smallest free range that holds them (the lowest
    /// such range among equals), or `None` when none is large enough. Best fit keeps the
    /// large ranges whole for large requests; the search is one tree descent.
    pub fn allocate(&mut self, pages: u64) -> Option<PageRange> {
        if pages == 0 {
            return None;
        }
        let &(length, start) = self.by_size.range((pages, 0)..).next()?;
        let range = PageRange::new(page_address(start)?, pages)?;
        self.remove_free(start);
        if length > pages {
            self.add_free(start + pages, length - pages);
        }
        Some(range)
    }

    /// Gives a range back, merging it with free neighbours. Refuses (changing nothing) a range
    /// that is partly free already or outside the region: that would be a double free.
    pub fn free(&mut self, range: PageRange) -> Result<(), NotAllocated> {
        let page = PAGE_SIZE as u64;
        let start = range.start().as_u64() / page;
        let end = start + range.pages();
        if start < self.first_page || end > self.end_page {
            return Err(NotAllocated(range));
        }
        let before = self.free.range(..end).next_back().map(|(&s, &l)| (s, l));
        if let Some((free_start, free_length)) = before {
            if free_start + free_length > start {
                return Err(NotAllocated(range));
            }
        }
        let mut merged_start = start;
        let mut merged_end = end;
        if let Some((free_start, free_length)) = before {
            if free_start + free_length == start {
                self.remove_free(free_start);
                merged_start = free_start;
            }
        }
        if let Some(after_length) = self.remove_free(end) {
            merged_end = end + after_length;
        }
        self.add_free(merged_start, merged_end - merged_start);
        Ok(())
    }

    /// Pages currently free (for tests' accounting checks).
    #[cfg(test)]
    pub fn free_pages(&self) -> u64 {
        self.free.values().sum()
    }

    /// Number of separate free ranges (1 when everything is free again; for tests' checks
    /// that freeing coalesces). Also checks that the two indexes hold the same ranges.
    #[cfg(test)]
    pub fn free_ranges(&self) -> usize {
        let by_size: BTreeSet<(u64, u64)> = self
            .free
            .iter()
            .map(|(&start, &length)| (length, start))
            .collect();
        assert_eq!(by_size, self.by_size, "the size index lost step");
        self.free.len()
    }
}

fn page_address(page: u64) -> Option<VirtAddr> {
    page.checked_mul(PAGE_SIZE as u64)
        .and_then(VirtAddr::try_new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIRST_PAGE: u64 = CHOSEN_REGION_START / PAGE_SIZE as u64;

    #[test]
    fn allocation_is_best_fit_and_frees_coalesce() {
        let mut allocator = VaAllocator::new();
        let total = allocator.free_pages();
        let a = allocator.allocate(4).unwrap();
        let b = allocator.allocate(2).unwrap();
        let c = allocator.allocate(8).unwrap();
        assert_eq!(a.start().as_u64(), CHOSEN_REGION_START);
        assert_eq!(b.start().as_u64(), CHOSEN_REGION_START + 4 * 4096);
        allocator.free(a).unwrap();
        // A 3-page request fits in a's hole, the smallest free range that holds it.
        let d = allocator.allocate(3).unwrap();
        assert_eq!(d.start(), a.start());
        // A 2-page request goes past the remaining 1-page hole to the large range.
        let e = allocator.allocate(2).unwrap();
        assert_eq!(e.start().as_u64(), CHOSEN_REGION_START + 14 * 4096);
        allocator.free(e).unwrap();
        assert_eq!(allocator.free(b), Ok(()));
        assert_eq!(
            allocator.free(b),
            Err(NotAllocated(b)),
            "double free refused"
        );
        allocator.free(d).unwrap();
        allocator.free(c).unwrap();
        assert_eq!(allocator.free_pages(), total);
        assert_eq!(allocator.free_ranges(), 1);
    }

    #[test]
    fn exhaustion_and_foreign_ranges_are_refused() {
        let mut allocator = VaAllocator::over(FIRST_PAGE, FIRST_PAGE + 8);
        assert!(allocator.allocate(9).is_none());
        assert!(allocator.allocate(0).is_none());
        let all = allocator.allocate(8).unwrap();
        assert!(allocator.allocate(1).is_none());
        let outside = PageRange::new(VirtAddr::try_new(0xffff_ffff_8000_0000).unwrap(), 1).unwrap();
        assert!(allocator.free(outside).is_err());
        allocator.free(all).unwrap();
        assert_eq!(allocator.free_pages(), 8);
    }

    proptest! {
        #[test]
        fn random_allocations_never_overlap_and_all_frees_restore_one_range(
            sizes in proptest::collection::vec(1u64..40, 1..40),
            free_order in proptest::collection::vec(any::<usize>(), 40),
        ) {
            let mut allocator = VaAllocator::over(FIRST_PAGE, FIRST_PAGE + 512);
            let mut live: alloc::vec::Vec<PageRange> = alloc::vec::Vec::new();
            for (step, size) in sizes.iter().enumerate() {
                if let Some(range) = allocator.allocate(*size) {
                    for other in &live {
                        prop_assert!(range.end_raw() <= other.start().as_u64()
                            || other.end_raw() <= range.start().as_u64());
                    }
                    live.push(range);
                }
                if step % 3 == 2 && !live.is_empty() {
                    let victim = live.swap_remove(free_order[step] % live.len());
                    prop_assert!(allocator.free(victim).is_ok());
                }
            }
            for range in live.drain(..) {
                prop_assert!(allocator.free(range).is_ok());
            }
            prop_assert_eq!(allocator.free_pages(), 512);
            prop_assert_eq!(allocator.free_ranges(), 1);
        }
    }
}
