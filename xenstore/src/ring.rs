//! The xenstore ring page (`struct xenstore_domain_interface`): its layout and index arithmetic as pure functions.
//!
//! Each direction is a 1024-byte ring with free-running 32-bit producer and consumer indices;
//! a byte's place is its index masked with `MASK_XENSTORE_IDX`. The peer (xenstored) writes
//! one index of each pair, so every computation here checks that the pair is possible,
//! `producer - consumer <= 1024` in wrapping arithmetic, and refuses it otherwise.

use core::fmt;

/// Bytes in each direction's ring (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: u32 = 1024;
/// Offset of `req[]`, the ring of requests to xenstored.
pub const REQUEST_RING_OFFSET: usize = 0;
/// Offset of `rsp[]`, the ring of replies and watch events.
pub const RESPONSE_RING_OFFSET: usize = 1024;
/// Offset of `req_cons` (written by xenstored).
pub const REQUEST_CONSUMER_OFFSET: usize = 2048;
/// Offset of `req_prod` (written by us).
pub const REQUEST_PRODUCER_OFFSET: usize = 2052;
/// Offset of `rsp_cons` (written by us).
pub const RESPONSE_CONSUMER_OFFSET: usize = 2056;
/// Offset of `rsp_prod` (written by xenstored).
pub const RESPONSE_PRODUCER_OFFSET: usize = 2060;
/// Offset of `server_features`.
pub const SERVER_FEATURES_OFFSET: usize = 2064;
/// Offset of `connection`.
pub const CONNECTION_OFFSET: usize = 2068;
/// Offset of `error`.
pub const ERROR_OFFSET: usize = 2072;
/// Bytes of the page the interface uses.
pub const INTERFACE_SIZE: usize = 2076;

/// `XENSTORE_SERVER_FEATURE_RECONNECTION`.
pub const FEATURE_RECONNECTION: u32 = 1;
/// `XENSTORE_SERVER_FEATURE_ERROR`.
pub const FEATURE_ERROR: u32 = 2;
/// `XENSTORE_CONNECTED`: the steady state of `connection`.
pub const CONNECTED: u32 = 0;
/// `XENSTORE_RECONNECT`: a reconnection is in progress.
pub const RECONNECT: u32 = 1;

/// A producer/consumer pair that no correct peer could have written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIndices {
    pub consumer: u32,
    pub producer: u32,
}

impl fmt::Display for BadIndices {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "ring indices producer {:#x} consumer {:#x} are {} bytes apart, over the ring's {}",
            self.producer,
            self.consumer,
            self.producer.wrapping_sub(self.consumer),
            RING_SIZE
        )
    }
}

/// A contiguous stretch of one ring: `length` bytes from `offset` within the 1024-byte array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub length: usize,
}

/// The place in the ring array of the byte with free-running index `index` (`MASK_XENSTORE_IDX`).
pub const fn mask_index(index: u32) -> usize {
    (index & (RING_SIZE - 1)) as usize
}

/// Bytes produced and not yet consumed.
pub fn unconsumed(consumer: u32, producer: u32) -> Result<u32, BadIndices> {
    let used = producer.wrapping_sub(consumer);
    if used > RING_SIZE {
        return Err(BadIndices { consumer, producer });
    }
    Ok(used)
}

/// Bytes the producer may still write.
pub fn free_space(consumer: u32, producer: u32) -> Result<u32, BadIndices> {
    Ok(RING_SIZE - unconsumed(consumer, producer)?)
}

/// The unconsumed bytes that can be read in one copy, from the consumer's place up to the
/// producer or the end of the array, whichever comes first.
pub fn readable_span(consumer: u32, producer: u32) -> Result<Span, BadIndices> {
    let used = unconsumed(consumer, producer)? as usize;
    let offset = mask_index(consumer);
    let until_end = RING_SIZE as usize - offset;
    Ok(Span {
        offset,
        length: used.min(until_end),
    })
}

/// The free bytes that can be written in one copy, from the producer's place up to the
/// consumer or the end of the array, whichever comes first.
pub fn writable_span(consumer: u32, producer: u32) -> Result<Span, BadIndices> {
    let free = free_space(consumer, producer)? as usize;
    let offset = mask_index(producer);
    let until_end = RING_SIZE as usize - offset;
    Ok(Span {
        offset,
        length: free.min(until_end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_xenstore_domain_interface() {
        assert_eq!(RESPONSE_RING_OFFSET, RING_SIZE as usize);
        assert_eq!(REQUEST_CONSUMER_OFFSET, 2 * RING_SIZE as usize);
        assert_eq!(RESPONSE_PRODUCER_OFFSET, REQUEST_CONSUMER_OFFSET + 12);
        assert_eq!(INTERFACE_SIZE, ERROR_OFFSET + 4);
    }

    #[test]
    fn masking_keeps_the_low_ten_bits() {
        assert_eq!(mask_index(0), 0);
        assert_eq!(mask_index(1023), 1023);
        assert_eq!(mask_index(1024), 0);
        assert_eq!(mask_index(u32::MAX), 1023);
    }

    #[test]
    fn empty_full_and_partial_rings() {
        assert_eq!(unconsumed(5, 5), Ok(0));
        assert_eq!(free_space(5, 5), Ok(1024));
        assert_eq!(unconsumed(5, 5 + 1024), Ok(1024));
        assert_eq!(free_space(5, 5 + 1024), Ok(0));
        assert_eq!(
            writable_span(0, 1024),
            Ok(Span {
                offset: 0,
                length: 0
            })
        );
        assert_eq!(
            readable_span(10, 30),
            Ok(Span {
                offset: 10,
                length: 20
            })
        );
    }

    #[test]
    fn spans_stop_at_the_end_of_the_array() {
        // 100 bytes unconsumed starting 50 bytes before the end: 50 now, 50 after wrapping.
        assert_eq!(
            readable_span(974, 1074),
            Ok(Span {
                offset: 974,
                length: 50
            })
        );
        assert_eq!(
            readable_span(1024, 1074),
            Ok(Span {
                offset: 0,
                length: 50
            })
        );
        // Producer 20 before the end, consumer 100 behind it: 20 bytes until the end.
        assert_eq!(
            writable_span(904, 1004),
            Ok(Span {
                offset: 1004,
                length: 20
            })
        );
    }

    #[test]
    fn indices_wrap_around_u32() {
        let consumer = u32::MAX - 9;
        let producer = consumer.wrapping_add(30);
        assert_eq!(unconsumed(consumer, producer), Ok(30));
        assert_eq!(
            readable_span(consumer, producer),
            Ok(Span {
                offset: 1014,
                length: 10
            })
        );
        assert_eq!(
            writable_span(consumer, producer),
            Ok(Span {
                offset: 20,
                length: 994
            })
        );
    }

    #[test]
    fn hostile_indices_are_refused() {
        for (consumer, producer) in [(0, 1025), (10, 9), (0, u32::MAX), (1 << 31, 0)] {
            let bad = BadIndices { consumer, producer };
            assert_eq!(unconsumed(consumer, producer), Err(bad));
            assert_eq!(free_space(consumer, producer), Err(bad));
            assert_eq!(readable_span(consumer, producer), Err(bad));
            assert_eq!(writable_span(consumer, producer), Err(bad));
        }
    }
}
