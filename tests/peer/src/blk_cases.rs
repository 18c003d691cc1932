//! The cases of `blk-hostile`: each bad thing a blkif frontend can do, the requests it sends, and what grantsvc must answer.
//!
//! The expectations are the and Linux blkback's, not read from grantsvc's code: a bad
//! request gets `BLKIF_RSP_ERROR` for its id (`BLKIF_RSP_EOPNOTSUPP` for an operation that is not
//! served) and the ring goes on; a ring that can no longer be trusted (`req_prod` past a ring
//! ahead) or bad negotiation nodes end the device with an `error` node. The host tests
//! (`blk_loopback_tests`) check that grantsvc's own ring and validator agree with them.

use crate::blk_nodes::{NodeGarbage, UNGRANTED_REF};
use grantsvc::abi::blkif::{op, status, MAX_INDIRECT_PAGES_PER_REQUEST, SECTORS_PER_PAGE};
use grantsvc::ids::GrantRef;
use grantsvc::peer::blkif::request::{encode, RequestBytes, Segment};

/// The id of the first request of a case: recognisable in grantsvc's log lines.
pub const ID_BASE: u64 = 0xb10c_0000_0000_0000;

/// The segment count of the oversized indirect request: 8 full pages of segments.
pub const INDIRECT_SEGMENTS: u16 = 4096;

/// One blk-hostile case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    SegmentsNone,
    SegmentsTooMany,
    FirstAfterLast,
    LastPastPage,
    PastEnd,
    RangeOverflow,
    WriteReadOnlyDisk,
    UnknownOperation,
    ReservedOperation,
    Barrier,
    UngrantedGrant,
    ReadOnlyGrant,
    Indirect4096,
    /// `req_prod` set past a ring ahead of the responses.
    ProducerJump,
    /// A valid request and a bad one alternate in the same published slot until answered.
    Rewritten,
    /// Many notifications, with and without requests.
    EventStorm,
    Node(NodeGarbage),
}

/// The data pages a case may name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grants {
    /// Two pages granted writable.
    pub data: [GrantRef; 2],
    /// A page granted read-only (a READ into it cannot map it writable).
    pub read_only: GrantRef,
    /// Eight writable pages, filled with valid segments for the indirect case.
    pub indirect: Vec<GrantRef>,
}

/// One request of a case and the response it must get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub request: RequestBytes,
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

/// What a case must end in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every request answered as expected, then good I/O still works on the same ring.
    Answered,
    /// The device ends: backend Closing or Closed with an error node.
    DeviceEnded,
}

fn whole_page(gref: GrantRef) -> Segment {
    Segment {
        gref,
        first_sect: 0,
        last_sect: SECTORS_PER_PAGE - 1,
    }
}

impl Case {
    /// Every request case, then the ring and node cases.
    pub fn all() -> Vec<Case> {
        let mut cases = vec![
            Case::SegmentsNone,
            Case::SegmentsTooMany,
            Case::FirstAfterLast,
            Case::LastPastPage,
            Case::PastEnd,
            Case::RangeOverflow,
            Case::WriteReadOnlyDisk,
            Case::UnknownOperation,
            Case::ReservedOperation,
            Case::Barrier,
            Case::UngrantedGrant,
            Case::ReadOnlyGrant,
            Case::Indirect4096,
            Case::ProducerJump,
            Case::Rewritten,
            Case::EventStorm,
        ];
        cases.extend(NodeGarbage::ALL.map(Case::Node));
        cases
    }

    pub fn name(self) -> &'static str {
        match self {
            Case::SegmentsNone => "segments-none",
            Case::SegmentsTooMany => "segments-too-many",
            Case::FirstAfterLast => "first-after-last",
            Case::LastPastPage => "last-past-page",
            Case::PastEnd => "past-end",
            Case::RangeOverflow => "range-overflow",
            Case::WriteReadOnlyDisk => "write-read-only-disk",
            Case::UnknownOperation => "unknown-operation",
            Case::ReservedOperation => "reserved-operation",
            Case::Barrier => "barrier",
            Case::UngrantedGrant => "ungranted-grant",
            Case::ReadOnlyGrant => "read-only-grant",
            Case::Indirect4096 => "indirect-4096",
            Case::ProducerJump => "producer-jump",
            Case::Rewritten => "rewritten",
            Case::EventStorm => "event-storm",
            Case::Node(kind) => kind.name(),
        }
    }

    pub fn parse(name: &str) -> Result<Case, String> {
        Case::all()
            .into_iter()
            .find(|case| case.name() == name)
            .ok_or_else(|| format!("unknown case '{name}'"))
    }

    pub fn outcome(self) -> Outcome {
        match self {
            Case::ProducerJump | Case::Node(_) => Outcome::DeviceEnded,
            _ => Outcome::Answered,
        }
    }

    /// The disk is attached read-only for this case.
    pub fn read_only_disk(self) -> bool {
        self == Case::WriteReadOnlyDisk
    }

    /// The bad requests of a request case, on a disk of `sectors` (none for the other cases).
    pub fn requests(self, grants: &Grants, sectors: u64) -> Vec<Expected> {
        let page = whole_page(grants.data[0]);
        let id = ID_BASE;
        let error = |request: RequestBytes, operation: u8| Expected {
            id: request.id(),
            request,
            operation,
            status: status::ERROR,
        };
        let unsupported = |operation: u8| Expected {
            request: encode::direct(operation, id, 0, &[page]),
            id,
            operation,
            status: status::EOPNOTSUPP,
        };
        match self {
            Case::SegmentsNone => vec![
                error(encode::direct(op::READ, id, 0, &[]), op::READ),
                error(encode::direct(op::WRITE, id + 1, 0, &[]), op::WRITE),
            ],
            Case::SegmentsTooMany => vec![
                error(encode::direct(op::READ, id, 0, &[page; 12]), op::READ),
                error(
                    encode::direct(op::WRITE, id + 1, 0, &[page; 255]),
                    op::WRITE,
                ),
            ],
            Case::FirstAfterLast => {
                let backwards = Segment {
                    first_sect: 5,
                    last_sect: 2,
                    ..page
                };
                vec![
                    error(encode::direct(op::READ, id, 0, &[backwards]), op::READ),
                    // The bad segment second, after a good one.
                    error(
                        encode::direct(op::WRITE, id + 1, 0, &[page, backwards]),
                        op::WRITE,
                    ),
                ]
            }
            Case::LastPastPage => {
                let past = Segment {
                    first_sect: 0,
                    last_sect: SECTORS_PER_PAGE,
                    ..page
                };
                let far = Segment {
                    first_sect: 200,
                    last_sect: 255,
                    ..page
                };
                vec![
                    error(encode::direct(op::READ, id, 0, &[past]), op::READ),
                    error(encode::direct(op::WRITE, id + 1, 0, &[far]), op::WRITE),
                ]
            }
            Case::PastEnd => vec![
                // The last 4 sectors and 4 more.
                error(encode::direct(op::READ, id, sectors - 4, &[page]), op::READ),
                error(
                    encode::direct(op::WRITE, id + 1, sectors, &[page]),
                    op::WRITE,
                ),
                error(encode::discard(id + 2, 0, sectors - 8, 16), op::DISCARD),
            ],
            Case::RangeOverflow => vec![
                error(
                    encode::direct(op::READ, id, u64::MAX - 3, &[page]),
                    op::READ,
                ),
                error(encode::discard(id + 1, 0, u64::MAX - 7, 16), op::DISCARD),
                error(encode::discard(id + 2, 0, 8, u64::MAX), op::DISCARD),
            ],
            Case::WriteReadOnlyDisk => vec![
                error(encode::direct(op::WRITE, id, 0, &[page]), op::WRITE),
                // A read-only disk offers no `feature-discard`: not served at all.
                Expected {
                    request: encode::discard(id + 1, 0, 0, 8),
                    id: id + 1,
                    operation: op::DISCARD,
                    status: status::EOPNOTSUPP,
                },
            ],
            Case::UnknownOperation => vec![unsupported(200)],
            Case::ReservedOperation => vec![unsupported(op::RESERVED_1)],
            Case::Barrier => vec![unsupported(op::WRITE_BARRIER)],
            Case::UngrantedGrant => {
                let ungranted = whole_page(GrantRef::new(UNGRANTED_REF));
                vec![
                    error(encode::direct(op::READ, id, 0, &[ungranted]), op::READ),
                    // A good page first: its mapping must be undone too.
                    error(
                        encode::direct(op::WRITE, id + 1, 0, &[page, ungranted]),
                        op::WRITE,
                    ),
                ]
            }
            Case::ReadOnlyGrant => vec![error(
                encode::direct(op::READ, id, 0, &[whole_page(grants.read_only)]),
                op::READ,
            )],
            // The response echoes the inner operation, as Linux blkback's does: blkfront
            // refuses a response whose operation is INDIRECT.
            Case::Indirect4096 => vec![
                error(
                    encode::indirect(op::READ, id, 0, INDIRECT_SEGMENTS, &grants.indirect),
                    op::READ,
                ),
                error(
                    encode::indirect(op::WRITE, id + 1, 0, INDIRECT_SEGMENTS, &grants.indirect),
                    op::WRITE,
                ),
            ],
            Case::ProducerJump | Case::Rewritten | Case::EventStorm | Case::Node(_) => Vec::new(),
        }
    }
}

/// The segments written into each indirect page: every one a valid whole page of `data`, so
/// that only the count is wrong.
pub fn indirect_page_segments(data: GrantRef) -> Vec<u8> {
    let segment = encode::segment_bytes(&whole_page(data));
    segment.repeat(grantsvc::abi::blkif::SEGMENTS_PER_INDIRECT_PAGE)
}

const _: () = assert!(
    INDIRECT_SEGMENTS as usize
        == MAX_INDIRECT_PAGES_PER_REQUEST * grantsvc::abi::blkif::SEGMENTS_PER_INDIRECT_PAGE
);

/// The two versions the rewritten case alternates in one slot. They differ in one byte only,
/// the first segment's `last_sect` ([`FLIPPED_BYTE`]), so that every state the slot passes
/// through is one of them (a multi-byte rewrite would pass through valid mixtures): a valid
/// write of the whole page `data` at `sector`, and the same write ending at sector 8 of the
/// page. A backend that copies the slot once answers one of them whole: OKAY with the page at
/// `sector` and sector `sector + 8` untouched, or ERROR with nothing written. Anything else
/// (data past the 8 sectors, or data written and ERROR) means it read the slot twice.
pub fn rewritten_pair(data: GrantRef, id: u64, sector: u64) -> [Expected; 2] {
    let good = whole_page(data);
    let bad = Segment {
        last_sect: SECTORS_PER_PAGE,
        ..good
    };
    [
        Expected {
            request: encode::direct(op::WRITE, id, sector, &[good]),
            id,
            operation: op::WRITE,
            status: status::OKAY,
        },
        Expected {
            request: encode::direct(op::WRITE, id, sector, &[bad]),
            id,
            operation: op::WRITE,
            status: status::ERROR,
        },
    ]
}

/// The byte of a request slot the rewritten case flips: `seg[0].last_sect`.
pub const FLIPPED_BYTE: usize = std::mem::offset_of!(grantsvc::abi::blkif::Request, seg)
    + std::mem::offset_of!(grantsvc::abi::blkif::RequestSegment, last_sect);

// The flipping never touches the bytes the response is written over.
const _: () = assert!(FLIPPED_BYTE >= grantsvc::abi::blkif::RESPONSE_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_are_unique() {
        let all = Case::all();
        for case in &all {
            assert_eq!(Case::parse(case.name()), Ok(*case));
        }
        let mut names: Vec<_> = all.iter().map(|case| case.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
    }

    #[test]
    fn the_rewritten_versions_differ_in_one_byte_past_the_response() {
        let [good, bad] = rewritten_pair(GrantRef::new(9), 77, 8);
        let differing: Vec<usize> = (0..good.request.0.len())
            .filter(|&at| good.request.0[at] != bad.request.0[at])
            .collect();
        assert_eq!(differing, [FLIPPED_BYTE]);
        assert_eq!(FLIPPED_BYTE, 29);
    }

    #[test]
    fn an_indirect_page_is_512_whole_page_segments() {
        let page = indirect_page_segments(GrantRef::new(0x0102_0304));
        assert_eq!(page.len(), 4096);
        assert_eq!(page[..8], [4, 3, 2, 1, 0, 7, 0, 0]);
        assert_eq!(page[4088..], [4, 3, 2, 1, 0, 7, 0, 0]);
    }
}
