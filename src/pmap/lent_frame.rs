//! Frames the pmap lends out of its own frame allocator as owned tokens, so that only a frame it handed out can come back (the lab build's own pages).
//!
//! The pmap's allocator also holds its page-table pages: a bare-pfn `free` reachable from
//! outside would let a caller hand back a live table, which the next allocation would zero
//! under the mappings it holds. A [`LentFrame`] is made only here, is neither `Copy` nor
//! `Clone`, and is consumed by [`Pmap::take_back_frame`], so the allocator gets back exactly
//! what it lent, once.

use super::core::Pmap;
use crate::addr::Pfn;
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;

/// A frame lent out of the pmap's allocator; give it back with [`Pmap::take_back_frame`]
/// (dropped instead, the frame stays out of the allocator: a leak, never a double use).
#[derive(Debug, PartialEq, Eq)]
pub struct LentFrame {
    frame: Pfn,
}

impl LentFrame {
    /// The frame's pseudo-physical number.
    pub fn pfn(&self) -> Pfn {
        self.frame
    }
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// A free frame of the allocator the pmap's page tables come from, or `None` when memory
    /// is exhausted. Its contents are unspecified.
    pub fn lend_frame(&mut self) -> Option<LentFrame> {
        self.frames.allocate().map(|frame| LentFrame { frame })
    }

    /// Returns a frame [`Pmap::lend_frame`] handed out.
    pub fn take_back_frame(&mut self, lent: LentFrame) {
        self.frames.free(lent.frame);
    }
}
