//! Test doubles for blkif: a frontend's granted pages, a counting grant mapper, and a model frontend driving a shared ring.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::execute::{DataPages, PageFault};
use super::persistent_grants::{GrantMapper, MapFault};
use super::request::RequestBytes;
use crate::abi::blkif::{header_offset, ring_bytes, ring_slots, RING_OFFSET, SLOT_SIZE};
use crate::addr::PAGE_SIZE;
use crate::ids::GrantRef;
use crate::peer::vchan::testing::FakeMemory;
use crate::shared_memory::SharedMemory;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;

/// The pages a frontend granted, by grant ref; refs in `unmappable` fail to map.
#[derive(Debug, Default)]
pub struct FakeGrants {
    pub pages: BTreeMap<GrantRef, Vec<u8>>,
    pub unmappable: BTreeSet<GrantRef>,
}

impl FakeGrants {
    /// Grants a zeroed page as `gref`.
    pub fn grant(&mut self, gref: GrantRef) {
        self.pages.insert(gref, vec![0; PAGE_SIZE]);
    }

    fn page(&mut self, gref: GrantRef) -> Result<&mut Vec<u8>, PageFault> {
        if self.unmappable.contains(&gref) {
            return Err(PageFault { gref });
        }
        self.pages.get_mut(&gref).ok_or(PageFault { gref })
    }
}

impl DataPages for FakeGrants {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        let page = self.page(gref)?;
        let source = page
            .get(offset..offset + into.len())
            .ok_or(PageFault { gref })?;
        into.copy_from_slice(source);
        Ok(())
    }

    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault> {
        let page = self.page(gref)?;
        let target = page
            .get_mut(offset..offset + from.len())
            .ok_or(PageFault { gref })?;
        target.copy_from_slice(from);
        Ok(())
    }
}

/// A mapper that hands out numbered mappings and counts the live ones.
#[derive(Debug, Default)]
pub struct CountingMapper {
    pub live: BTreeSet<(GrantRef, u64)>,
    pub next: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub refuse: BTreeSet<GrantRef>,
}

impl GrantMapper for CountingMapper {
    type Mapping = (GrantRef, u64);

    fn map(&mut self, gref: GrantRef) -> Result<(GrantRef, u64), MapFault> {
        if self.refuse.contains(&gref) {
            return Err(MapFault { gref });
        }
        self.next += 1;
        self.maps += 1;
        self.live.insert((gref, self.next));
        Ok((gref, self.next))
    }

    fn unmap(&mut self, mapping: (GrantRef, u64)) {
        assert!(
            self.live.remove(&mapping),
            "unmap of a mapping not live: {mapping:?}"
        );
        self.unmaps += 1;
    }
}

/// The frontend half of a shared ring over fake memory (`ring.h`'s front-ring macros).
#[derive(Debug)]
pub struct ModelFrontend {
    pub memory: FakeMemory,
    pub slots: u32,
    pub req_prod_pvt: u32,
    pub rsp_cons: u32,
}

impl ModelFrontend {
    /// A zeroed ring of `2^order` pages (`SHARED_RING_INIT`: all indices 0, events 1).
    pub fn new(order: u32) -> ModelFrontend {
        let memory = FakeMemory::new(ring_bytes(order));
        memory.store_u32(header_offset::REQ_EVENT, 1).unwrap();
        memory.store_u32(header_offset::RSP_EVENT, 1).unwrap();
        ModelFrontend {
            memory,
            slots: ring_slots(order).unwrap(),
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// Writes a request into the next slot (not yet published).
    pub fn queue(&mut self, request: &RequestBytes) {
        let offset = RING_OFFSET + (self.req_prod_pvt & (self.slots - 1)) as usize * SLOT_SIZE;
        self.memory.write_bytes(offset, &request.0).unwrap();
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// Publishes the queued requests (`RING_PUSH_REQUESTS`).
    pub fn push(&mut self) {
        self.memory
            .store_u32(header_offset::REQ_PROD, self.req_prod_pvt)
            .unwrap();
    }

    /// Takes every published response: (id, operation, status), and the raw 16 bytes.
    pub fn take_responses(&mut self) -> Vec<(u64, u8, i16, [u8; 16])> {
        let rsp_prod = self.memory.load_u32(header_offset::RSP_PROD).unwrap();
        let mut responses = Vec::new();
        while self.rsp_cons != rsp_prod {
            let offset = RING_OFFSET + (self.rsp_cons & (self.slots - 1)) as usize * SLOT_SIZE;
            let mut raw = [0u8; 16];
            self.memory.read_bytes(offset, &mut raw).unwrap();
            let id = u64::from_le_bytes(raw[0..8].try_into().unwrap());
            let status = i16::from_le_bytes(raw[10..12].try_into().unwrap());
            responses.push((id, raw[8], status, raw));
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        // Ask to be told of the next response (`RING_FINAL_CHECK_FOR_RESPONSES`).
        self.memory
            .store_u32(header_offset::RSP_EVENT, self.rsp_cons.wrapping_add(1))
            .unwrap();
        responses
    }
}
