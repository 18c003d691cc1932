//! A disk held in grantsvc's memory: sparse 4 KiB pages, allocated on first write, freed by discard, all reserved against a budget at attach.
//!
//! Unwritten sectors read as zeros, so the disk is "zeroed at attach" without touching memory.
//! The whole size is reserved from a [`MemoryBudget`] when the disk is created: an attach that
//! the budget cannot cover is refused with a clear error, and a write can then never run the
//! service out of memory halfway through a filesystem. Page allocation still goes through
//! `try_reserve`, so a heap that is smaller than the budget claimed gives an I/O error for that
//! request, not an abort.

use super::store::{BackingStore, StoreFault};
use crate::abi::blkif::SECTOR_SIZE;
use crate::addr::PAGE_SIZE;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

/// Memory the RAM disks together may use, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    limit: u64,
    reserved: u64,
}

/// An attach the budget cannot cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetExceeded {
    pub asked: u64,
    pub available: u64,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "a RAM disk of {} bytes does not fit in the {} bytes of memory left for disks",
            self.asked, self.available
        )
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes, none reserved.
    pub const fn new(limit: u64) -> Self {
        MemoryBudget { limit, reserved: 0 }
    }

    /// Bytes not yet reserved.
    pub const fn available(&self) -> u64 {
        self.limit - self.reserved
    }

    fn reserve(&mut self, bytes: u64) -> Result<(), BudgetExceeded> {
        if bytes > self.available() {
            return Err(BudgetExceeded {
                asked: bytes,
                available: self.available(),
            });
        }
        self.reserved += bytes;
        Ok(())
    }

    fn release(&mut self, bytes: u64) {
        self.reserved = self.reserved.saturating_sub(bytes);
    }
}

type Page = Box<[u8; PAGE_SIZE]>;

/// A RAM disk: its size and the pages written so far.
///
/// The pages sit in a vector indexed by page number, grown to the highest page written: one
/// pointer (8 bytes) per 4 KiB page, 0.2% of what the budget reserves, and a direct index
/// instead of a tree (whose code was 4.7 KB of the kernel image, issue 10).
#[derive(Debug)]
pub struct RamDisk {
    sectors: u64,
    pages: Vec<Option<Page>>,
    in_use: usize,
}

impl RamDisk {
    /// A zeroed disk of `sectors` sectors, its whole size reserved from `budget`.
    pub fn attach(sectors: u64, budget: &mut MemoryBudget) -> Result<RamDisk, BudgetExceeded> {
        budget.reserve(Self::bytes_for(sectors))?;
        Ok(RamDisk {
            sectors,
            pages: Vec::new(),
            in_use: 0,
        })
    }

    /// Frees the disk's memory and gives its reservation back to `budget`.
    pub fn detach(self, budget: &mut MemoryBudget) {
        budget.release(Self::bytes_for(self.sectors));
    }

    fn bytes_for(sectors: u64) -> u64 {
        sectors.saturating_mul(SECTOR_SIZE as u64)
    }

    /// Pages holding data now (for counters and tests).
    pub fn pages_in_use(&self) -> usize {
        self.in_use
    }

    fn page(&self, page: u64) -> Option<&Page> {
        let index = usize::try_from(page).ok()?;
        self.pages.get(index)?.as_ref()
    }

    fn page_mut(&mut self, page: u64) -> Option<&mut Page> {
        let index = usize::try_from(page).ok()?;
        self.pages.get_mut(index)?.as_mut()
    }

    /// Allocates page `page` (absent before), growing the index to it when needed.
    fn insert_page(&mut self, page: u64) -> Result<(), StoreFault> {
        let index = usize::try_from(page).map_err(|_| StoreFault::OutOfMemory)?;
        if index >= self.pages.len() {
            self.pages
                .try_reserve(index + 1 - self.pages.len())
                .map_err(|_| StoreFault::OutOfMemory)?;
            self.pages.resize_with(index + 1, || None);
        }
        let data = Self::new_page()?;
        let slot = self.pages.get_mut(index).ok_or(StoreFault::OutOfMemory)?;
        *slot = Some(data);
        self.in_use += 1;
        Ok(())
    }

    fn remove_page(&mut self, page: u64) {
        let slot = usize::try_from(page)
            .ok()
            .and_then(|index| self.pages.get_mut(index));
        if let Some(slot) = slot {
            if slot.take().is_some() {
                self.in_use -= 1;
            }
        }
    }

    /// Checks a byte range of whole sectors inside the disk; returns its byte offset.
    fn check(&self, sector: u64, bytes: usize) -> Result<u64, StoreFault> {
        let fault = StoreFault::OutOfRange { sector, bytes };
        if bytes % SECTOR_SIZE != 0 {
            return Err(fault);
        }
        let end = sector
            .checked_add((bytes / SECTOR_SIZE) as u64)
            .ok_or(fault)?;
        if end > self.sectors {
            return Err(fault);
        }
        Ok(sector * SECTOR_SIZE as u64)
    }

    fn new_page() -> Result<Page, StoreFault> {
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(PAGE_SIZE)
            .map_err(|_| StoreFault::OutOfMemory)?;
        bytes.resize(PAGE_SIZE, 0);
        bytes
            .into_boxed_slice()
            .try_into()
            .map_err(|_| StoreFault::OutOfMemory)
    }
}

/// Splits the byte range `start..start+length` into per-page pieces: (page index, offset in
/// page, length, offset in the caller's buffer).
fn pieces(start: u64, length: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let mut done = 0usize;
    core::iter::from_fn(move || {
        if done >= length {
            return None;
        }
        let position = start + done as u64;
        let in_page = (position % PAGE_SIZE as u64) as usize;
        let piece = (PAGE_SIZE - in_page).min(length - done);
        let item = (position / PAGE_SIZE as u64, in_page, piece, done);
        done += piece;
        Some(item)
    })
}

impl BackingStore for RamDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&self, sector: u64, into: &mut [u8]) -> Result<(), StoreFault> {
        let start = self.check(sector, into.len())?;
        for (page, in_page, length, at) in pieces(start, into.len()) {
            let target = into
                .get_mut(at..at + length)
                .ok_or(StoreFault::OutOfRange {
                    sector,
                    bytes: length,
                })?;
            match self
                .page(page)
                .and_then(|data| data.get(in_page..in_page + length))
            {
                Some(data) => target.copy_from_slice(data),
                None => target.fill(0),
            }
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, from: &[u8]) -> Result<(), StoreFault> {
        let start = self.check(sector, from.len())?;
        for (page, in_page, length, at) in pieces(start, from.len()) {
            let source = from.get(at..at + length).ok_or(StoreFault::OutOfRange {
                sector,
                bytes: length,
            })?;
            if self.page(page).is_none() {
                // Zeros into an absent page change nothing: keep it absent (mkfs writes many).
                if source.iter().all(|&byte| byte == 0) {
                    continue;
                }
                self.insert_page(page)?;
            }
            let data = self.page_mut(page).ok_or(StoreFault::OutOfMemory)?;
            data.get_mut(in_page..in_page + length)
                .ok_or(StoreFault::OutOfRange {
                    sector,
                    bytes: length,
                })?
                .copy_from_slice(source);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreFault> {
        // Memory is as durable as this disk gets.
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        true
    }

    fn discard(&mut self, sector: u64, sectors: u64) -> Result<(), StoreFault> {
        let bytes = usize::try_from(sectors.saturating_mul(SECTOR_SIZE as u64)).map_err(|_| {
            StoreFault::OutOfRange {
                sector,
                bytes: usize::MAX,
            }
        })?;
        let start = self.check(sector, bytes)?;
        for (page, in_page, length, _) in pieces(start, bytes) {
            if length == PAGE_SIZE {
                self.remove_page(page);
            } else if let Some(data) = self.page_mut(page) {
                if let Some(range) = data.get_mut(in_page..in_page + length) {
                    range.fill(0);
                }
                if data.iter().all(|&byte| byte == 0) {
                    self.remove_page(page);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn unwritten_sectors_read_as_zeros_and_writes_read_back() {
        let mut budget = MemoryBudget::new(1 << 20);
        let mut disk = RamDisk::attach(64, &mut budget).unwrap();
        let mut buffer = vec![0xee; 3 * SECTOR_SIZE];
        disk.read(5, &mut buffer).unwrap();
        assert!(buffer.iter().all(|&byte| byte == 0));
        // Three sectors from sector 7 straddle the first page boundary (sector 8).
        let data: Vec<u8> = (0..3 * SECTOR_SIZE)
            .map(|index| (index % 251) as u8)
            .collect();
        disk.write(7, &data).unwrap();
        assert_eq!(disk.pages_in_use(), 2);
        disk.read(7, &mut buffer).unwrap();
        assert_eq!(buffer, data);
        let mut sector_six = vec![0xee; SECTOR_SIZE];
        disk.read(6, &mut sector_six).unwrap();
        assert!(sector_six.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn ranges_outside_the_disk_are_refused() {
        let mut budget = MemoryBudget::new(1 << 20);
        let mut disk = RamDisk::attach(16, &mut budget).unwrap();
        let mut buffer = vec![0; SECTOR_SIZE];
        assert!(disk.read(16, &mut buffer).is_err());
        assert!(disk.write(u64::MAX, &buffer).is_err());
        assert!(disk.read(0, &mut buffer[..100]).is_err());
        assert!(disk.discard(10, 7).is_err());
        assert!(disk.discard(u64::MAX, 2).is_err());
        assert!(disk.read(15, &mut buffer).is_ok());
    }

    #[test]
    fn discard_frees_whole_pages_and_zeroes_partial_ones() {
        let mut budget = MemoryBudget::new(1 << 20);
        let mut disk = RamDisk::attach(32, &mut budget).unwrap();
        disk.write(0, &vec![0xab; 24 * SECTOR_SIZE]).unwrap();
        assert_eq!(disk.pages_in_use(), 3);
        // Sectors 4..20: half of page 0, all of page 1, half of page 2.
        disk.discard(4, 16).unwrap();
        assert_eq!(disk.pages_in_use(), 2);
        let mut buffer = vec![0; 24 * SECTOR_SIZE];
        disk.read(0, &mut buffer).unwrap();
        let (kept_front, rest) = buffer.split_at(4 * SECTOR_SIZE);
        let (dropped, kept_back) = rest.split_at(16 * SECTOR_SIZE);
        assert!(kept_front.iter().all(|&byte| byte == 0xab));
        assert!(dropped.iter().all(|&byte| byte == 0));
        assert!(kept_back.iter().all(|&byte| byte == 0xab));
        disk.discard(0, 32).unwrap();
        assert_eq!(disk.pages_in_use(), 0);
    }

    #[test]
    fn pages_written_out_of_order_read_back_and_count_once() {
        let mut budget = MemoryBudget::new(1 << 20);
        let mut disk = RamDisk::attach(64, &mut budget).unwrap();
        // The last page first (the index grows to it), then the first, then the last again.
        disk.write(56, &vec![0x11; 8 * SECTOR_SIZE]).unwrap();
        disk.write(0, &vec![0x22; SECTOR_SIZE]).unwrap();
        disk.write(63, &vec![0x33; SECTOR_SIZE]).unwrap();
        assert_eq!(disk.pages_in_use(), 2);
        let mut buffer = vec![0; 64 * SECTOR_SIZE];
        disk.read(0, &mut buffer).unwrap();
        assert!(buffer[..SECTOR_SIZE].iter().all(|&byte| byte == 0x22));
        assert!(buffer[SECTOR_SIZE..56 * SECTOR_SIZE]
            .iter()
            .all(|&byte| byte == 0));
        assert!(buffer[56 * SECTOR_SIZE..63 * SECTOR_SIZE]
            .iter()
            .all(|&byte| byte == 0x11));
        assert!(buffer[63 * SECTOR_SIZE..].iter().all(|&byte| byte == 0x33));
        disk.discard(56, 8).unwrap();
        disk.discard(56, 8).unwrap();
        assert_eq!(disk.pages_in_use(), 1);
    }

    #[test]
    fn zero_writes_to_absent_pages_allocate_nothing() {
        let mut budget = MemoryBudget::new(1 << 20);
        let mut disk = RamDisk::attach(32, &mut budget).unwrap();
        disk.write(0, &vec![0; 32 * SECTOR_SIZE]).unwrap();
        assert_eq!(disk.pages_in_use(), 0);
    }

    #[test]
    fn the_budget_refuses_what_it_cannot_cover_and_gets_it_back_at_detach() {
        let mut budget = MemoryBudget::new(64 << 20);
        let first = RamDisk::attach((48 << 20) / 512, &mut budget).unwrap();
        let refused = RamDisk::attach((32 << 20) / 512, &mut budget).unwrap_err();
        assert_eq!(
            refused,
            BudgetExceeded {
                asked: 32 << 20,
                available: 16 << 20
            }
        );
        assert_eq!(
            refused.to_string(),
            "a RAM disk of 33554432 bytes does not fit in the 16777216 bytes of memory left for disks"
        );
        first.detach(&mut budget);
        assert_eq!(budget.available(), 64 << 20);
        RamDisk::attach((32 << 20) / 512, &mut budget).unwrap();
    }
}
