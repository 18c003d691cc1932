//! Buffers the grant map/unmap path reuses from call to call, so that a steady map/unmap cycle does not allocate.

use super::core::Leaf;
use super::error::UnmapCause;
use super::grant_list::{GrantPage, RegionPages};
use super::grant_map::{UnmapItem, MAX_GRANT_BATCH};
use crate::abi::grant_table::{GnttabMapGrantRef, GnttabUnmapGrantRef};
use crate::addr::{MachineAddr, Pfn, VirtAddr};
use crate::ids::GrantHandle;
use alloc::vec::Vec;

/// Spare page vectors of removed regions kept for the next regions, besides the most recent
/// one (beyond this they are freed): enough for 512 regions of several pages in flight to be
/// mapped again without an allocation each (the kernel's heap walks a free list per
/// allocation; one-page regions need no vector).
const SPARE_PAGE_VECTORS: usize = 1024;

/// Bound on the spare vectors' capacity, in pages (8 bytes each): 64 KiB at most stays held.
const SPARE_PAGE_CAPACITY: usize = 8192;

/// Calls of at most this many pages use the small buffers ([`Scratch::buffers`]).
pub(super) const SMALL_CALL_PAGES: usize = 8;

/// The buffers. Each user takes one out with [`take`], uses it, and puts it back with
/// [`give_back`]; a buffer lost on an error path is simply allocated again next time.
#[derive(Debug)]
pub(super) struct Scratch {
    /// For calls of at most [`SMALL_CALL_PAGES`] pages: allocated one after the other when the
    /// pmap is made and never grown, so that they lie on one or two pages of the heap. Under
    /// emulation every distinct page a map+unmap touches after Xen's TLB flush of the unmap
    /// costs a refill (README, issue 10); the large buffers, grown by big calls, each start on
    /// a page of their own.
    small: Buffers,
    /// For larger calls.
    large: Buffers,
    /// The page vector of the region removed last, reused first: a steady map+unmap of one
    /// region takes and gives back this one without touching `spare_pages` (a page of its own).
    recent_pages: Vec<GrantPage>,
    /// Page vectors of removed regions, reused for new regions.
    pub spare_pages: Vec<Vec<GrantPage>>,
    /// The capacity of `spare_pages`' vectors together, in pages.
    pub spare_capacity: usize,
}

/// One set of buffers.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    pub leaves: Vec<Leaf>,
    pub unmap_items: Vec<UnmapItem>,
    /// For each unmap item of `remove`: the start of its region and its page index there.
    pub unmap_places: Vec<(VirtAddr, usize)>,
    pub unmap_results: Vec<Result<(), UnmapCause>>,
    pub unmap_ops: Vec<GnttabUnmapGrantRef>,
    pub map_ops: Vec<GnttabMapGrantRef>,
    /// For each page of an `enter_gnt`: its L1 table and the machine address of its PTE.
    pub targets: Vec<(Pfn, MachineAddr)>,
    pub handles: Vec<Option<GrantHandle>>,
    pub pending: Vec<usize>,
    pub again: Vec<usize>,
    pub tables: Vec<Pfn>,
}

impl Buffers {
    /// Buffers with room for `pages` pages each, the hot ones of a map+unmap allocated first.
    fn with_capacity(pages: usize) -> Buffers {
        Buffers {
            targets: Vec::with_capacity(pages),
            handles: Vec::with_capacity(pages),
            pending: Vec::with_capacity(pages),
            map_ops: Vec::with_capacity(pages),
            unmap_items: Vec::with_capacity(pages),
            unmap_ops: Vec::with_capacity(pages),
            unmap_results: Vec::with_capacity(pages),
            again: Vec::with_capacity(pages),
            tables: Vec::with_capacity(pages),
            leaves: Vec::with_capacity(pages),
            unmap_places: Vec::with_capacity(pages),
        }
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            small: Buffers::with_capacity(SMALL_CALL_PAGES),
            large: Buffers::default(),
            recent_pages: Vec::new(),
            spare_pages: Vec::new(),
            spare_capacity: 0,
        }
    }
}

/// Takes the buffer out of `slot`, empty (its capacity kept).
pub(super) fn take<T>(slot: &mut Vec<T>) -> Vec<T> {
    let mut buffer = core::mem::take(slot);
    buffer.clear();
    buffer
}

/// Puts `buffer` back into `slot`, emptied; a buffer grown far beyond one batch by a large
/// request is shrunk so that one big call does not pin its memory for good.
// Inlined: the steady map+unmap path gives back several buffers a cycle, and under emulation
// each call and return is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
#[inline(always)]
pub(super) fn give_back<T>(slot: &mut Vec<T>, mut buffer: Vec<T>) {
    buffer.clear();
    if buffer.capacity() > 2 * MAX_GRANT_BATCH {
        buffer.shrink_to(MAX_GRANT_BATCH);
    }
    let empty = core::mem::replace(slot, buffer);
    // The slot held what `take` left, a vector that never allocated: forgetting it frees
    // nothing and saves an out-of-line deallocation call per buffer (a dozen per one-page
    // map+unmap cycle). A slot refilled meanwhile is dropped as usual.
    if empty.capacity() == 0 {
        core::mem::forget(empty);
    }
}

impl Scratch {
    /// The buffers for a call over `pages` pages: the small ones up to [`SMALL_CALL_PAGES`]
    /// (a call never puts more items in a buffer than it has pages, so they never grow).
    pub fn buffers(&mut self, pages: usize) -> &mut Buffers {
        if pages <= SMALL_CALL_PAGES {
            &mut self.small
        } else {
            &mut self.large
        }
    }

    /// An empty page vector for a new region of `pages` pages, reused when one is spare.
    pub fn page_vector(&mut self, pages: usize) -> Vec<GrantPage> {
        let mut vector = if self.recent_pages.capacity() > 0 {
            core::mem::take(&mut self.recent_pages)
        } else {
            match self.spare_pages.pop() {
                Some(vector) => {
                    self.spare_capacity = self.spare_capacity.saturating_sub(vector.capacity());
                    vector
                }
                None => Vec::new(),
            }
        };
        vector.clear();
        vector.reserve(pages);
        vector
    }

    /// Keeps the page vector of a region that went away, if it had one, for the next region.
    /// Inlined into the steady path's one-region remove, where it usually has nothing to do.
    #[inline(always)]
    pub fn recycle_pages(&mut self, pages: RegionPages) {
        if let RegionPages::Many(vector) = pages {
            self.recycle_page_vector(vector);
        }
    }

    /// Keeps the page vector of a region that went away, for the next one, within the bounds.
    fn recycle_page_vector(&mut self, mut vector: Vec<GrantPage>) {
        vector.clear();
        if vector.capacity() > 2 * MAX_GRANT_BATCH {
            vector.shrink_to(MAX_GRANT_BATCH);
        }
        if self.recent_pages.capacity() == 0 {
            self.recent_pages = vector;
            return;
        }
        let capacity = vector.capacity();
        if self.spare_pages.len() < SPARE_PAGE_VECTORS
            && self.spare_capacity + capacity <= SPARE_PAGE_CAPACITY
        {
            self.spare_capacity += capacity;
            self.spare_pages.push(vector);
        }
    }
}
