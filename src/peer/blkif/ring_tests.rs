//! Tests of the back ring against a model frontend: copy-once, the producer bound, whole responses and the notify rules.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::abi::blkif::{op, status};
use crate::peer::blkif::request::{decode, encode, grant_ref, Decoded, Segment};
use crate::peer::blkif::testing::ModelFrontend;

fn read_request(id: u64) -> RequestBytes {
    let segment = Segment {
        gref: grant_ref(1),
        first_sect: 0,
        last_sect: 7,
    };
    encode::direct(op::READ, id, 0, &[segment])
}

#[test]
fn requests_come_off_in_order_and_responses_go_back_whole() {
    let mut front = ModelFrontend::new(0);
    for id in 0..3 {
        front.queue(&read_request(id));
    }
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    for id in 0..3 {
        let bytes = ring.next_request().unwrap().unwrap();
        assert_eq!(decode(&bytes).id(), id);
    }
    assert_eq!(ring.next_request().unwrap(), None);
    assert_eq!(ring.outstanding(), 3);
    for id in 0..3 {
        ring.put_response(id, op::READ, status::OKAY).unwrap();
    }
    assert_eq!(
        ring.put_response(9, op::READ, status::OKAY),
        Err(RingFault::NoRequestToAnswer)
    );
    assert!(
        ring.push_responses().unwrap(),
        "rsp_event 1 asks for a notification"
    );
    let responses = front.take_responses();
    assert_eq!(responses.len(), 3);
    for (index, (id, operation, status, raw)) in responses.into_iter().enumerate() {
        assert_eq!(
            (id, operation, status),
            (index as u64, op::READ, status::OKAY)
        );
        // XSA-216: the padding bytes of the response are zero, not left-over request bytes.
        assert_eq!(raw[9], 0);
        assert_eq!(raw[12..16], [0, 0, 0, 0]);
    }
}

#[test]
fn a_request_is_copied_once_so_later_rewrites_do_not_reach_the_copy() {
    let mut front = ModelFrontend::new(0);
    front.queue(&read_request(1));
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    let copy = ring.next_request().unwrap().unwrap();
    // The frontend rewrites the slot after it was taken (the XSA-155 attack).
    front.req_prod_pvt = 0;
    front.queue(&encode::direct(op::WRITE, 666, 1 << 60, &[]));
    match decode(&copy) {
        Decoded::Direct {
            operation,
            id,
            sector,
            nr_segments,
            ..
        } => {
            assert_eq!((operation, id, sector, nr_segments), (op::READ, 1, 0, 1));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_producer_more_than_a_ring_ahead_halts_the_ring() {
    let mut front = ModelFrontend::new(0);
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    // Exactly a ring of requests is fine.
    front.req_prod_pvt = 32;
    front.push();
    for _ in 0..32 {
        assert!(ring.next_request().unwrap().is_some());
    }
    // No room for a 33rd response until some are answered: wait, not a fault.
    assert_eq!(ring.next_request().unwrap(), None);
    // A jump past the ring is.
    front.req_prod_pvt = 32 + 33;
    front.push();
    ring.put_response(0, op::READ, status::OKAY).unwrap();
    assert_eq!(
        ring.final_check_for_requests(),
        Err(RingFault::ProducerAhead {
            req_prod: 65,
            rsp_prod: 1,
            slots: 32
        })
    );
    assert_eq!(ring.next_request(), Err(RingFault::Halted));
    assert_eq!(ring.final_check_for_requests(), Err(RingFault::Halted));
}

#[test]
fn a_bogus_producer_at_attach_is_refused() {
    let front = ModelFrontend::new(0);
    front
        .memory
        .store_u32(header_offset::REQ_PROD, 0x8000_0000)
        .unwrap();
    assert!(matches!(
        BackRing::attach(front.memory.clone(), 0),
        Err(RingFault::ProducerAhead { .. })
    ));
    assert!(matches!(
        BackRing::attach(front.memory.clone(), 5),
        Err(RingFault::BadOrder { order: 5 })
    ));
    assert!(matches!(
        BackRing::attach(front.memory.clone(), 1),
        Err(RingFault::TooSmall {
            needed: 8192,
            size: 4096
        })
    ));
}

#[test]
fn indices_wrap_around_u32() {
    let mut front = ModelFrontend::new(0);
    let start = u32::MAX - 2;
    front
        .memory
        .store_u32(header_offset::RSP_PROD, start)
        .unwrap();
    front.req_prod_pvt = start;
    front.rsp_cons = start;
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    for id in 0..6 {
        front.queue(&read_request(id));
    }
    front.push();
    for id in 0..6 {
        assert_eq!(
            ring.next_request().unwrap().map(|bytes| bytes.id()),
            Some(id)
        );
        ring.put_response(id, op::READ, status::OKAY).unwrap();
    }
    ring.push_responses().unwrap();
    let ids: alloc::vec::Vec<u64> = front
        .take_responses()
        .iter()
        .map(|response| response.0)
        .collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn notification_follows_rsp_event() {
    let mut front = ModelFrontend::new(0);
    for id in 0..4 {
        front.queue(&read_request(id));
    }
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    // The frontend wants a notification only once 3 responses are out (rsp_event = 3).
    front.memory.store_u32(header_offset::RSP_EVENT, 3).unwrap();
    ring.next_request().unwrap();
    ring.put_response(0, op::READ, status::OKAY).unwrap();
    assert!(!ring.push_responses().unwrap());
    ring.next_request().unwrap();
    ring.next_request().unwrap();
    ring.put_response(1, op::READ, status::OKAY).unwrap();
    ring.put_response(2, op::READ, status::OKAY).unwrap();
    assert!(
        ring.push_responses().unwrap(),
        "rsp_prod moved from 1 to 3 past rsp_event 3"
    );
    assert!(
        !ring.push_responses().unwrap(),
        "nothing new: no notification"
    );
}

#[test]
fn the_final_check_arms_req_event_and_sees_late_requests() {
    let mut front = ModelFrontend::new(0);
    front.queue(&read_request(1));
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 0).unwrap();
    assert!(ring.final_check_for_requests().unwrap());
    ring.next_request().unwrap();
    assert!(!ring.final_check_for_requests().unwrap());
    assert_eq!(front.memory.load_u32(header_offset::REQ_EVENT).unwrap(), 2);
    front.queue(&read_request(2));
    front.push();
    assert!(ring.final_check_for_requests().unwrap());
}

#[test]
fn a_16_page_ring_has_512_slots() {
    let mut front = ModelFrontend::new(4);
    for id in 0..512 {
        front.queue(&read_request(id));
    }
    front.push();
    let mut ring = BackRing::attach(front.memory.clone(), 4).unwrap();
    assert_eq!(ring.slots(), 512);
    let mut count = 0;
    while let Some(bytes) = ring.next_request().unwrap() {
        assert_eq!(bytes.id(), count);
        count += 1;
    }
    assert_eq!(count, 512);
}
