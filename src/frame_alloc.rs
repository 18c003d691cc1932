//! The frame allocator's interface and, for the kernel, a bitmap allocator over the domain's pseudo-physical frames.
//!
//! The bitmap allocator manages the pfns from the first one after Xen's bootstrap area up to
//! the domain's size and hands out the lowest free frame first: the pmap relies on that, since
//! page-table pages it needs to extend the direct map must already be mapped themselves.

use crate::addr::Pfn;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A source of this domain's free pseudo-physical frames.
pub trait FrameAllocator {
    /// A free frame, or `None` when memory is exhausted. Contents are unspecified.
    fn allocate(&mut self) -> Option<Pfn>;
    /// Gives a frame back. Freeing a frame that is not allocated is a bug the allocator reports.
    fn free(&mut self, frame: Pfn);
}

/// A frame the allocator refused to take back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The frame is outside the range this allocator manages.
    NotManaged(Pfn),
    /// The frame is already free: a double free.
    NotAllocated(Pfn),
}

impl fmt::Display for FreeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreeError::NotManaged(frame) => {
                write!(
                    formatter,
                    "pfn {frame} is not managed by the frame allocator"
                )
            }
            FreeError::NotAllocated(frame) => {
                write!(formatter, "pfn {frame} freed while already free")
            }
        }
    }
}

/// Lowest-first allocator over `[first, end)`: one bit per frame, set when the frame is free.
#[derive(Clone, Debug)]
pub struct BitmapFrameAllocator {
    first: Pfn,
    frames: u64,
    free_bits: Vec<u64>,
    free_count: u64,
    /// No free frame lies in a word below this one.
    lowest_candidate_word: usize,
    refused_frees: u64,
}

impl BitmapFrameAllocator {
    /// An allocator owning every frame in `[first, end)`, all free. `None` when the range is empty.
    pub fn new(first: Pfn, end: Pfn) -> Option<BitmapFrameAllocator> {
        let frames = end
            .get()
            .checked_sub(first.get())
            .filter(|&frames| frames > 0)?;
        let words = usize::try_from(frames.div_ceil(64)).ok()?;
        let mut free_bits = vec![u64::MAX; words];
        let tail_bits = frames % 64;
        if tail_bits != 0 {
            if let Some(last) = free_bits.last_mut() {
                *last = (1u64 << tail_bits) - 1;
            }
        }
        Some(BitmapFrameAllocator {
            first,
            frames,
            free_bits,
            free_count: frames,
            lowest_candidate_word: 0,
            refused_frees: 0,
        })
    }

    /// The first frame managed.
    pub fn first(&self) -> Pfn {
        self.first
    }

    /// How many frames are managed.
    pub fn total_frames(&self) -> u64 {
        self.frames
    }

    /// How many frames are free now.
    pub fn free_frames(&self) -> u64 {
        self.free_count
    }

    /// How many frees were refused (double frees, foreign frames) since boot.
    pub fn refused_frees(&self) -> u64 {
        self.refused_frees
    }

    /// Whether `frame` is allocated; `None` for frames outside the managed range.
    pub fn is_allocated(&self, frame: Pfn) -> Option<bool> {
        let (word, bit) = self.position(frame)?;
        let bits = self.free_bits.get(word)?;
        Some(bits & (1 << bit) == 0)
    }

    /// Gives `frame` back, refusing frames not allocated from this allocator.
    pub fn try_free(&mut self, frame: Pfn) -> Result<(), FreeError> {
        let (word, bit) = self.position(frame).ok_or(FreeError::NotManaged(frame))?;
        let bits = self
            .free_bits
            .get_mut(word)
            .ok_or(FreeError::NotManaged(frame))?;
        if *bits & (1 << bit) != 0 {
            return Err(FreeError::NotAllocated(frame));
        }
        *bits |= 1 << bit;
        self.free_count += 1;
        self.lowest_candidate_word = self.lowest_candidate_word.min(word);
        Ok(())
    }

    /// Takes the highest `count` frames out of circulation for good, if every one of them is
    /// free, and returns the first: a contiguous run (contiguous in the direct map too) for
    /// the kernel heap. Lowest-first allocation leaves the top of memory free at boot.
    pub fn reserve_top(&mut self, count: u64) -> Option<Pfn> {
        if count == 0 || count > self.frames {
            return None;
        }
        let first_index = self.frames - count;
        let first = self.first.checked_add(first_index)?;
        let all_free = (first_index..self.frames).all(|index| {
            self.first
                .checked_add(index)
                .and_then(|frame| self.is_allocated(frame))
                == Some(false)
        });
        if !all_free {
            return None;
        }
        for index in first_index..self.frames {
            let frame = self.first.checked_add(index)?;
            let (word, bit) = self.position(frame)?;
            if let Some(bits) = self.free_bits.get_mut(word) {
                *bits &= !(1 << bit);
            }
        }
        self.free_count -= count;
        Some(first)
    }

    /// The bitmap word and bit of a managed frame.
    fn position(&self, frame: Pfn) -> Option<(usize, u32)> {
        let index = frame.get().checked_sub(self.first.get())?;
        if index >= self.frames {
            return None;
        }
        Some((usize::try_from(index / 64).ok()?, (index % 64) as u32))
    }
}

impl FrameAllocator for BitmapFrameAllocator {
    fn allocate(&mut self) -> Option<Pfn> {
        let start = self.lowest_candidate_word;
        let (offset, bits) = self
            .free_bits
            .get_mut(start..)?
            .iter_mut()
            .enumerate()
            .find(|(_, bits)| **bits != 0)?;
        let word = start + offset;
        let bit = bits.trailing_zeros();
        *bits &= !(1 << bit);
        self.free_count -= 1;
        self.lowest_candidate_word = word;
        self.first.checked_add(word as u64 * 64 + u64::from(bit))
    }

    fn free(&mut self, frame: Pfn) {
        if let Err(error) = self.try_free(frame) {
            self.refused_frees += 1;
            log::error!("frame allocator: {error}; ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn an_empty_range_is_no_allocator() {
        assert!(BitmapFrameAllocator::new(Pfn::new(10).unwrap(), Pfn::new(10).unwrap()).is_none());
        assert!(BitmapFrameAllocator::new(Pfn::new(10).unwrap(), Pfn::new(9).unwrap()).is_none());
    }

    #[test]
    fn frames_come_out_lowest_first_and_stop_at_the_end() {
        let mut allocator =
            BitmapFrameAllocator::new(Pfn::new(0x32b).unwrap(), Pfn::new(0x32b + 70).unwrap())
                .unwrap();
        let frames: Vec<Pfn> = core::iter::from_fn(|| allocator.allocate()).collect();
        assert_eq!(frames.len(), 70);
        assert_eq!(frames.first(), Some(&Pfn::new(0x32b).unwrap()));
        assert_eq!(frames.last(), Some(&Pfn::new(0x32b + 69).unwrap()));
        assert!(frames.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(allocator.free_frames(), 0);
        assert_eq!(allocator.allocate(), None);
    }

    #[test]
    fn a_freed_frame_is_the_next_one_handed_out_when_it_is_lowest() {
        let mut allocator =
            BitmapFrameAllocator::new(Pfn::new(100).unwrap(), Pfn::new(300).unwrap()).unwrap();
        let taken: Vec<Pfn> = (0..150).map(|_| allocator.allocate().unwrap()).collect();
        allocator.free(taken[3]);
        allocator.free(taken[140]);
        assert_eq!(allocator.allocate(), Some(Pfn::new(103).unwrap()));
        assert_eq!(allocator.allocate(), Some(Pfn::new(240).unwrap()));
        assert_eq!(allocator.allocate(), Some(Pfn::new(250).unwrap()));
    }

    #[test]
    fn double_frees_and_foreign_frames_are_refused_and_counted() {
        let mut allocator =
            BitmapFrameAllocator::new(Pfn::new(100).unwrap(), Pfn::new(200).unwrap()).unwrap();
        let frame = allocator.allocate().unwrap();
        assert_eq!(allocator.try_free(frame), Ok(()));
        assert_eq!(
            allocator.try_free(frame),
            Err(FreeError::NotAllocated(frame))
        );
        assert_eq!(
            allocator.try_free(Pfn::new(99).unwrap()),
            Err(FreeError::NotManaged(Pfn::new(99).unwrap()))
        );
        assert_eq!(
            allocator.try_free(Pfn::new(200).unwrap()),
            Err(FreeError::NotManaged(Pfn::new(200).unwrap()))
        );
        allocator.free(frame);
        allocator.free(Pfn::new(5).unwrap());
        assert_eq!(allocator.refused_frees(), 2);
        assert_eq!(allocator.free_frames(), 100);
    }

    #[test]
    fn allocation_state_is_reported_and_a_freed_frame_comes_back() {
        let mut allocator =
            BitmapFrameAllocator::new(Pfn::new(0).unwrap(), Pfn::new(4).unwrap()).unwrap();
        assert_eq!(allocator.allocate(), Some(Pfn::new(0).unwrap()));
        assert_eq!(allocator.allocate(), Some(Pfn::new(1).unwrap()));
        assert_eq!(allocator.is_allocated(Pfn::new(0).unwrap()), Some(true));
        assert_eq!(allocator.is_allocated(Pfn::new(2).unwrap()), Some(false));
        assert_eq!(allocator.is_allocated(Pfn::new(4).unwrap()), None);
        allocator.free(Pfn::new(0).unwrap());
        assert_eq!(allocator.allocate(), Some(Pfn::new(0).unwrap()));
    }

    #[test]
    fn the_top_frames_are_reserved_only_when_all_are_free() {
        let mut allocator =
            BitmapFrameAllocator::new(Pfn::new(100).unwrap(), Pfn::new(300).unwrap()).unwrap();
        let low = allocator.allocate().unwrap();
        assert_eq!(allocator.reserve_top(0), None);
        assert_eq!(allocator.reserve_top(201), None);
        assert_eq!(allocator.reserve_top(50), Pfn::new(250));
        assert_eq!(allocator.free_frames(), 200 - 1 - 50);
        assert_eq!(allocator.is_allocated(Pfn::new(299).unwrap()), Some(true));
        // Overlapping the reserved run: refused, nothing changes.
        assert_eq!(allocator.reserve_top(60), None);
        assert_eq!(allocator.free_frames(), 149);
        // The rest is still handed out lowest first and never reaches the reserved run.
        let rest: Vec<Pfn> = core::iter::from_fn(|| allocator.allocate()).collect();
        assert_eq!(rest.len(), 149);
        assert!(rest.iter().all(|frame| *frame > low && frame.get() < 250));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Allocate,
        Free(usize),
        FreeAnything(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => Just(Step::Allocate),
            2 => any::<usize>().prop_map(Step::Free),
            1 => (90u64..400).prop_map(Step::FreeAnything),
        ]
    }

    /// Steps per case; under Miri (`make miri`), where each step is thousands of times slower,
    /// shorter sequences with the same assertions.
    const MODEL_STEPS: usize = if cfg!(miri) { 60 } else { 400 };

    proptest! {
        /// Against a model (a set of free frames): every allocation is the lowest free frame,
        /// frees of non-allocated frames are refused, and the counts agree.
        #[test]
        fn the_bitmap_agrees_with_a_model(steps in proptest::collection::vec(step(), 1..MODEL_STEPS)) {
            let (first, end) = (100u64, 333u64);
            let mut allocator = BitmapFrameAllocator::new(Pfn::new(first).unwrap(), Pfn::new(end).unwrap()).unwrap();
            let mut free: BTreeSet<u64> = (first..end).collect();
            let mut allocated: Vec<u64> = Vec::new();
            for step in steps {
                match step {
                    Step::Allocate => {
                        let expected = free.iter().next().copied();
                        prop_assert_eq!(allocator.allocate().map(|frame| frame.get()), expected);
                        if let Some(frame) = expected {
                            free.remove(&frame);
                            allocated.push(frame);
                        }
                    }
                    Step::Free(choice) => {
                        if !allocated.is_empty() {
                            let frame = allocated.swap_remove(choice % allocated.len());
                            prop_assert_eq!(allocator.try_free(Pfn::new(frame).unwrap()), Ok(()));
                            free.insert(frame);
                        }
                    }
                    Step::FreeAnything(frame) => {
                        let result = allocator.try_free(Pfn::new(frame).unwrap());
                        if allocated.contains(&frame) {
                            prop_assert_eq!(result, Ok(()));
                            allocated.retain(|&other| other != frame);
                            free.insert(frame);
                        } else {
                            prop_assert!(result.is_err());
                        }
                    }
                }
                prop_assert_eq!(allocator.free_frames(), free.len() as u64);
            }
        }
    }
}
