//! Index arithmetic of Xen's byte rings (the PV console; the xenstore ring has the same shape).
//!
//! A ring is a power-of-two byte array with two free-running 32-bit indices: the producer
//! writes at `producer & (size - 1)` and advances `producer`, the consumer follows. The
//! indices live in a page the other side also writes, so a reading is checked before use:
//! `producer - consumer` (wrapping) above the ring size means the page is corrupt.

use core::fmt;

/// The two indices of a ring as read once from the shared page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIndices {
    pub consumer: u32,
    pub producer: u32,
}

/// The indices say more bytes are queued than the ring holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingCorrupt {
    pub indices: RingIndices,
    pub size: u32,
}

impl fmt::Display for RingCorrupt {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "ring indices consumer {} producer {} queue more than the {}-byte ring",
            self.indices.consumer, self.indices.producer, self.size
        )
    }
}

/// A copy between a linear buffer and the ring: at most two pieces, because the ring wraps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingTransfer {
    /// `(offset in the ring, length)` of the first piece.
    pub first: (usize, usize),
    /// `(offset in the ring, length)` of the piece after the wrap (length 0 if none).
    pub second: (usize, usize),
    /// The index to publish once the bytes are copied.
    pub new_index: u32,
}

impl RingTransfer {
    /// Total bytes the transfer moves.
    pub const fn length(&self) -> usize {
        self.first.1 + self.second.1
    }
}

/// A ring of `size` bytes (a power of two, at most 2^31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRing {
    size: u32,
}

impl ByteRing {
    /// A ring of `size` bytes, if `size` is a power of two no larger than 2^31.
    pub const fn new(size: u32) -> Option<ByteRing> {
        if size.is_power_of_two() && size <= 1 << 31 {
            Some(ByteRing { size })
        } else {
            None
        }
    }

    /// Bytes the ring holds.
    pub const fn size(&self) -> u32 {
        self.size
    }

    /// Byte offset of a free-running index.
    pub const fn offset(&self, index: u32) -> usize {
        (index & (self.size - 1)) as usize
    }

    /// Bytes queued between consumer and producer, if the indices are consistent.
    pub fn queued(&self, indices: RingIndices) -> Result<u32, RingCorrupt> {
        let queued = indices.producer.wrapping_sub(indices.consumer);
        if queued > self.size {
            Err(RingCorrupt {
                indices,
                size: self.size,
            })
        } else {
            Ok(queued)
        }
    }

    /// Bytes a producer may still write.
    pub fn space(&self, indices: RingIndices) -> Result<u32, RingCorrupt> {
        Ok(self.size - self.queued(indices)?)
    }

    /// Where to put up to `wanted` bytes as the producer: as many as fit, split at the wrap.
    pub fn plan_write(
        &self,
        indices: RingIndices,
        wanted: usize,
    ) -> Result<RingTransfer, RingCorrupt> {
        let length = (self.space(indices)? as usize).min(wanted);
        Ok(self.transfer_from(indices.producer, length))
    }

    /// A transfer of `length` bytes (at most the ring size) starting at `index`.
    fn transfer_from(&self, index: u32, length: usize) -> RingTransfer {
        let start = self.offset(index);
        let until_wrap = self.size as usize - start;
        let first_length = length.min(until_wrap);
        RingTransfer {
            first: (start, first_length),
            second: (0, length - first_length),
            // length <= size <= 2^31, so it fits in u32.
            new_index: index.wrapping_add(length as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn console_out() -> ByteRing {
        ByteRing::new(2048).unwrap()
    }

    fn at(consumer: u32, producer: u32) -> RingIndices {
        RingIndices { consumer, producer }
    }

    #[test]
    fn only_powers_of_two_are_rings() {
        assert!(ByteRing::new(1024).is_some());
        assert!(ByteRing::new(1000).is_none());
        assert!(ByteRing::new(0).is_none());
    }

    #[test]
    fn an_empty_ring_takes_a_write_in_one_piece() {
        let plan = console_out().plan_write(at(0, 0), 100).unwrap();
        assert_eq!(plan.first, (0, 100));
        assert_eq!(plan.second, (0, 0));
        assert_eq!(plan.new_index, 100);
    }

    #[test]
    fn a_write_across_the_end_is_split_in_two() {
        let plan = console_out().plan_write(at(2000, 2040), 20).unwrap();
        assert_eq!(plan.first, (2040, 8));
        assert_eq!(plan.second, (0, 12));
        assert_eq!(plan.new_index, 2060);
    }

    #[test]
    fn a_full_ring_takes_nothing_and_a_nearly_full_one_takes_what_fits() {
        let ring = console_out();
        let full = ring.plan_write(at(10, 2058), 5).unwrap();
        assert_eq!(full.length(), 0);
        assert_eq!(full.new_index, 2058);
        let nearly = ring.plan_write(at(10, 2055), 5).unwrap();
        assert_eq!(nearly.length(), 3);
        assert_eq!(nearly.new_index, 2058);
    }

    #[test]
    fn indices_wrapping_past_u32_max_still_count_right() {
        let ring = console_out();
        let indices = at(u32::MAX - 5, 10);
        assert_eq!(ring.queued(indices), Ok(16));
        let plan = ring.plan_write(indices, 4).unwrap();
        assert_eq!(plan.first, (10, 4));
        assert_eq!(plan.new_index, 14);
    }

    #[test]
    fn a_producer_too_far_ahead_is_corrupt() {
        let ring = console_out();
        assert_eq!(
            ring.queued(at(0, 2049)),
            Err(RingCorrupt {
                indices: at(0, 2049),
                size: 2048
            })
        );
        // A consumer ahead of the producer wraps to a huge queue: also corrupt.
        assert!(ring.plan_write(at(5, 4), 1).is_err());
    }

    proptest! {
        #[test]
        fn plans_never_overrun_and_pieces_stay_inside(
            consumer in any::<u32>(),
            queued in 0u32..=2048,
            wanted in 0usize..5000,
        ) {
            let ring = console_out();
            let indices = at(consumer, consumer.wrapping_add(queued));
            let write = ring.plan_write(indices, wanted).unwrap();
            prop_assert_eq!(write.length(), wanted.min((2048 - queued) as usize));
            prop_assert!(write.first.0 + write.first.1 <= 2048);
            prop_assert!(write.second.1 == 0 || write.first.0 + write.first.1 == 2048);
            let after = at(consumer, write.new_index);
            prop_assert!(ring.queued(after).unwrap() <= 2048);
        }
    }
}
