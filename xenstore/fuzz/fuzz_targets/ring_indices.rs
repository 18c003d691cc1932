//! Fuzz target: the xenstore ring's producer/consumer indices, which the other end writes, through the span arithmetic.
//!
//! Checks: indices more than a ring apart are refused, and every span granted stays inside the
//! 1024-byte array and within the bytes the indices allow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::ring::{free_space, readable_span, unconsumed, writable_span, RING_SIZE};

fuzz_target!(|input: [u32; 2]| {
    let [consumer, producer] = input;
    let distance = producer.wrapping_sub(consumer);
    match unconsumed(consumer, producer) {
        Ok(used) => {
            assert_eq!(used, distance);
            assert!(used <= RING_SIZE);
            let free = free_space(consumer, producer).expect("free space of valid indices");
            assert_eq!(used + free, RING_SIZE);
            for span in [
                readable_span(consumer, producer).expect("readable span"),
                writable_span(consumer, producer).expect("writable span"),
            ] {
                assert!(span.offset + span.length <= RING_SIZE as usize);
            }
            assert!(readable_span(consumer, producer).unwrap().length as u32 <= used);
            assert!(writable_span(consumer, producer).unwrap().length as u32 <= free);
        }
        Err(_) => {
            assert!(distance > RING_SIZE);
            assert!(readable_span(consumer, producer).is_err());
            assert!(writable_span(consumer, producer).is_err());
        }
    }
});
