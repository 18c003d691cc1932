//! The backend half of one shared blkif ring: copying requests off it once, writing whole responses, and the notify rules.
//!
//! Index rules from `public/io/ring.h`: indices are free-running `u32` counters, a slot is
//! `index & (slots - 1)`. The frontend owns `req_prod` and `rsp_event`; the backend owns
//! `rsp_prod` and `req_event` and keeps its `req_cons` and `rsp_prod_pvt` privately.
//! - `req_prod` is read once per refill and checked before use: more than a ring of requests
//!   ahead of the responses (`RING_REQUEST_PROD_OVERFLOW`) halts the ring for good, as Linux
//!   blkback does ("Frontend provided bogus ring requests").
//! - Each request slot is copied into private memory once; only the copy is decoded (XSA-155).
//! - Each response is written as the full 16-byte `struct blkif_response`, padding zeroed
//!   (XSA-216).
//! - `push_responses` is `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, `final_check_for_requests` is
//!   `RING_FINAL_CHECK_FOR_REQUESTS`; the full fences stand for `xen_mb()`.

use super::request::RequestBytes;
use crate::abi::blkif::{
    header_offset, ring_bytes, ring_slots, Response, REQUEST_SIZE, RESPONSE_SIZE, RING_OFFSET,
    SLOT_SIZE,
};
use crate::shared_memory::{OutOfBounds, SharedMemory};
use core::fmt;
use core::mem::offset_of;
use core::sync::atomic::{fence, Ordering};

/// Why a ring stopped; every variant ends the device's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFault {
    /// `req_prod` claims more requests than the ring can hold beyond the unanswered ones.
    ProducerAhead {
        req_prod: u32,
        rsp_prod: u32,
        slots: u32,
    },
    /// The ring was halted by an earlier fault.
    Halted,
    /// The mapping is smaller than the ring's order says.
    TooSmall { needed: usize, size: usize },
    /// The ring order is past what grantsvc offers.
    BadOrder { order: u32 },
    /// A response without an outstanding request (a backend bug, refused rather than written).
    NoRequestToAnswer,
    /// An access outside the mapping.
    Memory(OutOfBounds),
}

impl From<OutOfBounds> for RingFault {
    fn from(fault: OutOfBounds) -> Self {
        RingFault::Memory(fault)
    }
}

impl fmt::Display for RingFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RingFault::ProducerAhead { req_prod, rsp_prod, slots } => write!(
                formatter,
                "req_prod {req_prod} is more than {slots} requests past rsp_prod {rsp_prod}: ring halted"
            ),
            RingFault::Halted => formatter.write_str("ring halted by an earlier fault"),
            RingFault::TooSmall { needed, size } => {
                write!(formatter, "ring needs {needed} bytes, mapping has {size}")
            }
            RingFault::BadOrder { order } => write!(formatter, "ring page order {order} refused"),
            RingFault::NoRequestToAnswer => formatter.write_str("response without a request"),
            RingFault::Memory(fault) => write!(formatter, "{fault}"),
        }
    }
}

/// The backend's view of one shared ring in `memory`.
#[derive(Debug)]
pub struct BackRing<M> {
    memory: M,
    slots: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// The `rsp_prod` last published (our own value: never re-read from the shared page).
    rsp_prod_pushed: u32,
    /// The last `req_prod` read and accepted.
    req_prod_seen: u32,
    halted: bool,
}

impl<M: SharedMemory> BackRing<M> {
    /// Attaches to the ring of `2^order` pages in `memory`, taking up where the shared
    /// `rsp_prod` stands (`BACK_RING_ATTACH`), and checks `req_prod` against it at once.
    pub fn attach(memory: M, order: u32) -> Result<Self, RingFault> {
        let slots = ring_slots(order).ok_or(RingFault::BadOrder { order })?;
        let needed = ring_bytes(order);
        if memory.size() < needed {
            return Err(RingFault::TooSmall {
                needed,
                size: memory.size(),
            });
        }
        let rsp_prod = memory.load_u32(header_offset::RSP_PROD)?;
        let mut ring = BackRing {
            memory,
            slots,
            req_cons: rsp_prod,
            rsp_prod_pvt: rsp_prod,
            rsp_prod_pushed: rsp_prod,
            req_prod_seen: rsp_prod,
            halted: false,
        };
        ring.refresh_producer()?;
        Ok(ring)
    }

    /// Slots in the ring.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The shared memory (for the caller's own accounting; the ring keeps it).
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Gives the mapping back (for unmapping at disconnect).
    pub fn into_memory(self) -> M {
        self.memory
    }

    /// Requests consumed but not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// Reads `req_prod` once and accepts it only if it stays within a ring of the responses.
    fn refresh_producer(&mut self) -> Result<u32, RingFault> {
        if self.halted {
            return Err(RingFault::Halted);
        }
        let req_prod = self.memory.load_u32(header_offset::REQ_PROD)?;
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > self.slots
            || req_prod.wrapping_sub(self.req_cons) > self.slots
        {
            self.halted = true;
            return Err(RingFault::ProducerAhead {
                req_prod,
                rsp_prod: self.rsp_prod_pvt,
                slots: self.slots,
            });
        }
        self.req_prod_seen = req_prod;
        Ok(req_prod)
    }

    /// Requests that can be taken now: produced, and with room for their responses.
    fn unconsumed(&self) -> u32 {
        let produced = self.req_prod_seen.wrapping_sub(self.req_cons);
        let room = self.slots - self.outstanding().min(self.slots);
        produced.min(room)
    }

    /// Copies the next request off the ring into private memory, or `None` when there is none
    /// (or when every slot holds an unanswered request, `RING_REQUEST_CONS_OVERFLOW`).
    pub fn next_request(&mut self) -> Result<Option<RequestBytes>, RingFault> {
        if self.halted {
            return Err(RingFault::Halted);
        }
        if self.req_cons == self.req_prod_seen {
            self.refresh_producer()?;
        }
        if self.unconsumed() == 0 {
            return Ok(None);
        }
        let mut bytes = [0; REQUEST_SIZE];
        self.memory
            .read_bytes(self.slot_offset(self.req_cons), &mut bytes)?;
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(RequestBytes(bytes)))
    }

    fn slot_offset(&self, index: u32) -> usize {
        RING_OFFSET + (index & (self.slots - 1)) as usize * SLOT_SIZE
    }

    /// Writes the response to the oldest unanswered request (not yet visible to the frontend).
    pub fn put_response(&mut self, id: u64, operation: u8, status: i16) -> Result<(), RingFault> {
        if self.outstanding() == 0 {
            return Err(RingFault::NoRequestToAnswer);
        }
        self.memory.write_bytes(
            self.slot_offset(self.rsp_prod_pvt),
            &response_bytes(id, operation, status),
        )?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the written responses; true when the frontend asked to be notified of them.
    pub fn push_responses(&mut self) -> Result<bool, RingFault> {
        let old = self.rsp_prod_pushed;
        let new = self.rsp_prod_pvt;
        if old == new {
            return Ok(false);
        }
        // The release store orders the response bytes before the index.
        self.memory.store_u32(header_offset::RSP_PROD, new)?;
        self.rsp_prod_pushed = new;
        // Store-load ordering: the frontend must see rsp_prod before we read its rsp_event.
        fence(Ordering::SeqCst);
        let rsp_event = self.memory.load_u32(header_offset::RSP_EVENT)?;
        Ok(new.wrapping_sub(rsp_event) < new.wrapping_sub(old))
    }

    /// True when requests are waiting; otherwise arms `req_event` so the frontend notifies
    /// the next one, and checks again to close the race with a request produced meanwhile.
    pub fn final_check_for_requests(&mut self) -> Result<bool, RingFault> {
        self.refresh_producer()?;
        if self.unconsumed() > 0 {
            return Ok(true);
        }
        self.memory
            .store_u32(header_offset::REQ_EVENT, self.req_cons.wrapping_add(1))?;
        fence(Ordering::SeqCst);
        self.refresh_producer()?;
        Ok(self.unconsumed() > 0)
    }
}

/// The 16 bytes of `struct blkif_response`, padding included, so nothing stale is left in the
/// slot's response part (XSA-216).
pub fn response_bytes(id: u64, operation: u8, status: i16) -> [u8; RESPONSE_SIZE] {
    let mut bytes = [0; RESPONSE_SIZE];
    let fields: [(usize, &[u8]); 3] = [
        (offset_of!(Response, id), &id.to_le_bytes()),
        (offset_of!(Response, operation), &[operation]),
        (offset_of!(Response, status), &status.to_le_bytes()),
    ];
    for (offset, value) in fields {
        if let Some(target) = bytes.get_mut(offset..offset + value.len()) {
            target.copy_from_slice(value);
        }
    }
    bytes
}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
