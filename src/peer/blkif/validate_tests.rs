//! Tests of the request validator: every rule of `validate.rs` accepted at its bound and refused one past it.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::peer::blkif::request::{decode, encode, grant_ref};

const DISK: DiskLimits = DiskLimits {
    sectors: 1024,
    writable: true,
    flush: true,
    discard: true,
    max_indirect_segments: DEFAULT_MAX_INDIRECT_SEGMENTS,
};

fn segment(first_sect: u8, last_sect: u8) -> Segment {
    Segment {
        gref: grant_ref(9),
        first_sect,
        last_sect,
    }
}

fn check(
    bytes: super::super::request::RequestBytes,
    limits: &DiskLimits,
) -> Result<Checked, Refusal> {
    validate(&decode(&bytes), limits)
}

fn reason(result: Result<Checked, Refusal>) -> (i16, RefusalReason) {
    let refusal = result.unwrap_err();
    (refusal.status, refusal.reason)
}

#[test]
fn reads_and_writes_within_the_disk_pass() {
    let full = [segment(0, 7); 11];
    let checked = check(encode::direct(op::READ, 1, 1024 - 88, &full), &DISK).unwrap();
    let Checked::Ready(request) = checked else {
        panic!()
    };
    assert_eq!(request.id, 1);
    assert_eq!(request.grants().count(), 11);
    assert!(request.writes_pages());
    let checked = check(encode::direct(op::WRITE, 2, 0, &[segment(3, 3)]), &DISK).unwrap();
    assert_eq!(
        checked,
        Checked::Ready(ValidRequest {
            id: 2,
            operation: op::WRITE,
            action: Action::Write {
                sector: 0,
                segments: alloc::vec![segment(3, 3)],
                flush_first: false
            }
        })
    );
}

#[test]
fn segment_counts_are_1_to_11() {
    assert_eq!(
        reason(check(encode::direct(op::READ, 1, 0, &[]), &DISK)),
        (status::ERROR, RefusalReason::NoSegments)
    );
    let mut bytes = encode::direct(op::READ, 1, 0, &[segment(0, 7); 11]);
    bytes.0[1] = 12;
    assert_eq!(
        reason(check(bytes, &DISK)),
        (
            status::ERROR,
            RefusalReason::TooManySegments {
                count: 12,
                limit: 11
            }
        )
    );
    bytes.0[1] = 255;
    assert!(check(bytes, &DISK).is_err());
}

#[test]
fn segments_stay_inside_their_page() {
    for (first, last) in [(4, 3), (0, 8), (8, 8), (255, 255)] {
        assert_eq!(
            reason(check(
                encode::direct(op::READ, 1, 0, &[segment(0, 7), segment(first, last)]),
                &DISK
            )),
            (
                status::ERROR,
                RefusalReason::BadSegment {
                    index: 1,
                    first_sect: first,
                    last_sect: last
                }
            )
        );
    }
}

#[test]
fn the_range_must_end_inside_the_disk_without_overflow() {
    // 1017 + 8 sectors ends at 1025 > 1024.
    assert_eq!(
        reason(check(
            encode::direct(op::WRITE, 1, 1017, &[segment(0, 7)]),
            &DISK
        )),
        (
            status::ERROR,
            RefusalReason::PastEnd {
                sector: 1017,
                sectors: 8,
                disk_sectors: 1024
            }
        )
    );
    assert!(check(encode::direct(op::WRITE, 1, 1016, &[segment(0, 7)]), &DISK).is_ok());
    assert_eq!(
        reason(check(
            encode::direct(op::READ, 1, u64::MAX - 3, &[segment(0, 7)]),
            &DISK
        )),
        (
            status::ERROR,
            RefusalReason::RangeOverflow {
                sector: u64::MAX - 3,
                sectors: 8
            }
        )
    );
}

#[test]
fn a_read_only_disk_takes_only_reads() {
    let read_only = DiskLimits {
        writable: false,
        ..DISK
    };
    assert!(check(encode::direct(op::READ, 1, 0, &[segment(0, 7)]), &read_only).is_ok());
    for bytes in [
        encode::direct(op::WRITE, 1, 0, &[segment(0, 7)]),
        encode::direct(op::FLUSH_DISKCACHE, 1, 0, &[]),
        encode::discard(1, 0, 0, 8),
        encode::indirect(op::WRITE, 1, 0, 1, &[grant_ref(1)]),
    ] {
        assert_eq!(
            reason(check(bytes, &read_only)),
            (status::ERROR, RefusalReason::ReadOnly)
        );
    }
}

#[test]
fn flushes_are_empty_or_carry_a_write() {
    assert_eq!(
        check(encode::direct(op::FLUSH_DISKCACHE, 4, 0, &[]), &DISK).unwrap(),
        Checked::Ready(ValidRequest {
            id: 4,
            operation: op::FLUSH_DISKCACHE,
            action: Action::Flush
        })
    );
    let Checked::Ready(request) = check(
        encode::direct(op::FLUSH_DISKCACHE, 4, 8, &[segment(0, 7)]),
        &DISK,
    )
    .unwrap() else {
        panic!()
    };
    assert!(matches!(
        request.action,
        Action::Write {
            flush_first: true,
            sector: 8,
            ..
        }
    ));
    let no_flush = DiskLimits {
        flush: false,
        ..DISK
    };
    assert_eq!(
        reason(check(
            encode::direct(op::FLUSH_DISKCACHE, 4, 0, &[]),
            &no_flush
        )),
        (
            status::EOPNOTSUPP,
            RefusalReason::Unsupported {
                operation: op::FLUSH_DISKCACHE
            }
        )
    );
}

#[test]
fn unknown_operations_and_barriers_are_not_supported_and_keep_their_id() {
    for operation in [op::WRITE_BARRIER, op::RESERVED_1, 7, 200, 255] {
        let mut bytes = encode::direct(op::READ, 0xfeed, 0, &[segment(0, 7)]);
        bytes.0[0] = operation;
        let refusal = check(bytes, &DISK).unwrap_err();
        assert_eq!(
            (refusal.id, refusal.operation, refusal.status),
            (0xfeed, operation, status::EOPNOTSUPP)
        );
    }
}

#[test]
fn discards_are_range_checked_and_never_secure() {
    assert!(check(encode::discard(1, 0, 1000, 24), &DISK).is_ok());
    assert!(check(encode::discard(1, 0, 1024, 0), &DISK).is_ok());
    assert_eq!(
        reason(check(encode::discard(1, 0, 1000, 25), &DISK)),
        (
            status::ERROR,
            RefusalReason::PastEnd {
                sector: 1000,
                sectors: 25,
                disk_sectors: 1024
            }
        )
    );
    assert_eq!(
        reason(check(encode::discard(1, 0, 2, u64::MAX), &DISK)),
        (
            status::ERROR,
            RefusalReason::RangeOverflow {
                sector: 2,
                sectors: u64::MAX
            }
        )
    );
    assert_eq!(
        reason(check(encode::discard(1, DISCARD_SECURE, 0, 8), &DISK)),
        (status::EOPNOTSUPP, RefusalReason::SecureDiscard)
    );
    let no_discard = DiskLimits {
        discard: false,
        ..DISK
    };
    assert_eq!(
        reason(check(encode::discard(1, 0, 0, 8), &no_discard)),
        (
            status::EOPNOTSUPP,
            RefusalReason::Unsupported {
                operation: op::DISCARD
            }
        )
    );
}

#[test]
fn indirect_headers_are_bounded_before_any_page_is_touched() {
    let pages = [grant_ref(20), grant_ref(21), grant_ref(22)];
    let Checked::NeedsIndirectPages(header) =
        check(encode::indirect(op::WRITE, 3, 0, 256, &pages), &DISK).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (header.write, header.nr_segments, header.pages.len()),
        (true, 256, 1)
    );
    assert_eq!(
        reason(check(encode::indirect(op::READ, 3, 0, 257, &pages), &DISK)),
        (
            status::ERROR,
            RefusalReason::TooManySegments {
                count: 257,
                limit: 256
            }
        )
    );
    assert_eq!(
        reason(check(encode::indirect(op::READ, 3, 0, 4096, &pages), &DISK)),
        (
            status::ERROR,
            RefusalReason::TooManySegments {
                count: 4096,
                limit: 256
            }
        )
    );
    assert_eq!(
        reason(check(encode::indirect(op::READ, 3, 0, 0, &pages), &DISK)),
        (status::ERROR, RefusalReason::NoSegments)
    );
    assert_eq!(
        reason(check(
            encode::indirect(op::FLUSH_DISKCACHE, 3, 0, 1, &pages),
            &DISK
        )),
        (
            status::ERROR,
            RefusalReason::BadIndirectOperation {
                indirect_op: op::FLUSH_DISKCACHE
            }
        )
    );
    let wide = DiskLimits {
        max_indirect_segments: MAX_INDIRECT_SEGMENTS_LIMIT,
        ..DISK
    };
    let Checked::NeedsIndirectPages(header) =
        check(encode::indirect(op::READ, 3, 0, 1025, &pages), &wide).unwrap()
    else {
        panic!()
    };
    assert_eq!(header.pages.as_slice(), &pages);
    let none = DiskLimits {
        max_indirect_segments: 0,
        ..DISK
    };
    assert_eq!(
        reason(check(encode::indirect(op::READ, 3, 0, 1, &pages), &none)),
        (
            status::EOPNOTSUPP,
            RefusalReason::Unsupported {
                operation: op::INDIRECT
            }
        )
    );
}

#[test]
fn indirect_segments_are_checked_like_direct_ones() {
    let header = IndirectHeader {
        id: 8,
        write: false,
        sector: 1024 - 16,
        nr_segments: 2,
        pages: heapless::Vec::from_slice(&[grant_ref(1)]).unwrap(),
    };
    let good = alloc::vec![segment(0, 7), segment(0, 7)];
    assert!(validate_indirect_segments(&header, good, &DISK).is_ok());
    let past_end = alloc::vec![segment(0, 7), segment(0, 7), segment(0, 0)];
    let header_three = IndirectHeader {
        nr_segments: 3,
        ..header.clone()
    };
    assert!(matches!(
        validate_indirect_segments(&header_three, past_end, &DISK)
            .unwrap_err()
            .reason,
        RefusalReason::PastEnd { .. }
    ));
    let bad = alloc::vec![segment(0, 7), segment(7, 6)];
    assert!(matches!(
        validate_indirect_segments(&header, bad, &DISK)
            .unwrap_err()
            .reason,
        RefusalReason::BadSegment { index: 1, .. }
    ));
}

#[test]
fn a_refusal_reads_as_a_log_line() {
    use alloc::string::ToString;
    let refusal = check(
        encode::direct(op::WRITE, 0x2a, 1020, &[segment(0, 7)]),
        &DISK,
    )
    .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "request 0x2a (operation 1) answered -1: 8 sectors from 1020 end past the disk's 1024"
    );
}
