//! The frontend half of a blkif shared ring (`public/io/ring.h` front-ring macros), with the misbehaviours blk-hostile needs: jumps of `req_prod` and slots rewritten after publication.
//!
//! It runs over grantsvc's [`SharedMemory`] trait: over gntalloc pages against the real
//! grantsvc, and over plain memory against grantsvc's own `BackRing` in the host tests, so the
//! same index arithmetic is checked against the backend's.

use grantsvc::abi::blkif::{
    header_offset, ring_bytes, ring_slots, Response, RESPONSE_SIZE, RING_OFFSET, SLOT_SIZE,
};
use grantsvc::peer::blkif::request::RequestBytes;
use grantsvc::shared_memory::SharedMemory;
use std::mem::offset_of;
use std::sync::atomic::{fence, Ordering};

/// One response as the frontend read it off the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseSeen {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

/// The frontend's view of one shared ring.
pub struct FrontRing<M> {
    memory: M,
    slots: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

fn ring_error(what: &str, error: impl std::fmt::Display) -> String {
    format!("ring {what}: {error}")
}

impl<M: SharedMemory> FrontRing<M> {
    /// Initialises the ring of `2^order` pages in `memory` (`SHARED_RING_INIT` and
    /// `FRONT_RING_INIT`: indices 0, events 1, padding zeroed).
    pub fn init(memory: M, order: u32) -> Result<FrontRing<M>, String> {
        let slots = ring_slots(order).ok_or_else(|| format!("no ring of order {order}"))?;
        if memory.size() < ring_bytes(order) {
            return Err(format!(
                "ring of order {order} needs {} bytes, {} shared",
                ring_bytes(order),
                memory.size()
            ));
        }
        memory
            .write_bytes(0, &vec![0; ring_bytes(order)])
            .map_err(|error| ring_error("init", error))?;
        memory
            .store_u32(header_offset::REQ_EVENT, 1)
            .and_then(|()| memory.store_u32(header_offset::RSP_EVENT, 1))
            .map_err(|error| ring_error("init", error))?;
        Ok(FrontRing {
            memory,
            slots,
            req_prod_pvt: 0,
            rsp_cons: 0,
        })
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Gives the shared pages back (to release them).
    pub fn into_memory(self) -> M {
        self.memory
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    fn slot_offset(&self, index: u32) -> usize {
        RING_OFFSET + (index & (self.slots - 1)) as usize * SLOT_SIZE
    }

    /// Free request slots (`RING_FULL` is 0 free).
    pub fn free_slots(&self) -> u32 {
        self.slots - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Writes `request` into the next slot, not yet published; returns its ring index.
    pub fn place(&mut self, request: &RequestBytes) -> Result<u32, String> {
        if self.free_slots() == 0 {
            return Err("ring full: no slot for another request".to_string());
        }
        let index = self.req_prod_pvt;
        self.rewrite(index, request)?;
        self.req_prod_pvt = index.wrapping_add(1);
        Ok(index)
    }

    /// Writes `request` into slot `index` whether or not it was published: the rewrite a
    /// hostile frontend makes after the backend may have read it.
    pub fn rewrite(&self, index: u32, request: &RequestBytes) -> Result<(), String> {
        self.memory
            .write_bytes(self.slot_offset(index), &request.0)
            .map_err(|error| ring_error("slot write", error))
    }

    /// Stores one byte at `offset` of slot `index` in a single atomic store, whether or not
    /// the slot was published: the rewrite a hostile frontend makes after the backend may have
    /// read it.
    pub fn store_slot_byte(&self, index: u32, offset: usize, value: u8) -> Result<(), String> {
        if offset >= SLOT_SIZE {
            return Err(format!("byte {offset} is past a {SLOT_SIZE}-byte slot"));
        }
        self.memory
            .store_u8(self.slot_offset(index) + offset, value)
            .map_err(|error| ring_error("slot byte", error))
    }

    /// Publishes the placed requests; true when the backend asked to be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push(&mut self) -> Result<bool, String> {
        let old = self.memory.load_u32(header_offset::REQ_PROD);
        let old = old.map_err(|error| ring_error("req_prod", error))?;
        let new = self.req_prod_pvt;
        // The release store orders the request bytes before the index.
        self.memory
            .store_u32(header_offset::REQ_PROD, new)
            .map_err(|error| ring_error("req_prod", error))?;
        fence(Ordering::SeqCst);
        let req_event = self
            .memory
            .load_u32(header_offset::REQ_EVENT)
            .map_err(|error| ring_error("req_event", error))?;
        Ok(new.wrapping_sub(req_event) < new.wrapping_sub(old))
    }

    /// Writes `req_prod` = `value` outright (a jump no real frontend makes).
    pub fn force_req_prod(&mut self, value: u32) -> Result<(), String> {
        self.memory
            .store_u32(header_offset::REQ_PROD, value)
            .map_err(|error| ring_error("req_prod", error))
    }

    /// `rsp_prod` as the backend last published it.
    pub fn rsp_prod(&self) -> Result<u32, String> {
        self.memory
            .load_u32(header_offset::RSP_PROD)
            .map_err(|error| ring_error("rsp_prod", error))
    }

    /// Requests published and not yet answered.
    pub fn outstanding(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Takes every published response and asks to be notified of the next one
    /// (`RING_FINAL_CHECK_FOR_RESPONSES`). A backend that publishes more responses than there
    /// are requests is reported, not believed.
    pub fn take_responses(&mut self) -> Result<Vec<ResponseSeen>, String> {
        let mut responses = Vec::new();
        loop {
            let rsp_prod = self.rsp_prod()?;
            if rsp_prod.wrapping_sub(self.rsp_cons) > self.outstanding() {
                return Err(format!(
                    "backend's rsp_prod {rsp_prod} is past the {} requests outstanding from {}",
                    self.outstanding(),
                    self.rsp_cons
                ));
            }
            while self.rsp_cons != rsp_prod {
                let mut raw = [0u8; RESPONSE_SIZE];
                self.memory
                    .read_bytes(self.slot_offset(self.rsp_cons), &mut raw)
                    .map_err(|error| ring_error("response read", error))?;
                responses.push(parse_response(&raw));
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
            }
            self.memory
                .store_u32(header_offset::RSP_EVENT, self.rsp_cons.wrapping_add(1))
                .map_err(|error| ring_error("rsp_event", error))?;
            fence(Ordering::SeqCst);
            if self.rsp_prod()? == self.rsp_cons {
                return Ok(responses);
            }
        }
    }
}

/// Decodes the 16 bytes of a `struct blkif_response`.
pub fn parse_response(raw: &[u8; RESPONSE_SIZE]) -> ResponseSeen {
    let mut id = [0u8; 8];
    id.copy_from_slice(&raw[offset_of!(Response, id)..offset_of!(Response, id) + 8]);
    let status_at = offset_of!(Response, status);
    ResponseSeen {
        id: u64::from_le_bytes(id),
        operation: raw[offset_of!(Response, operation)],
        status: i16::from_le_bytes([raw[status_at], raw[status_at + 1]]),
    }
}
