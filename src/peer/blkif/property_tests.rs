//! Property and service tests: random request streams from a model frontend, through the ring, validator and executor, leave the RAM disk equal to a model disk.
//!
//! The model is a plain byte vector and an independent statement of the rules (a request is good
//! when its segments lie in their page and its sectors end inside the disk); every response's
//! status and every byte read back are compared with it.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::indirect::PageCopy;
use super::ram_disk::{MemoryBudget, RamDisk};
use super::request::{encode, grant_ref, RequestBytes, Segment};
use super::ring::BackRing;
use super::service::{answer_batch, publish_responses, serve_ring, take_batch, DeviceCounters};
use super::store::BackingStore;
use super::testing::{FakeGrants, ModelFrontend};
use super::validate::DiskLimits;
use crate::abi::blkif::{op, status, SECTOR_SIZE};
use crate::addr::PAGE_SIZE;
use crate::ids::GrantRef;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

const DISK_SECTORS: u64 = 96;

#[derive(Clone, Debug)]
enum Operation {
    Read {
        sector: u64,
        spans: Vec<(u8, u8)>,
        indirect: bool,
    },
    Write {
        sector: u64,
        spans: Vec<(u8, u8)>,
        indirect: bool,
        fill: u8,
        flush: bool,
    },
    Discard {
        sector: u64,
        sectors: u64,
    },
    Flush,
    Unknown {
        operation: u8,
    },
}

fn span() -> impl Strategy<Value = (u8, u8)> {
    // Mostly good spans, sometimes first > last or last past the page.
    prop_oneof![
        8 => (0u8..8).prop_flat_map(|first| (Just(first), first..8)),
        1 => (0u8..10, 0u8..10),
    ]
}

fn operation() -> impl Strategy<Value = Operation> {
    let sector = 0..DISK_SECTORS + 8;
    prop_oneof![
        4 => (sector.clone(), proptest::collection::vec(span(), 0..13), any::<bool>())
            .prop_map(|(sector, spans, indirect)| Operation::Read { sector, spans, indirect }),
        4 => (sector.clone(), proptest::collection::vec(span(), 0..13), any::<bool>(), any::<u8>(), any::<bool>())
            .prop_map(|(sector, spans, indirect, fill, flush)| Operation::Write { sector, spans, indirect, fill, flush }),
        1 => (sector, 0..40u64).prop_map(|(sector, sectors)| Operation::Discard { sector, sectors }),
        1 => Just(Operation::Flush),
        1 => prop_oneof![Just(op::WRITE_BARRIER), Just(op::RESERVED_1), 7u8..=255]
            .prop_map(|operation| Operation::Unknown { operation }),
    ]
}

/// The model's verdict, stated independently of `validate.rs`.
fn model_accepts(sector: u64, spans: &[(u8, u8)], indirect: bool) -> Option<u64> {
    let limit = if indirect { 256 } else { 11 };
    if spans.is_empty() || spans.len() > limit {
        return None;
    }
    if spans.iter().any(|&(first, last)| first > last || last > 7) {
        return None;
    }
    let sectors: u64 = spans
        .iter()
        .map(|&(first, last)| u64::from(last - first) + 1)
        .sum();
    (sector + sectors <= DISK_SECTORS).then_some(sectors)
}

struct Harness {
    front: ModelFrontend,
    ring: BackRing<crate::peer::vchan::testing::FakeMemory>,
    disk: RamDisk,
    grants: FakeGrants,
    model: Vec<u8>,
    next_gref: u32,
    counters: DeviceCounters,
}

/// What to check when a request's response arrives.
enum Expect {
    Status(i16),
    /// OK, and each (gref, offset, bytes) must hold these bytes.
    ReadBack(Vec<(GrantRef, usize, Vec<u8>)>),
}

const LIMITS: DiskLimits = DiskLimits {
    sectors: DISK_SECTORS,
    writable: true,
    flush: true,
    discard: true,
    max_indirect_segments: 256,
};

impl Harness {
    fn new(order: u32) -> Harness {
        let front = ModelFrontend::new(order);
        let ring = BackRing::attach(front.memory.clone(), order).unwrap();
        let mut budget = MemoryBudget::new(1 << 20);
        Harness {
            front,
            ring,
            disk: RamDisk::attach(DISK_SECTORS, &mut budget).unwrap(),
            grants: FakeGrants::default(),
            model: vec![0; DISK_SECTORS as usize * SECTOR_SIZE],
            next_gref: 1,
            counters: DeviceCounters::default(),
        }
    }

    fn new_grant(&mut self) -> GrantRef {
        let gref = grant_ref(self.next_gref);
        self.next_gref += 1;
        self.grants.grant(gref);
        gref
    }

    fn segments(&mut self, spans: &[(u8, u8)]) -> Vec<Segment> {
        spans
            .iter()
            .map(|&(first_sect, last_sect)| Segment {
                gref: self.new_grant(),
                first_sect,
                last_sect,
            })
            .collect()
    }

    /// Builds the request the frontend sends (direct, or indirect with its segment page).
    fn request(
        &mut self,
        operation: u8,
        id: u64,
        sector: u64,
        segments: &[Segment],
        indirect: bool,
    ) -> RequestBytes {
        if !indirect {
            let mut bytes = encode::direct(operation, id, sector, segments);
            // nr_segments as asked, even past 11 (the encoder writes only 11 slots).
            bytes.0[1] = segments.len() as u8;
            return bytes;
        }
        let page = self.new_grant();
        let mut copy: PageCopy = [0; PAGE_SIZE];
        for (index, segment) in segments.iter().enumerate() {
            copy[index * 8..index * 8 + 8].copy_from_slice(&encode::segment_bytes(segment));
        }
        self.grants.pages.insert(page, copy.to_vec());
        encode::indirect(operation, id, sector, segments.len() as u16, &[page])
    }

    fn send(&mut self, id: u64, operation: &Operation) -> Expect {
        match operation {
            Operation::Read {
                sector,
                spans,
                indirect,
            } => {
                let segments = self.segments(spans);
                let bytes = self.request(op::READ, id, *sector, &segments, *indirect);
                self.front.queue(&bytes);
                match model_accepts(*sector, spans, *indirect) {
                    None => Expect::Status(status::ERROR),
                    Some(_) => {
                        let mut at = *sector as usize * SECTOR_SIZE;
                        let mut expected = Vec::new();
                        for segment in &segments {
                            let length = usize::from(segment.last_sect - segment.first_sect + 1)
                                * SECTOR_SIZE;
                            expected.push((
                                segment.gref,
                                usize::from(segment.first_sect) * SECTOR_SIZE,
                                self.model[at..at + length].to_vec(),
                            ));
                            at += length;
                        }
                        Expect::ReadBack(expected)
                    }
                }
            }
            Operation::Write {
                sector,
                spans,
                indirect,
                fill,
                flush,
            } => {
                let segments = self.segments(spans);
                // Distinct data per sector, so misplaced sectors show.
                let mut counter = *fill;
                for segment in &segments {
                    let page = self.grants.pages.get_mut(&segment.gref).unwrap();
                    for byte in page.iter_mut() {
                        *byte = counter;
                        counter = counter.wrapping_add(7);
                    }
                }
                let operation = if *flush && !*indirect {
                    op::FLUSH_DISKCACHE
                } else {
                    op::WRITE
                };
                let bytes = self.request(operation, id, *sector, &segments, *indirect);
                self.front.queue(&bytes);
                if operation == op::FLUSH_DISKCACHE && spans.is_empty() {
                    // blkif.h: a flush without segments is a pure cache flush.
                    return Expect::Status(status::OKAY);
                }
                if model_accepts(*sector, spans, *indirect).is_none() {
                    return Expect::Status(status::ERROR);
                }
                let mut at = *sector as usize * SECTOR_SIZE;
                for segment in &segments {
                    let offset = usize::from(segment.first_sect) * SECTOR_SIZE;
                    let length =
                        usize::from(segment.last_sect - segment.first_sect + 1) * SECTOR_SIZE;
                    let page = &self.grants.pages[&segment.gref];
                    self.model[at..at + length].copy_from_slice(&page[offset..offset + length]);
                    at += length;
                }
                Expect::Status(status::OKAY)
            }
            Operation::Discard { sector, sectors } => {
                self.front.queue(&encode::discard(id, 0, *sector, *sectors));
                if sector + sectors > DISK_SECTORS {
                    return Expect::Status(status::ERROR);
                }
                let start = *sector as usize * SECTOR_SIZE;
                self.model[start..start + *sectors as usize * SECTOR_SIZE].fill(0);
                Expect::Status(status::OKAY)
            }
            Operation::Flush => {
                self.front
                    .queue(&encode::direct(op::FLUSH_DISKCACHE, id, 0, &[]));
                Expect::Status(status::OKAY)
            }
            Operation::Unknown { operation } => {
                let mut bytes = encode::direct(op::READ, id, 0, &[]);
                bytes.0[0] = *operation;
                self.front.queue(&bytes);
                Expect::Status(status::EOPNOTSUPP)
            }
        }
    }

    fn check_disk_equals_model(&self) {
        let mut whole = vec![0xee; DISK_SECTORS as usize * SECTOR_SIZE];
        self.disk.read(0, &mut whole).unwrap();
        assert!(whole == self.model, "RAM disk differs from the model disk");
    }
}

fn run(operations: &[Operation], batch: usize, order: u32) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(order);
    let mut id = 0u64;
    for chunk in operations.chunks(batch) {
        let mut expected = Vec::new();
        for operation in chunk {
            id += 1;
            let expect = harness.send(id, operation);
            expected.push((id, expect));
        }
        harness.front.push();
        let served = serve_ring(
            &mut harness.ring,
            &LIMITS,
            &mut harness.disk,
            &mut harness.grants,
            &mut harness.counters,
            usize::MAX,
        )
        .unwrap();
        prop_assert!(!served.more);
        prop_assert!(
            served.notify,
            "the model frontend always waits for the next response"
        );
        let responses = harness.front.take_responses();
        prop_assert_eq!(responses.len(), expected.len());
        for ((response_id, _, response_status, _), (expected_id, expect)) in
            responses.iter().zip(&expected)
        {
            prop_assert_eq!(response_id, expected_id);
            match expect {
                Expect::Status(wanted) => {
                    prop_assert_eq!(response_status, wanted, "request {}", expected_id)
                }
                Expect::ReadBack(pieces) => {
                    prop_assert_eq!(*response_status, status::OKAY, "request {}", expected_id);
                    for (gref, offset, bytes) in pieces {
                        let page = &harness.grants.pages[gref];
                        prop_assert!(
                            &page[*offset..offset + bytes.len()] == bytes.as_slice(),
                            "read {} returned wrong bytes",
                            expected_id
                        );
                    }
                }
            }
        }
        harness.check_disk_equals_model();
    }
    prop_assert_eq!(harness.counters.requests, operations.len() as u64);
    Ok(())
}

// Under Miri (`make miri`) every case runs thousands of times slower: there the property runs
// on fewer and shorter cases, with the same assertions.
const STREAM_CASES: u32 = if cfg!(miri) { 3 } else { 256 };
const STREAM_LENGTH: usize = if cfg!(miri) { 8 } else { 120 };

proptest! {
    #![proptest_config(ProptestConfig::with_cases(STREAM_CASES))]

    #[test]
    fn random_request_streams_leave_the_ram_disk_equal_to_the_model(
        operations in proptest::collection::vec(operation(), 1..STREAM_LENGTH),
        batch in 1usize..=32,
        order in 0u32..=1,
    ) {
        run(&operations, batch, order)?;
    }
}

#[test]
fn an_unmappable_data_grant_fails_its_request_and_the_ring_goes_on() {
    let mut harness = Harness::new(0);
    let bad = harness.new_grant();
    harness.grants.unmappable.insert(bad);
    let segment = Segment {
        gref: bad,
        first_sect: 0,
        last_sect: 7,
    };
    harness
        .front
        .queue(&encode::direct(op::WRITE, 1, 0, &[segment]));
    harness
        .front
        .queue(&encode::indirect(op::READ, 2, 0, 1, &[bad]));
    harness
        .front
        .queue(&encode::direct(op::FLUSH_DISKCACHE, 3, 0, &[]));
    harness.front.push();
    let served = serve_ring(
        &mut harness.ring,
        &LIMITS,
        &mut harness.disk,
        &mut harness.grants,
        &mut harness.counters,
        8,
    )
    .unwrap();
    assert_eq!(
        served.refusals.len(),
        1,
        "the indirect page refusal is reported"
    );
    let statuses: Vec<(u64, i16)> = harness
        .front
        .take_responses()
        .iter()
        .map(|r| (r.0, r.2))
        .collect();
    assert_eq!(
        statuses,
        [(1, status::ERROR), (2, status::ERROR), (3, status::OKAY)]
    );
    assert_eq!(harness.counters.errors, 2);
}

#[test]
fn the_budget_bounds_one_call_and_more_says_so() {
    let mut harness = Harness::new(0);
    for id in 0..10 {
        harness
            .front
            .queue(&encode::direct(op::FLUSH_DISKCACHE, id, 0, &[]));
    }
    harness.front.push();
    let served = serve_ring(
        &mut harness.ring,
        &LIMITS,
        &mut harness.disk,
        &mut harness.grants,
        &mut harness.counters,
        4,
    )
    .unwrap();
    assert!(served.more);
    assert_eq!(harness.front.take_responses().len(), 4);
    let served = serve_ring(
        &mut harness.ring,
        &LIMITS,
        &mut harness.disk,
        &mut harness.grants,
        &mut harness.counters,
        100,
    )
    .unwrap();
    assert!(!served.more);
    assert_eq!(harness.front.take_responses().len(), 6);
}

#[test]
fn a_batch_names_all_its_data_grants_before_any_data_moves() {
    let mut harness = Harness::new(0);
    let first = harness.segments(&[(0, 7), (0, 3)]);
    let second = harness.segments(&[(0, 7)]);
    harness
        .front
        .queue(&encode::direct(op::WRITE, 1, 0, &first));
    harness
        .front
        .queue(&encode::direct(op::READ, 2, 8, &second));
    harness
        .front
        .queue(&encode::direct(op::READ, 3, DISK_SECTORS, &second));
    harness.front.push();
    let batch = take_batch(&mut harness.ring, &LIMITS, &mut harness.grants, 16).unwrap();
    let grants: Vec<GrantRef> = batch
        .iter()
        .filter_map(|taken| taken.checked.as_ref().ok())
        .flat_map(|request| request.grants())
        .collect();
    assert_eq!(grants, [first[0].gref, first[1].gref, second[0].gref]);
    assert!(
        batch[2].checked.is_err(),
        "the read past the end is refused before mapping"
    );
    // Nothing answered yet: the kernel maps between the halves.
    assert!(harness.front.take_responses().is_empty());
    let refusals = answer_batch(
        &mut harness.ring,
        batch,
        &mut harness.disk,
        &mut harness.grants,
        &mut harness.counters,
    )
    .unwrap();
    // Answered but not yet visible: the kernel unmaps the grants before the frontend can see a
    // response (blkfront disables a device whose backend still maps a grant it answered).
    assert!(harness.front.take_responses().is_empty());
    let served = publish_responses(&mut harness.ring, refusals).unwrap();
    assert!(served.notify);
    let statuses: Vec<i16> = harness.front.take_responses().iter().map(|r| r.2).collect();
    assert_eq!(statuses, [status::OKAY, status::OKAY, status::ERROR]);
    assert_eq!(harness.counters.bytes_written, 12 * SECTOR_SIZE as u64);
    assert_eq!(harness.counters.bytes_read, 8 * SECTOR_SIZE as u64);
}
