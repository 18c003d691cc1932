//! A lowest-first frame allocator over the simulated domain's free frames, refusing double frees.

use super::machine::sim_pfn;
use crate::addr::Pfn;
use crate::frame_alloc::FrameAllocator;
use alloc::collections::BTreeSet;

/// Free frames, handed out lowest first (as the kernel's allocator does).
#[derive(Debug, Default)]
pub struct SimFrameAllocator {
    free: BTreeSet<Pfn>,
    allocated: BTreeSet<Pfn>,
    /// Frees of frames that were not allocated: a bug the tests assert never happens.
    pub bad_frees: u32,
}

impl SimFrameAllocator {
    /// An allocator owning frames `first .. end`.
    pub fn new(first: u64, end: u64) -> SimFrameAllocator {
        SimFrameAllocator {
            free: (first..end).map(sim_pfn).collect(),
            allocated: BTreeSet::new(),
            bad_frees: 0,
        }
    }

    /// Frames currently handed out.
    pub fn allocated(&self) -> usize {
        self.allocated.len()
    }
}

impl FrameAllocator for SimFrameAllocator {
    fn allocate(&mut self) -> Option<Pfn> {
        let frame = self.free.pop_first()?;
        self.allocated.insert(frame);
        Some(frame)
    }

    fn free(&mut self, frame: Pfn) {
        if self.allocated.remove(&frame) {
            self.free.insert(frame);
        } else {
            self.bad_frees += 1;
        }
    }
}
