//! Access to memory a peer domain shares with us: bounds-checked, each read a single fetch.
//!
//! The target-independent code (vchan rings, grant mapping handles) reads and writes shared pages
//! only through this trait. The kernel implements it over a live mapping with volatile and atomic
//! accesses; host tests implement it over simulated memory. Because the peer may change the bytes
//! at any moment, callers copy a value out once and validate the copy, never the shared original.

use core::fmt;

/// An access outside the shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Offset of the refused access.
    pub offset: usize,
    /// Length of the refused access.
    pub length: usize,
    /// Size of the region.
    pub size: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "access of {} byte(s) at offset {} outside a {}-byte shared region",
            self.length, self.offset, self.size
        )
    }
}

/// Byte-level access to a shared region.
pub trait SharedMemory {
    /// Size of the region in bytes.
    fn size(&self) -> usize;

    /// Copies `into.len()` bytes starting at `offset` out of the region.
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds>;

    /// Copies `from` into the region starting at `offset`.
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds>;

    /// One atomic 32-bit load with acquire ordering (`offset` must be 4-byte aligned).
    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds>;

    /// One atomic 32-bit store with release ordering (`offset` must be 4-byte aligned).
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds>;

    /// One atomic byte load with acquire ordering.
    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds>;

    /// One atomic byte store with release ordering.
    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds>;

    /// Atomically ORs `bits` into the byte at `offset`, returning its previous value.
    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds>;

    /// Atomically ANDs `bits` into the byte at `offset`, returning its previous value.
    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds>;
}

/// Checks that `length` bytes at `offset` lie inside a region of `size` bytes.
pub fn check_bounds(offset: usize, length: usize, size: usize) -> Result<(), OutOfBounds> {
    match offset.checked_add(length) {
        Some(end) if end <= size => Ok(()),
        _ => Err(OutOfBounds {
            offset,
            length,
            size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_include_the_last_byte_and_refuse_one_past() {
        assert!(check_bounds(4092, 4, 4096).is_ok());
        assert!(check_bounds(4093, 4, 4096).is_err());
        assert!(check_bounds(usize::MAX, 2, 4096).is_err());
    }
}
