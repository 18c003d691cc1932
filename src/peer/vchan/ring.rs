//! One vchan ring's bytes: where they are, and copies in and out that wrap around its end.
//!
//! Index arithmetic follows `tools/libs/vchan/io.c` (`do_send`, `do_recv`): indices are free-running
//! `u32` counters, the byte position is `index & (size - 1)`, and a transfer that crosses the end
//! of the ring is split in two copies.

use super::fault::VchanFault;
use crate::shared_memory::SharedMemory;

/// A ring's bytes: where they start in the memory holding them, and the ring's size (a power of two).
///
/// The memory itself (the shared page, or the ring's own mapped region) is owned by the channel
/// and passed in, so that a ring never holds a mapping that could outlive its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingBuffer {
    base: usize,
    size: u32,
}

impl RingBuffer {
    /// A ring of `size` bytes at `base` in `memory`, checked to be a power of two that fits.
    pub fn new(base: usize, size: u32, memory: &impl SharedMemory) -> Result<Self, VchanFault> {
        let needed = base.saturating_add(size as usize);
        if !size.is_power_of_two() || needed > memory.size() {
            return Err(VchanFault::RegionTooSmall {
                needed,
                size: memory.size(),
            });
        }
        Ok(RingBuffer { base, size })
    }

    /// The ring's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Splits `length` bytes starting at free-running `index` into the two contiguous pieces.
    fn pieces(&self, index: u32, length: usize) -> (usize, usize, usize) {
        let position = (index & (self.size - 1)) as usize;
        let first = length.min(self.size as usize - position);
        (position, first, length - first)
    }

    /// Copies `into.len()` bytes (at most the ring's size) starting at `index` out of the ring.
    pub fn copy_out(
        &self,
        memory: &impl SharedMemory,
        index: u32,
        into: &mut [u8],
    ) -> Result<(), VchanFault> {
        let base = self.base;
        let (position, first, _) = self.pieces(index, into.len());
        let (head, tail) = into.split_at_mut(first);
        memory.read_bytes(base + position, head)?;
        memory.read_bytes(base, tail)?;
        Ok(())
    }

    /// Copies `from` (at most the ring's size) into the ring starting at `index`.
    pub fn copy_in(
        &self,
        memory: &impl SharedMemory,
        index: u32,
        from: &[u8],
    ) -> Result<(), VchanFault> {
        let base = self.base;
        let (position, first, _) = self.pieces(index, from.len());
        let (head, tail) = from.split_at(first);
        memory.write_bytes(base + position, head)?;
        memory.write_bytes(base, tail)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::vchan::testing::FakeMemory;

    #[test]
    fn copies_wrap_around_the_end() {
        let page = FakeMemory::new(4096);
        let ring = RingBuffer::new(1024, 1024, &page).unwrap();
        let data: alloc::vec::Vec<u8> = (0..100).collect();
        // Index 1000 + 2^32 wraps: the position is 1000, 24 bytes fit before the end.
        let index = 1000u32.wrapping_add(1024 * 4);
        ring.copy_in(&page, index, &data).unwrap();
        let mut byte = [0u8];
        page.read_bytes(1024 + 1023, &mut byte).unwrap();
        assert_eq!(byte[0], 23);
        page.read_bytes(1024, &mut byte).unwrap();
        assert_eq!(byte[0], 24);
        let mut back = [0u8; 100];
        ring.copy_out(&page, index, &mut back).unwrap();
        assert_eq!(&back[..], &data[..]);
    }

    #[test]
    fn a_ring_must_fit_its_storage() {
        let page = FakeMemory::new(4096);
        assert!(RingBuffer::new(2048, 4096, &page).is_err());
        assert!(RingBuffer::new(0, 8192, &page).is_err());
        assert!(RingBuffer::new(0, 3000, &page).is_err());
        assert!(RingBuffer::new(0, 4096, &page).is_ok());
    }
}
