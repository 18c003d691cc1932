//! Good-fit allocator of page ranges in the chosen-VA region: free ranges on size-bucket lists, range ends tagged in a page index, O(1) per call.

use super::layout::{PageRange, CHOSEN_REGION_END, CHOSEN_REGION_START};
use super::page_index::PageIndex;
use crate::addr::{VirtAddr, PAGE_SIZE};
use alloc::vec::Vec;
use core::num::NonZeroU32;

/// A free that does not match an allocation: the range is not exactly one live allocation (part of it already free, outside the region, or only part of an allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAllocated(pub PageRange);

impl core::fmt::Display for NotAllocated {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "{} page(s) at {} are not one allocation",
            self.0.pages(),
            self.0.start()
        )
    }
}

/// Buckets: lengths 1..LINEAR_BUCKETS each have their own; above, each power of two is split
/// into 2^SUB_BITS buckets of equal width (the two-level segregated fit of TLSF allocators).
const LINEAR_BUCKETS: usize = 16;
const SUB_BITS: u32 = 3;
const BUCKETS: usize = LINEAR_BUCKETS + (64 - 4) * (1 << SUB_BITS);
const BITMAP_WORDS: usize = BUCKETS.div_ceil(64);

/// The bucket whose ranges have about `length` pages: the exact length below LINEAR_BUCKETS,
/// else the top bit and the SUB_BITS bits below it.
fn bucket_of(length: u64) -> usize {
    if length < LINEAR_BUCKETS as u64 {
        return length as usize;
    }
    let top = 63 - length.leading_zeros();
    let sub = (length >> (top - SUB_BITS)) as usize & ((1 << SUB_BITS) - 1);
    LINEAR_BUCKETS + (top as usize - 4) * (1 << SUB_BITS) + sub
}

/// The first bucket all of whose ranges hold `pages`: the request rounded up to the next
/// bucket boundary, so that the head of any non-empty bucket from there on fits.
fn bucket_for_request(pages: u64) -> usize {
    if pages < LINEAR_BUCKETS as u64 {
        return pages as usize;
    }
    let top = 63 - pages.leading_zeros();
    bucket_of(pages.saturating_add((1 << (top - SUB_BITS)) - 1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// On its bucket's list; tagged at its first and last page.
    Free,
    /// Handed out; tagged at its first page, so that `free` can check the range it is given.
    Allocated,
    /// An unused record, on the vacant list.
    Vacant,
}

/// A range of pages, free or allocated.
#[derive(Clone, Copy, Debug)]
struct Record {
    start: u64,
    length: u64,
    state: State,
    /// Neighbours on the bucket's list (free records only), as record indexes.
    previous: Option<u32>,
    next: Option<u32>,
}

/// Good-fit allocator of page ranges with O(1) allocate and free, whatever the number of
/// ranges: free ranges sit on one list per size bucket (a bitmap finds the first non-empty
/// bucket that fits), and every range's boundary pages carry its record in a [`PageIndex`],
/// so that a free finds the neighbours it merges with, and checks that it gives back exactly
/// one allocation, in a few table walks. The best-fit tree this replaces cost a descent of two
/// trees per call, several cache misses each once thousands of holes live. Adjacent free
/// ranges are always merged. Records and index nodes are reused: in a steady state of
/// allocations and frees nothing is allocated on the heap.
#[derive(Debug)]
pub struct VaAllocator {
    records: Vec<Record>,
    vacant: Vec<u32>,
    /// First page of every range and last page of every free range -> record index + 1.
    tags: PageIndex,
    heads: [Option<u32>; BUCKETS],
    non_empty: [u64; BITMAP_WORDS],
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
            records: Vec::new(),
            vacant: Vec::new(),
            tags: PageIndex::default(),
            heads: [None; BUCKETS],
            non_empty: [0; BITMAP_WORDS],
            first_page,
            end_page,
        };
        if let Some(index) = allocator.new_record(first_page, end_page - first_page) {
            allocator.add_free(index);
        }
        allocator
    }

    /// `pages` pages from the start of a free range in the first non-empty bucket whose
    /// ranges all hold them, or `None` when none is large enough. Large ranges are kept whole
    /// for large requests as with best fit, to within one bucket's width (an eighth).
    pub fn allocate(&mut self, pages: u64) -> Option<PageRange> {
        if pages == 0 {
            return None;
        }
        let bucket = self.first_non_empty(bucket_for_request(pages))?;
        let index = self.heads.get(bucket).copied().flatten()?;
        let Record { start, length, .. } = *self.record(index)?;
        let range = PageRange::new(page_address(start)?, pages)?;
        self.remove_free(index);
        if length > pages {
            // The record stays the free remainder; the allocation gets a new one.
            let allocated = self.new_record(start, pages)?;
            if let Some(record) = self.record_mut(allocated) {
                record.state = State::Allocated;
            }
            if let Some(record) = self.record_mut(index) {
                record.start = start + pages;
                record.length = length - pages;
            }
            self.add_free(index);
            self.tag(start, allocated);
        } else {
            if let Some(record) = self.record_mut(index) {
                record.state = State::Allocated;
            }
            self.tag(start, index);
        }
        Some(range)
    }

    /// Gives an allocation back, merging it with free neighbours. Refuses (changing nothing)
    /// a range that is not exactly one live allocation: a double free, a range outside the
    /// region, or part of an allocation.
    pub fn free(&mut self, range: PageRange) -> Result<(), NotAllocated> {
        let page = PAGE_SIZE as u64;
        let start = range.start().as_u64() / page;
        let end = start + range.pages();
        if start < self.first_page || end > self.end_page {
            return Err(NotAllocated(range));
        }
        let index = self
            .tagged(start)
            .filter(|&index| {
                self.record(index).is_some_and(|record| {
                    record.state == State::Allocated
                        && record.start == start
                        && record.length == range.pages()
                })
            })
            .ok_or(NotAllocated(range))?;
        self.tags.clear(start);
        let mut merged_start = start;
        let mut merged_end = end;
        if let Some(before) = start
            .checked_sub(1)
            .and_then(|last| self.free_ending_at(last))
        {
            merged_start = self.record(before).map_or(start, |record| record.start);
            self.remove_free(before);
            self.release(before);
        }
        if let Some(after) = self.free_starting_at(end) {
            merged_end = self
                .record(after)
                .map_or(end, |record| record.start + record.length);
            self.remove_free(after);
            self.release(after);
        }
        if let Some(record) = self.record_mut(index) {
            record.start = merged_start;
            record.length = merged_end - merged_start;
        }
        self.add_free(index);
        Ok(())
    }

    fn record(&self, index: u32) -> Option<&Record> {
        self.records.get(index as usize)
    }

    fn record_mut(&mut self, index: u32) -> Option<&mut Record> {
        self.records.get_mut(index as usize)
    }

    /// A record for `[start, start + length)` in no list and with no tag, marked free.
    fn new_record(&mut self, start: u64, length: u64) -> Option<u32> {
        let record = Record {
            start,
            length,
            state: State::Free,
            previous: None,
            next: None,
        };
        match self.vacant.pop() {
            Some(index) => {
                *self.record_mut(index)? = record;
                Some(index)
            }
            None => {
                let index = u32::try_from(self.records.len()).ok()?;
                self.records.push(record);
                Some(index)
            }
        }
    }

    fn release(&mut self, index: u32) {
        if let Some(record) = self.record_mut(index) {
            record.state = State::Vacant;
            self.vacant.push(index);
        }
    }

    fn tag(&mut self, page: u64, index: u32) {
        if let Some(slot) = NonZeroU32::new(index.wrapping_add(1)) {
            self.tags.set(page, slot);
        }
    }

    fn tagged(&self, page: u64) -> Option<u32> {
        self.tags.get(page).map(|slot| slot.get() - 1)
    }

    /// The free range whose last page is `page`.
    fn free_ending_at(&self, page: u64) -> Option<u32> {
        let index = self.tagged(page)?;
        let record = self.record(index)?;
        (record.state == State::Free && record.start + record.length == page + 1).then_some(index)
    }

    /// The free range whose first page is `page`.
    fn free_starting_at(&self, page: u64) -> Option<u32> {
        let index = self.tagged(page)?;
        let record = self.record(index)?;
        (record.state == State::Free && record.start == page).then_some(index)
    }

    /// Puts a free record on its bucket's list and tags its two ends.
    fn add_free(&mut self, index: u32) {
        let Some(&Record { start, length, .. }) = self.record(index) else {
            return;
        };
        let bucket = bucket_of(length);
        let head = self.heads.get(bucket).copied().flatten();
        if let Some(record) = self.record_mut(index) {
            record.state = State::Free;
            record.previous = None;
            record.next = head;
        }
        if let Some(head) = head.and_then(|head| self.record_mut(head)) {
            head.previous = Some(index);
        }
        if let Some(slot) = self.heads.get_mut(bucket) {
            *slot = Some(index);
        }
        if let Some(word) = self.non_empty.get_mut(bucket / 64) {
            *word |= 1 << (bucket % 64);
        }
        self.tag(start, index);
        self.tag(start + length - 1, index);
    }

    /// Takes a free record off its bucket's list and removes its tags.
    fn remove_free(&mut self, index: u32) {
        let Some(&Record {
            start,
            length,
            previous,
            next,
            ..
        }) = self.record(index)
        else {
            return;
        };
        let bucket = bucket_of(length);
        match previous {
            Some(previous) => {
                if let Some(record) = self.record_mut(previous) {
                    record.next = next;
                }
            }
            None => {
                if let Some(slot) = self.heads.get_mut(bucket) {
                    *slot = next;
                }
                if next.is_none() {
                    if let Some(word) = self.non_empty.get_mut(bucket / 64) {
                        *word &= !(1 << (bucket % 64));
                    }
                }
            }
        }
        if let Some(record) = next.and_then(|next| self.record_mut(next)) {
            record.previous = previous;
        }
        self.tags.clear(start);
        self.tags.clear(start + length - 1);
    }

    /// The first non-empty bucket at or after `bucket`.
    fn first_non_empty(&self, bucket: usize) -> Option<usize> {
        let mut word_index = bucket / 64;
        let mut word = self.non_empty.get(word_index)? & (u64::MAX << (bucket % 64));
        loop {
            if word != 0 {
                return Some(word_index * 64 + word.trailing_zeros() as usize);
            }
            word_index += 1;
            word = *self.non_empty.get(word_index)?;
        }
    }

    /// Pages currently free (for tests' accounting checks).
    #[cfg(test)]
    pub fn free_pages(&self) -> u64 {
        self.free_records().map(|record| record.length).sum()
    }

    /// Number of separate free ranges (1 when everything is free again; for tests' checks
    /// that freeing coalesces). Also checks that the bucket lists, the bitmap and the tags
    /// agree with the records.
    #[cfg(test)]
    pub fn free_ranges(&self) -> usize {
        let mut listed = 0;
        for (bucket, head) in self.heads.iter().enumerate() {
            let marked = self.non_empty[bucket / 64] & (1 << (bucket % 64)) != 0;
            assert_eq!(marked, head.is_some(), "bucket {bucket}'s bit lost step");
            let mut previous = None;
            let mut at = *head;
            while let Some(index) = at {
                let record = self.records[index as usize];
                assert_eq!(record.state, State::Free);
                assert_eq!(
                    bucket_of(record.length),
                    bucket,
                    "range in the wrong bucket"
                );
                assert_eq!(record.previous, previous, "broken back link");
                assert_eq!(self.tagged(record.start), Some(index));
                assert_eq!(self.tagged(record.start + record.length - 1), Some(index));
                listed += 1;
                previous = at;
                at = record.next;
            }
        }
        let free = self.free_records().count();
        assert_eq!(listed, free, "a free range is on no list");
        free
    }

    #[cfg(test)]
    fn free_records(&self) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(|record| record.state == State::Free)
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
    fn allocation_fits_small_holes_first_and_frees_coalesce() {
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
    fn only_whole_allocations_are_taken_back() {
        let mut allocator = VaAllocator::over(FIRST_PAGE, FIRST_PAGE + 64);
        let range = allocator.allocate(4).unwrap();
        let head = PageRange::new(range.start(), 2).unwrap();
        let tail = PageRange::new(range.start().checked_add_pages(2).unwrap(), 2).unwrap();
        let longer = PageRange::new(range.start(), 5).unwrap();
        assert_eq!(allocator.free(head), Err(NotAllocated(head)));
        assert_eq!(allocator.free(tail), Err(NotAllocated(tail)));
        assert_eq!(allocator.free(longer), Err(NotAllocated(longer)));
        assert_eq!(allocator.free_pages(), 60, "refusals changed nothing");
        allocator.free(range).unwrap();
        assert_eq!(allocator.free_ranges(), 1);
    }

    #[test]
    fn requests_go_to_buckets_whose_every_range_fits() {
        const LARGEST_REQUEST: u64 = 5000;
        // The shortest length of each bucket, found in one ascending pass (bucket_of never
        // decreases), so the check below is linear, not a search per request (which took
        // hours under Miri).
        let mut shortest = alloc::vec![None; BUCKETS];
        let mut previous_bucket = 0;
        for length in 1..=LARGEST_REQUEST * 2 {
            let bucket = bucket_of(length);
            assert!(previous_bucket <= bucket, "bucket_of decreases at {length}");
            previous_bucket = bucket;
            shortest[bucket].get_or_insert(length);
        }
        for pages in 1..LARGEST_REQUEST {
            let bucket = bucket_for_request(pages);
            assert!(bucket_of(pages) <= bucket);
            // The shortest length in that bucket still holds the request.
            assert!(
                shortest[bucket].is_some_and(|length| length >= pages),
                "{pages}"
            );
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
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
