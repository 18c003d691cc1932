//! blk-hostile's frontend ring and expectations against grantsvc's own blkif ring, validator and RAM disk, in-process: both sides must agree before the lab runs them.

use crate::blk_cases::{
    indirect_page_segments, rewritten_pair, Case, Grants, Outcome, FLIPPED_BYTE,
};
use crate::blk_ring::{FrontRing, ResponseSeen};
use grantsvc::abi::blkif::{op, status};
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::GrantRef;
use grantsvc::peer::blkif::execute::{DataPages, PageFault};
use grantsvc::peer::blkif::ram_disk::{MemoryBudget, RamDisk};
use grantsvc::peer::blkif::ring::{BackRing, RingFault};
use grantsvc::peer::blkif::service::{serve_ring, DeviceCounters};
use grantsvc::peer::blkif::validate::{DiskLimits, DEFAULT_MAX_INDIRECT_SEGMENTS};
use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Memory both "domains" see.
#[derive(Clone, Debug)]
struct Memory(Rc<RefCell<Vec<u8>>>);

impl Memory {
    fn new(size: usize) -> Memory {
        Memory(Rc::new(RefCell::new(vec![0; size])))
    }

    fn word(&self, offset: usize) -> Result<[u8; 4], OutOfBounds> {
        let mut bytes = [0; 4];
        self.read_bytes(offset, &mut bytes)?;
        Ok(bytes)
    }
}

impl SharedMemory for Memory {
    fn size(&self) -> usize {
        self.0.borrow().len()
    }
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, into.len(), self.size())?;
        into.copy_from_slice(&self.0.borrow()[offset..offset + into.len()]);
        Ok(())
    }
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, from.len(), self.size())?;
        self.0.borrow_mut()[offset..offset + from.len()].copy_from_slice(from);
        Ok(())
    }
    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        self.word(offset).map(u32::from_le_bytes)
    }
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &value.to_le_bytes())
    }
    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        let mut byte = [0];
        self.read_bytes(offset, &mut byte)?;
        Ok(byte[0])
    }
    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &[value])
    }
    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let old = self.load_u8(offset)?;
        self.store_u8(offset, old | bits)?;
        Ok(old)
    }
    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let old = self.load_u8(offset)?;
        self.store_u8(offset, old & bits)?;
        Ok(old)
    }
}

/// The frontend's granted pages as the backend reaches them: a ref not here does not map, a
/// read-only one cannot be written.
#[derive(Default)]
struct Granted {
    pages: HashMap<GrantRef, (Vec<u8>, bool)>,
}

impl Granted {
    fn grant(&mut self, gref: GrantRef, contents: Vec<u8>, writable: bool) {
        self.pages.insert(gref, (contents, writable));
    }
}

impl DataPages for Granted {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        let (page, _) = self.pages.get(&gref).ok_or(PageFault { gref })?;
        let source = page
            .get(offset..offset + into.len())
            .ok_or(PageFault { gref })?;
        into.copy_from_slice(source);
        Ok(())
    }

    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault> {
        match self.pages.get_mut(&gref) {
            Some((page, true)) => {
                page.get_mut(offset..offset + from.len())
                    .ok_or(PageFault { gref })?
                    .copy_from_slice(from);
                Ok(())
            }
            _ => Err(PageFault { gref }),
        }
    }
}

const SECTORS: u64 = 2048;

struct Loopback {
    front: FrontRing<Memory>,
    back: BackRing<Memory>,
    limits: DiskLimits,
    disk: RamDisk,
    granted: Granted,
    grants: Grants,
}

impl Loopback {
    fn new(writable: bool) -> Loopback {
        let memory = Memory::new(PAGE_SIZE);
        let front = FrontRing::init(memory.clone(), 0).unwrap();
        let back = BackRing::attach(memory, 0).unwrap();
        let mut budget = MemoryBudget::new(1 << 24);
        let disk = RamDisk::attach(SECTORS, &mut budget).unwrap();
        let grants = Grants {
            data: [GrantRef::new(10), GrantRef::new(11)],
            read_only: GrantRef::new(12),
            indirect: (20..28).map(GrantRef::new).collect(),
        };
        let mut granted = Granted::default();
        for gref in grants.data {
            granted.grant(gref, vec![0x5a; PAGE_SIZE], true);
        }
        granted.grant(grants.read_only, vec![0; PAGE_SIZE], false);
        for &gref in &grants.indirect {
            granted.grant(gref, indirect_page_segments(grants.data[0]), true);
        }
        Loopback {
            front,
            back,
            limits: DiskLimits {
                sectors: SECTORS,
                writable,
                flush: writable,
                discard: writable,
                max_indirect_segments: DEFAULT_MAX_INDIRECT_SEGMENTS,
            },
            disk,
            granted,
            grants,
        }
    }

    fn serve(&mut self) -> Result<Vec<ResponseSeen>, RingFault> {
        let mut counters = DeviceCounters::default();
        serve_ring(
            &mut self.back,
            &self.limits,
            &mut self.disk,
            &mut self.granted,
            &mut counters,
            64,
        )?;
        Ok(self.front.take_responses().unwrap())
    }
}

#[test]
fn every_bad_request_gets_the_expected_answer_and_the_ring_goes_on() {
    for case in Case::all() {
        if case.outcome() != Outcome::Answered {
            continue;
        }
        let mut loopback = Loopback::new(!case.read_only_disk());
        let expected = case.requests(&loopback.grants, SECTORS);
        for request in &expected {
            loopback.front.place(&request.request).unwrap();
        }
        loopback.front.push().unwrap();
        let responses = loopback.serve().unwrap();
        let wanted: Vec<ResponseSeen> = expected
            .iter()
            .map(|request| ResponseSeen {
                id: request.id,
                operation: request.operation,
                status: request.status,
            })
            .collect();
        assert_eq!(responses, wanted, "{}", case.name());
        // A good read afterwards is answered on the same ring.
        let good = grantsvc::peer::blkif::request::encode::direct(
            op::READ,
            7,
            8,
            &[grantsvc::peer::blkif::request::Segment {
                gref: loopback.grants.data[1],
                first_sect: 0,
                last_sect: 7,
            }],
        );
        loopback.front.place(&good).unwrap();
        loopback.front.push().unwrap();
        assert_eq!(
            loopback.serve().unwrap(),
            [ResponseSeen {
                id: 7,
                operation: op::READ,
                status: status::OKAY
            }],
            "{}",
            case.name()
        );
    }
}

#[test]
fn a_producer_jump_halts_the_ring() {
    let mut loopback = Loopback::new(true);
    let slots = loopback.front.slots();
    loopback.front.force_req_prod(slots + 5).unwrap();
    assert!(matches!(
        loopback.serve(),
        Err(RingFault::ProducerAhead { .. })
    ));
}

#[test]
fn each_version_of_the_rewritten_slot_alone_gets_its_own_answer() {
    let mut loopback = Loopback::new(true);
    for version in [0, 1] {
        let pair = rewritten_pair(loopback.grants.data[0], 5, 8);
        let chosen = &pair[version];
        let index = loopback.front.place(&pair[1 - version].request).unwrap();
        // The other version first, then the one byte flipped: the slot is the chosen one.
        loopback
            .front
            .store_slot_byte(index, FLIPPED_BYTE, chosen.request.0[FLIPPED_BYTE])
            .unwrap();
        loopback.front.push().unwrap();
        assert_eq!(
            loopback.serve().unwrap(),
            [ResponseSeen {
                id: chosen.id,
                operation: chosen.operation,
                status: chosen.status
            }]
        );
    }
}
