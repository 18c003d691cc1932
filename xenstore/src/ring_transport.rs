//! Moving bytes through the xenstore ring page, over a memory trait the kernel implements for the shared page.
//!
//! [`XenstoreRing`] keeps its own copy of the two indices we produce (`req_prod`, `rsp_cons`)
//! and never reads them back from the page, so xenstored cannot move them under us. Each pass
//! loads the peer's index once (acquire), checks it against ours, copies at most two
//! contiguous spans, and publishes our index once (release) after the copy.

use core::fmt;

use crate::ring::{
    readable_span, writable_span, BadIndices, REQUEST_CONSUMER_OFFSET, REQUEST_PRODUCER_OFFSET,
    REQUEST_RING_OFFSET, RESPONSE_CONSUMER_OFFSET, RESPONSE_PRODUCER_OFFSET, RESPONSE_RING_OFFSET,
};

/// Access to the xenstore page, offsets counted from its start. The kernel implements it
/// over its mapping of the store page with volatile copies and atomic 32-bit accesses.
pub trait RingMemory {
    type Error;
    /// Copies `into.len()` bytes at `offset` out of the page.
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), Self::Error>;
    /// Copies `from` into the page at `offset`.
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), Self::Error>;
    /// One 32-bit load with acquire ordering: later reads of the page see what the writer
    /// wrote before publishing this value.
    fn load_u32(&self, offset: usize) -> Result<u32, Self::Error>;
    /// One 32-bit store with release ordering: earlier writes to the page are visible before it.
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), Self::Error>;
}

/// Which of the two rings a fault is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Requests,
    Responses,
}

/// Why a pass over the ring failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError<E> {
    /// The memory accessor failed.
    Memory(E),
    /// xenstored's index is impossible relative to ours: the ring cannot be trusted.
    Indices {
        direction: Direction,
        indices: BadIndices,
    },
}

impl<E: fmt::Display> fmt::Display for RingError<E> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Memory(error) => write!(formatter, "xenstore page access failed: {error}"),
            RingError::Indices { direction, indices } => {
                write!(formatter, "xenstore {direction:?} ring: {indices}")
            }
        }
    }
}

/// Our side of the ring: the indices we produce, kept privately.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenstoreRing {
    request_producer: u32,
    response_consumer: u32,
}

impl XenstoreRing {
    /// Takes over the ring as the page holds it now (fresh after boot: all zero), checking
    /// both index pairs. Our indices are read from the page this once only.
    pub fn attach<M: RingMemory>(memory: &M) -> Result<XenstoreRing, RingError<M::Error>> {
        let memory_error = RingError::Memory;
        let request_producer = memory
            .load_u32(REQUEST_PRODUCER_OFFSET)
            .map_err(memory_error)?;
        let request_consumer = memory
            .load_u32(REQUEST_CONSUMER_OFFSET)
            .map_err(memory_error)?;
        let response_consumer = memory
            .load_u32(RESPONSE_CONSUMER_OFFSET)
            .map_err(memory_error)?;
        let response_producer = memory
            .load_u32(RESPONSE_PRODUCER_OFFSET)
            .map_err(memory_error)?;
        writable_span(request_consumer, request_producer).map_err(|indices| {
            RingError::Indices {
                direction: Direction::Requests,
                indices,
            }
        })?;
        readable_span(response_consumer, response_producer).map_err(|indices| {
            RingError::Indices {
                direction: Direction::Responses,
                indices,
            }
        })?;
        Ok(XenstoreRing {
            request_producer,
            response_consumer,
        })
    }

    /// Writes as much of `bytes` as fits into the request ring and publishes it; returns how
    /// many were written (0 when full). Notify xenstored's event channel when it is not 0.
    pub fn write<M: RingMemory>(
        &mut self,
        memory: &M,
        bytes: &[u8],
    ) -> Result<usize, RingError<M::Error>> {
        let consumer = memory
            .load_u32(REQUEST_CONSUMER_OFFSET)
            .map_err(RingError::Memory)?;
        let mut producer = self.request_producer;
        let mut written = 0;
        // At most two spans: up to the end of the array, then from its start.
        for _ in 0..2 {
            let span = writable_span(consumer, producer).map_err(|indices| RingError::Indices {
                direction: Direction::Requests,
                indices,
            })?;
            let remaining = bytes.get(written..).unwrap_or_default();
            let chunk = remaining.get(..span.length).unwrap_or(remaining);
            if chunk.is_empty() {
                break;
            }
            memory
                .write_bytes(REQUEST_RING_OFFSET + span.offset, chunk)
                .map_err(RingError::Memory)?;
            written += chunk.len();
            // `chunk.len()` is at most the ring size.
            producer = producer.wrapping_add(chunk.len() as u32);
        }
        if written > 0 {
            memory
                .store_u32(REQUEST_PRODUCER_OFFSET, producer)
                .map_err(RingError::Memory)?;
            self.request_producer = producer;
        }
        Ok(written)
    }

    /// Copies available reply bytes into `into` and frees their room; returns how many (0 when
    /// the ring is empty). Notify xenstored's event channel when it is not 0.
    pub fn read<M: RingMemory>(
        &mut self,
        memory: &M,
        into: &mut [u8],
    ) -> Result<usize, RingError<M::Error>> {
        let producer = memory
            .load_u32(RESPONSE_PRODUCER_OFFSET)
            .map_err(RingError::Memory)?;
        let mut consumer = self.response_consumer;
        let mut read = 0;
        for _ in 0..2 {
            let span = readable_span(consumer, producer).map_err(|indices| RingError::Indices {
                direction: Direction::Responses,
                indices,
            })?;
            let room = into.get_mut(read..).unwrap_or_default();
            let length = span.length.min(room.len());
            let Some(chunk) = room.get_mut(..length).filter(|chunk| !chunk.is_empty()) else {
                break;
            };
            memory
                .read_bytes(RESPONSE_RING_OFFSET + span.offset, chunk)
                .map_err(RingError::Memory)?;
            read += length;
            consumer = consumer.wrapping_add(length as u32);
        }
        if read > 0 {
            memory
                .store_u32(RESPONSE_CONSUMER_OFFSET, consumer)
                .map_err(RingError::Memory)?;
            self.response_consumer = consumer;
        }
        Ok(read)
    }

    /// Our request producer index, as last published.
    pub fn request_producer(&self) -> u32 {
        self.request_producer
    }

    /// Our response consumer index, as last published.
    pub fn response_consumer(&self) -> u32 {
        self.response_consumer
    }
}
