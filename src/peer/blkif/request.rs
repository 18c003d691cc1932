//! Decoding of one request slot, from the private copy taken off the ring, into a typed value (no validation yet).
//!
//! The input is always the 112-byte copy [`ring::BackRing`](super::ring::BackRing) made, never
//! the shared slot, so every field is read from memory the frontend can no longer change
//! (XSA-155). Decoding cannot fail: every byte pattern is some request, and whether it is a good
//! one is [`validate`](super::validate)'s question. Field offsets come from the `repr(C)` types in
//! [`crate::abi::blkif`], whose layout is tested against Xen's header.

use crate::abi::blkif::{
    self as abi, op, RequestDiscard, RequestIndirect, RequestSegment,
    MAX_INDIRECT_PAGES_PER_REQUEST, MAX_SEGMENTS_PER_REQUEST, REQUEST_SIZE,
};
use crate::ids::GrantRef;
use core::mem::{offset_of, size_of};

/// A request slot copied off the ring: private memory, read as often as needed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestBytes(pub [u8; REQUEST_SIZE]);

impl core::fmt::Debug for RequestBytes {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "RequestBytes({:02x?})", &self.0)
    }
}

impl RequestBytes {
    fn u8_at(&self, offset: usize) -> u8 {
        self.0.get(offset).copied().unwrap_or(0)
    }

    fn u16_at(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.array_at(offset))
    }

    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.array_at(offset))
    }

    fn u64_at(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.array_at(offset))
    }

    /// `N` bytes at `offset`; the offsets used are compile-time constants inside the slot, so
    /// the zero fallback is never taken.
    fn array_at<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut bytes = [0; N];
        if let Some(source) = offset
            .checked_add(N)
            .and_then(|end| self.0.get(offset..end))
        {
            bytes.copy_from_slice(source);
        }
        bytes
    }

    /// The operation byte, at offset 0 in every layout.
    pub fn operation(&self) -> u8 {
        self.u8_at(offset_of!(abi::Request, operation))
    }

    /// The frontend's id, at offset 8 in every layout: what any response, even a refusal, echoes.
    pub fn id(&self) -> u64 {
        self.u64_at(offset_of!(abi::Request, id))
    }
}

/// One segment: sectors `first_sect..=last_sect` of the page granted by `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub gref: GrantRef,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// Decodes the 8-byte `struct blkif_request_segment` in `bytes`.
    pub fn from_bytes(bytes: [u8; size_of::<RequestSegment>()]) -> Segment {
        let [g0, g1, g2, g3, first_sect, last_sect, _, _] = bytes;
        Segment {
            gref: grant_ref(u32::from_le_bytes([g0, g1, g2, g3])),
            first_sect,
            last_sect,
        }
    }
}

/// The one place a raw grant reference from the ring becomes a [`GrantRef`].
pub fn grant_ref(raw: u32) -> GrantRef {
    GrantRef::new(raw)
}

/// A request slot read according to its operation byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// READ, WRITE, FLUSH_DISKCACHE or WRITE_BARRIER: `struct blkif_request`.
    Direct {
        operation: u8,
        id: u64,
        handle: u16,
        sector: u64,
        /// `nr_segments` as written (may exceed the 11 slots; the validator refuses that).
        nr_segments: u8,
        /// All 11 segment slots; only the first `nr_segments` mean anything.
        segments: [Segment; MAX_SEGMENTS_PER_REQUEST],
    },
    /// DISCARD: `struct blkif_request_discard`.
    Discard {
        id: u64,
        handle: u16,
        flag: u8,
        sector: u64,
        sectors: u64,
    },
    /// INDIRECT: `struct blkif_request_indirect`; the segments live in granted pages.
    Indirect {
        id: u64,
        handle: u16,
        indirect_op: u8,
        nr_segments: u16,
        sector: u64,
        pages: [GrantRef; MAX_INDIRECT_PAGES_PER_REQUEST],
    },
    /// Any other operation byte: answered `BLKIF_RSP_EOPNOTSUPP`.
    Other { id: u64, operation: u8 },
}

impl Decoded {
    /// The id every response to this request echoes.
    pub fn id(&self) -> u64 {
        match *self {
            Decoded::Direct { id, .. }
            | Decoded::Discard { id, .. }
            | Decoded::Indirect { id, .. }
            | Decoded::Other { id, .. } => id,
        }
    }
}

/// Reads the private copy `bytes` as the layout its operation byte names.
pub fn decode(bytes: &RequestBytes) -> Decoded {
    let operation = bytes.operation();
    let id = bytes.id();
    match operation {
        op::READ | op::WRITE | op::FLUSH_DISKCACHE | op::WRITE_BARRIER => {
            let base = offset_of!(abi::Request, seg);
            let segments = core::array::from_fn(|index| {
                Segment::from_bytes(bytes.array_at(base + index * size_of::<RequestSegment>()))
            });
            Decoded::Direct {
                operation,
                id,
                handle: bytes.u16_at(offset_of!(abi::Request, handle)),
                sector: bytes.u64_at(offset_of!(abi::Request, sector_number)),
                nr_segments: bytes.u8_at(offset_of!(abi::Request, nr_segments)),
                segments,
            }
        }
        op::DISCARD => Decoded::Discard {
            id,
            handle: bytes.u16_at(offset_of!(RequestDiscard, handle)),
            flag: bytes.u8_at(offset_of!(RequestDiscard, flag)),
            sector: bytes.u64_at(offset_of!(RequestDiscard, sector_number)),
            sectors: bytes.u64_at(offset_of!(RequestDiscard, nr_sectors)),
        },
        op::INDIRECT => {
            let base = offset_of!(RequestIndirect, indirect_grefs);
            let pages = core::array::from_fn(|index| {
                grant_ref(bytes.u32_at(base + index * size_of::<u32>()))
            });
            Decoded::Indirect {
                id,
                handle: bytes.u16_at(offset_of!(RequestIndirect, handle)),
                indirect_op: bytes.u8_at(offset_of!(RequestIndirect, indirect_op)),
                nr_segments: bytes.u16_at(offset_of!(RequestIndirect, nr_segments)),
                sector: bytes.u64_at(offset_of!(RequestIndirect, sector_number)),
                pages,
            }
        }
        _ => Decoded::Other { id, operation },
    }
}

/// Encodes requests the way a frontend does: for the model frontend of the tests and the fuzz
/// target's seeds, so that they build slots from the same offsets the decoder reads.
pub mod encode {
    use super::*;

    fn put(bytes: &mut [u8; REQUEST_SIZE], offset: usize, value: &[u8]) {
        if let Some(target) = offset
            .checked_add(value.len())
            .and_then(|end| bytes.get_mut(offset..end))
        {
            target.copy_from_slice(value);
        }
    }

    /// A direct request (`nr_segments` = `segments.len()`, at most 11 are written).
    pub fn direct(operation: u8, id: u64, sector: u64, segments: &[Segment]) -> RequestBytes {
        let mut bytes = [0; REQUEST_SIZE];
        put(
            &mut bytes,
            offset_of!(abi::Request, operation),
            &[operation],
        );
        let count = u8::try_from(segments.len()).unwrap_or(u8::MAX);
        put(&mut bytes, offset_of!(abi::Request, nr_segments), &[count]);
        put(&mut bytes, offset_of!(abi::Request, id), &id.to_le_bytes());
        put(
            &mut bytes,
            offset_of!(abi::Request, sector_number),
            &sector.to_le_bytes(),
        );
        let base = offset_of!(abi::Request, seg);
        for (index, segment) in segments.iter().take(MAX_SEGMENTS_PER_REQUEST).enumerate() {
            put(
                &mut bytes,
                base + index * size_of::<RequestSegment>(),
                &segment_bytes(segment),
            );
        }
        RequestBytes(bytes)
    }

    /// A discard request.
    pub fn discard(id: u64, flag: u8, sector: u64, sectors: u64) -> RequestBytes {
        let mut bytes = [0; REQUEST_SIZE];
        put(
            &mut bytes,
            offset_of!(RequestDiscard, operation),
            &[op::DISCARD],
        );
        put(&mut bytes, offset_of!(RequestDiscard, flag), &[flag]);
        put(
            &mut bytes,
            offset_of!(RequestDiscard, id),
            &id.to_le_bytes(),
        );
        put(
            &mut bytes,
            offset_of!(RequestDiscard, sector_number),
            &sector.to_le_bytes(),
        );
        put(
            &mut bytes,
            offset_of!(RequestDiscard, nr_sectors),
            &sectors.to_le_bytes(),
        );
        RequestBytes(bytes)
    }

    /// An indirect request naming `pages` (at most 8 are written).
    pub fn indirect(
        indirect_op: u8,
        id: u64,
        sector: u64,
        nr_segments: u16,
        pages: &[GrantRef],
    ) -> RequestBytes {
        let mut bytes = [0; REQUEST_SIZE];
        put(
            &mut bytes,
            offset_of!(RequestIndirect, operation),
            &[op::INDIRECT],
        );
        put(
            &mut bytes,
            offset_of!(RequestIndirect, indirect_op),
            &[indirect_op],
        );
        put(
            &mut bytes,
            offset_of!(RequestIndirect, nr_segments),
            &nr_segments.to_le_bytes(),
        );
        put(
            &mut bytes,
            offset_of!(RequestIndirect, id),
            &id.to_le_bytes(),
        );
        put(
            &mut bytes,
            offset_of!(RequestIndirect, sector_number),
            &sector.to_le_bytes(),
        );
        let base = offset_of!(RequestIndirect, indirect_grefs);
        for (index, page) in pages
            .iter()
            .take(MAX_INDIRECT_PAGES_PER_REQUEST)
            .enumerate()
        {
            put(
                &mut bytes,
                base + index * size_of::<u32>(),
                &page.get().to_le_bytes(),
            );
        }
        RequestBytes(bytes)
    }

    /// The 8 bytes of `struct blkif_request_segment`.
    pub fn segment_bytes(segment: &Segment) -> [u8; size_of::<RequestSegment>()] {
        let [g0, g1, g2, g3] = segment.gref.get().to_le_bytes();
        [g0, g1, g2, g3, segment.first_sect, segment.last_sect, 0, 0]
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn segment(gref: u32, first_sect: u8, last_sect: u8) -> Segment {
        Segment {
            gref: grant_ref(gref),
            first_sect,
            last_sect,
        }
    }

    #[test]
    fn a_direct_request_reads_back_every_field() {
        let segments = [segment(7, 0, 7), segment(0xdead_beef, 3, 4)];
        let bytes = encode::direct(op::WRITE, 0x1122_3344_5566_7788, 99, &segments);
        // Fixed offsets from blkif.h, independent of the encoder: operation 0, nr_segments 1,
        // id 8, sector 16, first segment at 24 (gref, first_sect, last_sect).
        assert_eq!(bytes.0[0], op::WRITE);
        assert_eq!(bytes.0[1], 2);
        assert_eq!(bytes.0[8..16], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(bytes.0[16..24], 99u64.to_le_bytes());
        assert_eq!(bytes.0[24..30], [7, 0, 0, 0, 0, 7]);
        assert_eq!(bytes.0[32..38], [0xef, 0xbe, 0xad, 0xde, 3, 4]);
        match decode(&bytes) {
            Decoded::Direct {
                operation,
                id,
                sector,
                nr_segments,
                segments: decoded,
                ..
            } => {
                assert_eq!(
                    (operation, id, sector, nr_segments),
                    (op::WRITE, 0x1122_3344_5566_7788, 99, 2)
                );
                assert_eq!(decoded[..2], segments);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn discard_and_indirect_use_their_own_layouts() {
        let bytes = encode::discard(5, abi::DISCARD_SECURE, 1 << 40, 8);
        assert_eq!(bytes.0[24..32], 8u64.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Decoded::Discard {
                id: 5,
                handle: 0,
                flag: 1,
                sector: 1 << 40,
                sectors: 8
            }
        );
        let bytes = encode::indirect(op::READ, 6, 12, 300, &[grant_ref(10), grant_ref(11)]);
        // nr_segments is a u16 at offset 2; the page refs start at 28.
        assert_eq!(bytes.0[2..4], 300u16.to_le_bytes());
        assert_eq!(bytes.0[28..36], [10, 0, 0, 0, 11, 0, 0, 0]);
        match decode(&bytes) {
            Decoded::Indirect {
                id,
                indirect_op,
                nr_segments,
                sector,
                pages,
                ..
            } => {
                assert_eq!(
                    (id, indirect_op, nr_segments, sector),
                    (6, op::READ, 300, 12)
                );
                assert_eq!(pages[..3], [grant_ref(10), grant_ref(11), grant_ref(0)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_operations_keep_their_id() {
        let mut raw = [0xa5; REQUEST_SIZE];
        raw[0] = 200;
        let decoded = decode(&RequestBytes(raw));
        assert_eq!(
            decoded,
            Decoded::Other {
                id: 0xa5a5_a5a5_a5a5_a5a5,
                operation: 200
            }
        );
        assert_eq!(decoded.id(), 0xa5a5_a5a5_a5a5_a5a5);
    }
}
