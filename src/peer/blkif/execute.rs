//! Carrying out a valid request: data between the granted pages and the backing store, one segment at a time.
//!
//! The pages are reached through [`DataPages`], which the kernel implements over the grants it
//! mapped for this batch (or over the persistent-grant cache); tests implement it over fake
//! granted memory. Each segment is `first_sect..=last_sect` of one page, and the segments follow
//! each other on the disk from the request's sector.

use super::request::Segment;
use super::store::BackingStore;
use super::validate::{Action, ValidRequest};
use crate::abi::blkif::{status, SECTOR_SIZE};
use crate::addr::PAGE_SIZE;
use crate::ids::GrantRef;

/// A data page that could not be reached (not mapped, or the access fell outside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    pub gref: GrantRef,
}

/// The granted data pages of the requests being served.
pub trait DataPages {
    /// Copies `into.len()` bytes at `offset` of the page granted by `gref`.
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault>;

    /// Copies `from` to `offset` of the page granted by `gref`.
    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault>;
}

/// What a request did: its response status and the bytes it moved (for the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Outcome {
    pub status: i16,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl Outcome {
    fn error() -> Outcome {
        Outcome {
            status: status::ERROR,
            ..Outcome::default()
        }
    }
}

/// Byte offset and length of a segment inside its page.
fn segment_span(segment: &Segment) -> (usize, usize) {
    let first = usize::from(segment.first_sect);
    let count = usize::from(segment.last_sect.saturating_sub(segment.first_sect)) + 1;
    (first * SECTOR_SIZE, count * SECTOR_SIZE)
}

/// Carries out `request` on `store` with the data in `pages`.
pub fn execute(
    request: &ValidRequest,
    store: &mut impl BackingStore,
    pages: &mut impl DataPages,
) -> Outcome {
    let mut bounce = [0u8; PAGE_SIZE];
    let mut outcome = Outcome::default();
    match &request.action {
        Action::Flush => {
            if store.flush().is_err() {
                return Outcome::error();
            }
        }
        Action::Discard { sector, sectors } => {
            if *sectors > 0 && store.discard(*sector, *sectors).is_err() {
                return Outcome::error();
            }
        }
        Action::Read { sector, segments } => {
            let mut at = *sector;
            for segment in segments {
                let (offset, length) = segment_span(segment);
                let Some(buffer) = bounce.get_mut(..length) else {
                    return Outcome::error();
                };
                if store.read(at, buffer).is_err()
                    || pages.write_page(segment.gref, offset, buffer).is_err()
                {
                    return Outcome::error();
                }
                at += (length / SECTOR_SIZE) as u64;
                outcome.bytes_read += length as u64;
            }
        }
        Action::Write {
            sector,
            segments,
            flush_first,
        } => {
            if *flush_first && store.flush().is_err() {
                return Outcome::error();
            }
            let mut at = *sector;
            for segment in segments {
                let (offset, length) = segment_span(segment);
                let Some(buffer) = bounce.get_mut(..length) else {
                    return Outcome::error();
                };
                if pages.read_page(segment.gref, offset, buffer).is_err()
                    || store.write(at, buffer).is_err()
                {
                    return Outcome::error();
                }
                at += (length / SECTOR_SIZE) as u64;
                outcome.bytes_written += length as u64;
            }
        }
    }
    outcome
}
