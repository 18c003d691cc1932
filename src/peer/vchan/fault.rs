//! Faults a vchan server can cause through its shared page: each one ends that server's session.

use crate::shared_memory::OutOfBounds;
use core::fmt;

/// Which of the two rings a fault concerns, named from grantsvc's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingSide {
    /// `left`: grantsvc writes, the server reads.
    Left,
    /// `right`: the server writes, grantsvc reads.
    Right,
}

impl fmt::Display for RingSide {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            RingSide::Left => "left (client-to-server) ring",
            RingSide::Right => "right (server-to-client) ring",
        })
    }
}

/// A violation of the vchan protocol found in the shared page or its rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VchanFault {
    /// A ring order outside `10..=20`.
    OrderOutOfRange { ring: RingSide, order: u16 },
    /// Both rings are in the shared page with the same order, so they would overlap.
    InPageRingsOverlap { order: u16 },
    /// The grant list would run into an in-page ring or past the end of the shared page.
    GrantListTooLong { grants: usize, limit: usize },
    /// The peer's index says more bytes are outstanding than the ring holds.
    IndexBeyondRing {
        ring: RingSide,
        ours: u32,
        theirs: u32,
        size: u32,
    },
    /// The peer's producer index moved backwards.
    ProducerMovedBackwards { previous: u32, now: u32 },
    /// `srv_live` holds a value the protocol does not define.
    InvalidLiveByte { value: u8 },
    /// A mapped region is smaller than the ring or page it must hold.
    RegionTooSmall { needed: usize, size: usize },
    /// The regions handed over do not match the layout (a granted ring without pages, or the reverse).
    RegionsMismatchLayout,
    /// An access outside a mapped region (a local bug, reported rather than panicking).
    OutOfBounds(OutOfBounds),
}

impl From<OutOfBounds> for VchanFault {
    fn from(error: OutOfBounds) -> Self {
        VchanFault::OutOfBounds(error)
    }
}

impl fmt::Display for VchanFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VchanFault::OrderOutOfRange { ring, order } => {
                write!(formatter, "{ring} has order {order}, outside 10..=20")
            }
            VchanFault::InPageRingsOverlap { order } => {
                write!(
                    formatter,
                    "both rings are in the shared page with order {order}"
                )
            }
            VchanFault::GrantListTooLong { grants, limit } => write!(
                formatter,
                "grant list of {grants} refs runs past byte {limit} of the shared page"
            ),
            VchanFault::IndexBeyondRing {
                ring,
                ours,
                theirs,
                size,
            } => write!(
                formatter,
                "{ring} index {theirs} is beyond the ring (our index {ours}, size {size})"
            ),
            VchanFault::ProducerMovedBackwards { previous, now } => write!(
                formatter,
                "producer index moved backwards from {previous} to {now}"
            ),
            VchanFault::InvalidLiveByte { value } => {
                write!(formatter, "srv_live holds undefined value {value}")
            }
            VchanFault::RegionTooSmall { needed, size } => write!(
                formatter,
                "mapped region of {size} bytes is smaller than the {needed} bytes needed"
            ),
            VchanFault::RegionsMismatchLayout => {
                formatter.write_str("mapped ring regions do not match the shared page's layout")
            }
            VchanFault::OutOfBounds(error) => write!(formatter, "{error}"),
        }
    }
}
