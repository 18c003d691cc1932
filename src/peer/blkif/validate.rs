//! The request validator: what a decoded request may do to this disk, or the error response its id gets.
//!
//! Rules, as Linux `xen-blkback` applies them (`blkback.c` `dispatch_rw_block_io`,
//! `dispatch_discard_io`, `xen_vbd_translate`) and `blkif.h` states them:
//! - READ and WRITE carry 1..=11 segments; FLUSH_DISKCACHE carries 0 (a pure flush) or 1..=11
//!   (a write preceded by a flush, which is how blkfront sends `REQ_PREFLUSH` with data).
//! - Each segment has `first_sect <= last_sect <= 7`.
//! - The sectors covered, from `sector_number` on, lie inside the disk, computed without
//!   overflow.
//! - Nothing but READ reaches a read-only disk.
//! - INDIRECT carries 1..=`max_indirect_segments` segments in at most 8 pages, and its
//!   `indirect_op` is READ or WRITE.
//! - DISCARD needs the feature; its range lies inside the disk; `BLKIF_DISCARD_SECURE` is refused
//!   (grantsvc does not advertise `discard-secure`).
//! - WRITE_BARRIER (not advertised), RESERVED_1 and unknown operations get `BLKIF_RSP_EOPNOTSUPP`.
//!
//! Any refusal is a [`Refusal`]: the id and operation to echo, the status, and the reason to
//! log. The ring goes on after it.

use super::indirect::pages_needed;
use super::request::{Decoded, Segment};
use crate::abi::blkif::{
    op, status, DISCARD_SECURE, MAX_INDIRECT_PAGES_PER_REQUEST, MAX_SEGMENTS_PER_REQUEST,
    SECTORS_PER_PAGE, SEGMENTS_PER_INDIRECT_PAGE,
};
use crate::ids::GrantRef;
use alloc::vec::Vec;
use core::fmt;

/// The indirect segment count Linux blkback offers (`MAX_INDIRECT_SEGMENTS`), and grantsvc too.
pub const DEFAULT_MAX_INDIRECT_SEGMENTS: u16 = 256;
/// The most any backend can accept: 8 pages of 512 segments.
pub const MAX_INDIRECT_SEGMENTS_LIMIT: u16 =
    (MAX_INDIRECT_PAGES_PER_REQUEST * SEGMENTS_PER_INDIRECT_PAGE) as u16;

/// What the validator knows of the disk and of the negotiated features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLimits {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub writable: bool,
    /// `feature-flush-cache` advertised.
    pub flush: bool,
    /// `feature-discard` advertised.
    pub discard: bool,
    /// `feature-max-indirect-segments` advertised (0: indirect requests are refused).
    pub max_indirect_segments: u16,
}

/// Why a request was refused; logged with the frontend's name by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalReason {
    /// The operation is not one grantsvc serves (or the feature was not advertised).
    Unsupported { operation: u8 },
    /// A data request with no segments.
    NoSegments,
    /// More segments than the request kind allows.
    TooManySegments { count: u16, limit: u16 },
    /// `first_sect > last_sect`, or `last_sect` past the page.
    BadSegment {
        index: u16,
        first_sect: u8,
        last_sect: u8,
    },
    /// The sector range does not fit in `u64`.
    RangeOverflow { sector: u64, sectors: u64 },
    /// The sector range ends past the disk.
    PastEnd {
        sector: u64,
        sectors: u64,
        disk_sectors: u64,
    },
    /// A write, flush or discard on a read-only disk.
    ReadOnly,
    /// An indirect request whose `indirect_op` is neither READ nor WRITE.
    BadIndirectOperation { indirect_op: u8 },
    /// A secure discard, which grantsvc does not advertise.
    SecureDiscard,
    /// A data grant or an indirect page did not map.
    GrantDidNotMap { gref: GrantRef },
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RefusalReason::Unsupported { operation } => {
                write!(formatter, "unsupported operation {operation}")
            }
            RefusalReason::NoSegments => formatter.write_str("data request without segments"),
            RefusalReason::TooManySegments { count, limit } => {
                write!(formatter, "{count} segments, at most {limit}")
            }
            RefusalReason::BadSegment {
                index,
                first_sect,
                last_sect,
            } => write!(
                formatter,
                "segment {index} covers sectors {first_sect}..={last_sect} of a 8-sector page"
            ),
            RefusalReason::RangeOverflow { sector, sectors } => {
                write!(formatter, "{sectors} sectors from {sector} overflow")
            }
            RefusalReason::PastEnd {
                sector,
                sectors,
                disk_sectors,
            } => write!(
                formatter,
                "{sectors} sectors from {sector} end past the disk's {disk_sectors}"
            ),
            RefusalReason::ReadOnly => formatter.write_str("write to a read-only disk"),
            RefusalReason::BadIndirectOperation { indirect_op } => {
                write!(formatter, "indirect request with operation {indirect_op}")
            }
            RefusalReason::SecureDiscard => formatter.write_str("secure discard not offered"),
            RefusalReason::GrantDidNotMap { gref } => write!(formatter, "grant {gref} did not map"),
        }
    }
}

/// A refused request: the response it gets and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub id: u64,
    /// The request's operation byte, echoed in the response.
    pub operation: u8,
    /// `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
    pub status: i16,
    pub reason: RefusalReason,
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "request {:#x} (operation {}) answered {}: {}",
            self.id, self.operation, self.status, self.reason
        )
    }
}

/// What a valid request does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read from `sector` into the segments' pages, in order.
    Read { sector: u64, segments: Vec<Segment> },
    /// Write the segments' pages to the disk from `sector`; with `flush_first`, flush first.
    Write {
        sector: u64,
        segments: Vec<Segment>,
        flush_first: bool,
    },
    /// Flush the disk's cache.
    Flush,
    /// Drop `sectors` sectors from `sector` (0 sectors: nothing to do).
    Discard { sector: u64, sectors: u64 },
}

/// A request that passed every check, with the id and operation its response echoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRequest {
    pub id: u64,
    pub operation: u8,
    pub action: Action,
}

impl ValidRequest {
    /// The data grants this request touches, in segment order (for one batched map).
    pub fn grants(&self) -> impl Iterator<Item = GrantRef> + '_ {
        let segments: &[Segment] = match &self.action {
            Action::Read { segments, .. } | Action::Write { segments, .. } => segments,
            Action::Flush | Action::Discard { .. } => &[],
        };
        segments.iter().map(|segment| segment.gref)
    }

    /// True when the data pages are written by grantsvc (a read from the disk).
    pub fn writes_pages(&self) -> bool {
        matches!(self.action, Action::Read { .. })
    }
}

/// An indirect request whose header passed: its segment pages must be copied, then
/// [`validate_indirect_segments`] finishes the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndirectHeader {
    pub id: u64,
    pub write: bool,
    pub sector: u64,
    pub nr_segments: u16,
    /// The granted segment pages actually used (`ceil(nr_segments / 512)` of the 8 slots).
    pub pages: heapless::Vec<GrantRef, MAX_INDIRECT_PAGES_PER_REQUEST>,
}

/// The first step's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    Ready(ValidRequest),
    NeedsIndirectPages(IndirectHeader),
}

fn refuse(id: u64, operation: u8, reason: RefusalReason) -> Refusal {
    let status = match reason {
        RefusalReason::Unsupported { .. } | RefusalReason::SecureDiscard => status::EOPNOTSUPP,
        _ => status::ERROR,
    };
    Refusal {
        id,
        operation,
        status,
        reason,
    }
}

/// Checks a decoded request against `limits`.
pub fn validate(decoded: &Decoded, limits: &DiskLimits) -> Result<Checked, Refusal> {
    match *decoded {
        Decoded::Direct {
            operation,
            id,
            sector,
            nr_segments,
            ref segments,
            ..
        } => {
            let fail = |reason| refuse(id, operation, reason);
            let flush = operation == op::FLUSH_DISKCACHE;
            if operation == op::WRITE_BARRIER || (flush && !limits.flush) {
                return Err(fail(RefusalReason::Unsupported { operation }));
            }
            if operation != op::READ && !limits.writable {
                return Err(fail(RefusalReason::ReadOnly));
            }
            if nr_segments == 0 {
                return if flush {
                    Ok(Checked::Ready(ValidRequest {
                        id,
                        operation,
                        action: Action::Flush,
                    }))
                } else {
                    Err(fail(RefusalReason::NoSegments))
                };
            }
            let used = segments.get(..usize::from(nr_segments)).ok_or(fail(
                RefusalReason::TooManySegments {
                    count: u16::from(nr_segments),
                    limit: MAX_SEGMENTS_PER_REQUEST as u16,
                },
            ))?;
            check_range(sector, used, limits).map_err(fail)?;
            let segments = used.to_vec();
            let action = if operation == op::READ {
                Action::Read { sector, segments }
            } else {
                Action::Write {
                    sector,
                    segments,
                    flush_first: flush,
                }
            };
            Ok(Checked::Ready(ValidRequest {
                id,
                operation,
                action,
            }))
        }
        Decoded::Discard {
            id,
            flag,
            sector,
            sectors,
            ..
        } => {
            let fail = |reason| refuse(id, op::DISCARD, reason);
            if !limits.discard {
                return Err(fail(RefusalReason::Unsupported {
                    operation: op::DISCARD,
                }));
            }
            if flag & DISCARD_SECURE != 0 {
                return Err(fail(RefusalReason::SecureDiscard));
            }
            if !limits.writable {
                return Err(fail(RefusalReason::ReadOnly));
            }
            check_sectors(sector, sectors, limits.sectors).map_err(fail)?;
            Ok(Checked::Ready(ValidRequest {
                id,
                operation: op::DISCARD,
                action: Action::Discard { sector, sectors },
            }))
        }
        Decoded::Indirect {
            id,
            indirect_op,
            nr_segments,
            sector,
            ref pages,
            ..
        } => {
            let fail = |reason| refuse(id, op::INDIRECT, reason);
            if limits.max_indirect_segments == 0 {
                return Err(fail(RefusalReason::Unsupported {
                    operation: op::INDIRECT,
                }));
            }
            let write = match indirect_op {
                op::READ => false,
                op::WRITE => true,
                _ => return Err(fail(RefusalReason::BadIndirectOperation { indirect_op })),
            };
            if write && !limits.writable {
                return Err(fail(RefusalReason::ReadOnly));
            }
            if nr_segments == 0 {
                return Err(fail(RefusalReason::NoSegments));
            }
            let limit = limits
                .max_indirect_segments
                .min(MAX_INDIRECT_SEGMENTS_LIMIT);
            if nr_segments > limit {
                return Err(fail(RefusalReason::TooManySegments {
                    count: nr_segments,
                    limit,
                }));
            }
            let used = pages.get(..pages_needed(nr_segments)).unwrap_or(&[]);
            Ok(Checked::NeedsIndirectPages(IndirectHeader {
                id,
                write,
                sector,
                nr_segments,
                pages: heapless::Vec::from_slice(used).unwrap_or_default(),
            }))
        }
        Decoded::Other { id, operation } => Err(refuse(
            id,
            operation,
            RefusalReason::Unsupported { operation },
        )),
    }
}

/// Finishes an indirect request once its segments have been copied out of its pages.
pub fn validate_indirect_segments(
    header: &IndirectHeader,
    segments: Vec<Segment>,
    limits: &DiskLimits,
) -> Result<ValidRequest, Refusal> {
    let fail = |reason| refuse(header.id, op::INDIRECT, reason);
    if segments.len() != usize::from(header.nr_segments) {
        return Err(fail(RefusalReason::TooManySegments {
            count: u16::try_from(segments.len()).unwrap_or(u16::MAX),
            limit: header.nr_segments,
        }));
    }
    check_range(header.sector, &segments, limits).map_err(fail)?;
    let action = if header.write {
        Action::Write {
            sector: header.sector,
            segments,
            flush_first: false,
        }
    } else {
        Action::Read {
            sector: header.sector,
            segments,
        }
    };
    Ok(ValidRequest {
        id: header.id,
        operation: op::INDIRECT,
        action,
    })
}

/// Checks each segment and that the sectors they cover, from `sector`, lie inside the disk.
fn check_range(
    sector: u64,
    segments: &[Segment],
    limits: &DiskLimits,
) -> Result<(), RefusalReason> {
    let mut total: u64 = 0;
    for (index, segment) in segments.iter().enumerate() {
        if segment.first_sect > segment.last_sect || segment.last_sect >= SECTORS_PER_PAGE {
            return Err(RefusalReason::BadSegment {
                index: u16::try_from(index).unwrap_or(u16::MAX),
                first_sect: segment.first_sect,
                last_sect: segment.last_sect,
            });
        }
        // At most 8 sectors per segment and 4096 segments: no overflow in u64.
        total += u64::from(segment.last_sect - segment.first_sect) + 1;
    }
    check_sectors(sector, total, limits.sectors)
}

/// Checks that `sectors` sectors from `sector` fit in a disk of `disk_sectors`.
fn check_sectors(sector: u64, sectors: u64, disk_sectors: u64) -> Result<(), RefusalReason> {
    let end = sector
        .checked_add(sectors)
        .ok_or(RefusalReason::RangeOverflow { sector, sectors })?;
    if end > disk_sectors {
        return Err(RefusalReason::PastEnd {
            sector,
            sectors,
            disk_sectors,
        });
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
