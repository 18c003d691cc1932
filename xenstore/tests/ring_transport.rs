//! Host tests of the xenstore ring transport over a simulated page: wraparound, flow control and hostile indices.

use std::cell::{Cell, RefCell};

use xenstore::ring::{
    REQUEST_CONSUMER_OFFSET, REQUEST_PRODUCER_OFFSET, REQUEST_RING_OFFSET,
    RESPONSE_CONSUMER_OFFSET, RESPONSE_PRODUCER_OFFSET, RESPONSE_RING_OFFSET, RING_SIZE,
};
use xenstore::ring_transport::{Direction, RingError, RingMemory, XenstoreRing};

/// A 4 KiB page, counting loads of each producer index to show each pass reads it once.
struct Page {
    bytes: RefCell<Vec<u8>>,
    producer_loads: Cell<usize>,
}

#[derive(Debug, PartialEq, Eq)]
struct OutOfPage;

impl Page {
    fn new() -> Page {
        Page {
            bytes: RefCell::new(vec![0; 4096]),
            producer_loads: Cell::new(0),
        }
    }

    fn set_u32(&self, offset: usize, value: u32) {
        self.bytes.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    fn get_u32(&self, offset: usize) -> u32 {
        let bytes = self.bytes.borrow();
        u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
    }

    /// What xenstored would do: consume `count` request bytes, returning them.
    fn server_consume_requests(&self, count: u32) -> Vec<u8> {
        let consumer = self.get_u32(REQUEST_CONSUMER_OFFSET);
        let bytes = self.bytes.borrow();
        let taken = (0..count)
            .map(|step| {
                let place = (consumer.wrapping_add(step) & (RING_SIZE - 1)) as usize;
                bytes[REQUEST_RING_OFFSET + place]
            })
            .collect();
        drop(bytes);
        self.set_u32(REQUEST_CONSUMER_OFFSET, consumer.wrapping_add(count));
        taken
    }

    /// What xenstored would do: produce `data` into the response ring.
    fn server_produce_responses(&self, data: &[u8]) {
        let producer = self.get_u32(RESPONSE_PRODUCER_OFFSET);
        for (step, byte) in data.iter().enumerate() {
            let place = (producer.wrapping_add(step as u32) & (RING_SIZE - 1)) as usize;
            self.bytes.borrow_mut()[RESPONSE_RING_OFFSET + place] = *byte;
        }
        self.set_u32(
            RESPONSE_PRODUCER_OFFSET,
            producer.wrapping_add(data.len() as u32),
        );
    }
}

impl RingMemory for Page {
    type Error = OutOfPage;

    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfPage> {
        let bytes = self.bytes.borrow();
        into.copy_from_slice(bytes.get(offset..offset + into.len()).ok_or(OutOfPage)?);
        Ok(())
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfPage> {
        let mut bytes = self.bytes.borrow_mut();
        bytes
            .get_mut(offset..offset + from.len())
            .ok_or(OutOfPage)?
            .copy_from_slice(from);
        Ok(())
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfPage> {
        if offset == REQUEST_CONSUMER_OFFSET || offset == RESPONSE_PRODUCER_OFFSET {
            self.producer_loads.set(self.producer_loads.get() + 1);
        }
        Ok(self.get_u32(offset))
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfPage> {
        self.set_u32(offset, value);
        Ok(())
    }
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// A page whose four indices all start at `start`, as after `start` bytes each way.
fn page_at(start: u32) -> Page {
    let page = Page::new();
    for offset in [
        REQUEST_CONSUMER_OFFSET,
        REQUEST_PRODUCER_OFFSET,
        RESPONSE_CONSUMER_OFFSET,
        RESPONSE_PRODUCER_OFFSET,
    ] {
        page.set_u32(offset, start);
    }
    page
}

#[test]
fn requests_wrap_around_the_array_and_the_u32_index() {
    for start in [0u32, 1000, u32::MAX - 20] {
        let page = page_at(start);
        let mut ring = XenstoreRing::attach(&page).expect("consistent indices");
        let message = pattern(700, 1);
        assert_eq!(ring.write(&page, &message), Ok(700));
        assert_eq!(page.server_consume_requests(700), message);
        // 700 more: wraps the 1024-byte array (and, from u32::MAX - 20, the index).
        let second = pattern(700, 2);
        assert_eq!(ring.write(&page, &second), Ok(700));
        assert_eq!(
            page.get_u32(REQUEST_PRODUCER_OFFSET),
            start.wrapping_add(1400)
        );
        assert_eq!(page.server_consume_requests(700), second);
    }
}

#[test]
fn a_full_request_ring_takes_what_fits_then_nothing() {
    let page = page_at(0);
    let mut ring = XenstoreRing::attach(&page).expect("consistent");
    let big = pattern(1500, 3);
    assert_eq!(ring.write(&page, &big), Ok(1024));
    assert_eq!(ring.write(&page, &big[1024..]), Ok(0));
    assert_eq!(page.server_consume_requests(100), big[..100]);
    assert_eq!(ring.write(&page, &big[1024..]), Ok(100));
    assert_eq!(page.server_consume_requests(1024), big[100..1124]);
}

#[test]
fn responses_wrap_and_respect_the_callers_buffer() {
    for start in [0u32, 900, u32::MAX - 5] {
        let page = page_at(start);
        let mut ring = XenstoreRing::attach(&page).expect("consistent");
        let data = pattern(1000, 4);
        page.server_produce_responses(&data[..300]);
        let mut buffer = [0u8; 2048];
        assert_eq!(ring.read(&page, &mut buffer), Ok(300));
        page.server_produce_responses(&data[300..]);
        let mut small = [0u8; 100];
        assert_eq!(ring.read(&page, &mut small), Ok(100));
        assert_eq!(small[..], data[300..400]);
        assert_eq!(ring.read(&page, &mut buffer), Ok(600));
        assert_eq!(buffer[..600], data[400..]);
        assert_eq!(ring.read(&page, &mut buffer), Ok(0));
        assert_eq!(
            page.get_u32(RESPONSE_CONSUMER_OFFSET),
            start.wrapping_add(1000)
        );
    }
}

#[test]
fn each_pass_loads_the_peers_index_once() {
    let page = page_at(1000);
    let mut ring = XenstoreRing::attach(&page).expect("consistent");
    page.producer_loads.set(0);
    page.server_produce_responses(&pattern(200, 5));
    let mut buffer = [0u8; 512];
    assert_eq!(ring.read(&page, &mut buffer), Ok(200), "two spans copied");
    assert_eq!(page.producer_loads.get(), 1);
    assert_eq!(ring.write(&page, &pattern(200, 6)), Ok(200));
    assert_eq!(page.producer_loads.get(), 2);
}

#[test]
fn hostile_server_indices_are_refused_and_nothing_moves() {
    let page = page_at(0);
    let mut ring = XenstoreRing::attach(&page).expect("consistent");
    // The server claims 2000 bytes of responses in a 1024-byte ring.
    page.set_u32(RESPONSE_PRODUCER_OFFSET, 2000);
    let mut buffer = [0u8; 64];
    assert!(matches!(
        ring.read(&page, &mut buffer),
        Err(RingError::Indices {
            direction: Direction::Responses,
            ..
        })
    ));
    assert_eq!(
        page.get_u32(RESPONSE_CONSUMER_OFFSET),
        0,
        "nothing consumed"
    );
    // The server's request consumer runs ahead of what we produced.
    page.set_u32(REQUEST_CONSUMER_OFFSET, 10);
    assert!(matches!(
        ring.write(&page, b"x"),
        Err(RingError::Indices {
            direction: Direction::Requests,
            ..
        })
    ));
    assert_eq!(page.get_u32(REQUEST_PRODUCER_OFFSET), 0, "nothing produced");
}

#[test]
fn our_indices_are_never_taken_back_from_the_page() {
    let page = page_at(0);
    let mut ring = XenstoreRing::attach(&page).expect("consistent");
    assert_eq!(ring.write(&page, b"abc"), Ok(3));
    // The server scribbles over our producer index; we keep producing from our own copy.
    page.set_u32(REQUEST_PRODUCER_OFFSET, 500);
    assert_eq!(ring.write(&page, b"def"), Ok(3));
    assert_eq!(page.get_u32(REQUEST_PRODUCER_OFFSET), 6);
    assert_eq!(page.server_consume_requests(6), b"abcdef");
}

#[test]
fn attaching_to_an_impossible_page_fails() {
    let page = page_at(0);
    page.set_u32(REQUEST_PRODUCER_OFFSET, 5000);
    assert!(matches!(
        XenstoreRing::attach(&page),
        Err(RingError::Indices {
            direction: Direction::Requests,
            ..
        })
    ));
}
