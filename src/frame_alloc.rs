//! The frame allocator's interface (and, for the kernel, its bookkeeping over the domain's pseudo-physical frames).

use crate::addr::Pfn;

/// A source of this domain's free pseudo-physical frames.
pub trait FrameAllocator {
    /// A free frame, or `None` when memory is exhausted. Contents are unspecified.
    fn allocate(&mut self) -> Option<Pfn>;
    /// Gives a frame back. Freeing a frame that is not allocated is a bug the allocator reports.
    fn free(&mut self, frame: Pfn);
}
