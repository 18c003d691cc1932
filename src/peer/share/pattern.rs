//! The grant-share test pattern, the answer grantsvc writes back and the digest it reports: one implementation for both sides.
//!
//! # The pattern
//! Byte `j` of page `i` (both from 0) of a device with seed `s` is byte `j % 4` (little-endian)
//! of the `j / 4 + 1`-th output of a xorshift32 generator (shifts 13, 17, 5) started from
//! `s XOR ((i + 1) * 0x9E3779B9)` (wrapping 32-bit arithmetic; a start of 0, which xorshift
//! never leaves, is replaced by 1). Each page has its own stream, so a page mapped in the wrong
//! place, or twice, is caught, and page 0 differs from page 1 even when the seed is 0.
//!
//! # The answer
//! When it may write (the frontend granted the pages writable), grantsvc overwrites the first
//! [`ANSWER_LENGTH`] bytes of every page with the complement (`!byte`) of the pattern it read
//! there. The rest of each page keeps the pattern, so the frontend can check that grantsvc wrote
//! exactly where it should, through its own mapping of each page.
//!
//! # The digest
//! CRC-32 (IEEE, as zlib's `crc32`) of all pages in order, as grantsvc read them before
//! answering, written as 8 lowercase hex digits. It shows that grantsvc read every byte, even
//! for read-only grants where no answer can be written.

use crate::addr::PAGE_SIZE;

/// Bytes at the start of each page that grantsvc answers in.
pub const ANSWER_LENGTH: usize = 64;

/// The multiplier that spreads page numbers over the seed (the golden ratio in 32 bits).
const PAGE_SPREAD: u32 = 0x9E37_79B9;

/// The generator state page `page` starts from.
fn page_start(seed: u32, page: u32) -> u32 {
    match seed ^ page.wrapping_add(1).wrapping_mul(PAGE_SPREAD) {
        0 => 1,
        start => start,
    }
}

fn xorshift32(mut state: u32) -> u32 {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    state
}

/// Fills `into` with the first `into.len()` pattern bytes of page `page` (a whole page is
/// [`PAGE_SIZE`] bytes; a shorter buffer gets the page's start).
pub fn fill_page(seed: u32, page: u32, into: &mut [u8]) {
    let mut state = page_start(seed, page);
    for chunk in into.chunks_mut(4) {
        state = xorshift32(state);
        let word = state.to_le_bytes();
        for (byte, value) in chunk.iter_mut().zip(word) {
            *byte = value;
        }
    }
}

/// One page of pattern.
pub fn page(seed: u32, page: u32) -> [u8; PAGE_SIZE] {
    let mut bytes = [0; PAGE_SIZE];
    fill_page(seed, page, &mut bytes);
    bytes
}

/// Turns a page holding the pattern into the page as it must be after grantsvc's answer.
pub fn apply_answer(page: &mut [u8]) {
    for byte in page.iter_mut().take(ANSWER_LENGTH) {
        *byte = !*byte;
    }
}

/// The first place where `found` differs from page `page_number`'s pattern, as a byte offset.
pub fn first_mismatch(seed: u32, page_number: u32, found: &[u8]) -> Option<usize> {
    let expected = page(seed, page_number);
    found
        .iter()
        .zip(expected.iter())
        .position(|(found, expected)| found != expected)
}

/// Running CRC-32 over the pages, in order.
#[derive(Clone, Default)]
pub struct Digest(crate::peer::crc32::Crc32);

impl Digest {
    pub fn new() -> Digest {
        Digest::default()
    }

    /// Adds the next page's bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC-32 so far.
    pub fn value(&self) -> u32 {
        self.0.value()
    }
}

impl core::fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "Digest({:08x})", self.value())
    }
}

/// The digest of `pages` pages of untouched pattern.
pub fn expected_digest(seed: u32, pages: u32) -> u32 {
    let mut digest = Digest::new();
    for number in 0..pages {
        digest.update(&page(seed, number));
    }
    digest.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_the_documented_xorshift() {
        // Page 0, seed 0: start = 0x9E3779B9; first output computed by hand from the shifts.
        let mut state: u32 = 0x9E37_79B9;
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let bytes = page(0, 0);
        assert_eq!(bytes[..4], state.to_le_bytes());
        let mut short = [0u8; 6];
        fill_page(0, 0, &mut short);
        assert_eq!(short[..], bytes[..6]);
    }

    #[test]
    fn pages_and_seeds_differ_and_zero_start_is_avoided() {
        assert_ne!(page(7, 0), page(7, 1));
        assert_ne!(page(7, 0), page(8, 0));
        // This seed makes page 0's start 0; the stream must still not be all zeroes.
        let seed = PAGE_SPREAD;
        assert_eq!(seed ^ PAGE_SPREAD, 0);
        assert!(page(seed, 0).iter().any(|&byte| byte != 0));
    }

    #[test]
    fn mismatches_are_located_and_answers_complement_the_start() {
        let mut bytes = page(3, 2);
        assert_eq!(first_mismatch(3, 2, &bytes), None);
        bytes[100] ^= 1;
        assert_eq!(first_mismatch(3, 2, &bytes), Some(100));
        let mut answered = page(3, 2);
        apply_answer(&mut answered);
        let original = page(3, 2);
        assert!(answered[..ANSWER_LENGTH]
            .iter()
            .zip(&original[..ANSWER_LENGTH])
            .all(|(answer, pattern)| *answer == !*pattern));
        assert_eq!(answered[ANSWER_LENGTH..], original[ANSWER_LENGTH..]);
    }

    #[test]
    fn the_digest_is_zlib_crc32_over_the_pages_in_order() {
        let mut both = alloc::vec::Vec::new();
        both.extend_from_slice(&page(9, 0));
        both.extend_from_slice(&page(9, 1));
        assert_eq!(expected_digest(9, 2), crc32fast::hash(&both));
        assert_ne!(expected_digest(9, 2), expected_digest(9, 1));
        // zlib.crc32(b"123456789") == 0xcbf43926, the CRC-32 check value.
        let mut digest = Digest::new();
        digest.update(b"123456789");
        assert_eq!(digest.value(), 0xcbf4_3926);
    }
}
