//! The backing store trait: what a disk behind a blkif device offers, in 512-byte sectors.
//!
//! The RAM disk ([`super::ram_disk`]) is the first store; a disk reached through grantsvc's own
//! blkfront is the likely next. Callers pass only ranges the validator accepted, but every
//! store checks them again: a store is sound for any caller.

use core::fmt;

/// Why a store refused or failed an operation (the request gets `BLKIF_RSP_ERROR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFault {
    /// The range is not inside the disk, or the buffer is not whole sectors.
    OutOfRange { sector: u64, bytes: usize },
    /// Memory for the data ran out.
    OutOfMemory,
    /// The store does not do this operation.
    Unsupported,
}

impl fmt::Display for StoreFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StoreFault::OutOfRange { sector, bytes } => {
                write!(
                    formatter,
                    "{bytes} bytes at sector {sector} outside the disk"
                )
            }
            StoreFault::OutOfMemory => formatter.write_str("out of memory"),
            StoreFault::Unsupported => formatter.write_str("operation not supported by the store"),
        }
    }
}

/// A disk of 512-byte sectors.
pub trait BackingStore {
    /// Size in 512-byte sectors.
    fn sectors(&self) -> u64;

    /// Fills `into` (whole sectors) from `sector` on.
    fn read(&self, sector: u64, into: &mut [u8]) -> Result<(), StoreFault>;

    /// Writes `from` (whole sectors) from `sector` on.
    fn write(&mut self, sector: u64, from: &[u8]) -> Result<(), StoreFault>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), StoreFault>;

    /// True when [`BackingStore::discard`] frees storage (worth advertising `feature-discard`).
    fn supports_discard(&self) -> bool;

    /// Drops `sectors` sectors from `sector` on; they read as zeros afterwards.
    fn discard(&mut self, sector: u64, sectors: u64) -> Result<(), StoreFault>;
}
