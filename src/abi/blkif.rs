//! Xen ABI: the block-device ring (`public/io/blkif.h`, `public/io/ring.h`) for x86-64 frontends.
//!
//! Facts from `/usr/include/xen/io/blkif.h` and `ring.h` (Xen 4.17, `libxen-dev`), checked by
//! `tests/abi_layout_blkif.rs`:
//! - A request is `struct blkif_request` (112 bytes: 24 bytes of header, then 11 segments of 8);
//!   `BLKIF_OP_DISCARD` and `BLKIF_OP_INDIRECT` reuse the slot with their own layouts. A response
//!   is 16 bytes. One ring slot is the union of the two, so 112 bytes.
//! - The shared ring starts with a 64-byte header (`req_prod`, `req_event`, `rsp_prod`,
//!   `rsp_event`, 4 private bytes, 44 bytes of padding); the slots follow. The number of slots is
//!   the largest power of two that fits: 32 in one page, 512 in 16 pages (order 4).
//! - Sectors are 512-byte units whatever the disk; a segment names sectors `first_sect..=last_sect`
//!   of one granted 4 KiB page, so `last_sect` is at most 7.
//! - An indirect request names up to 8 granted pages, each an array of 512 segments.
//!
//! The x86_32 ABI (`protocol` = `x86_32-abi`) packs `uint64_t` on 4 bytes: its request is 108
//! bytes and its response 12, with the same 64-byte ring header. grantsvc refuses that protocol
//! at connect (see `crate::peer::blkif::frontend_nodes`), so only the x86-64 layouts live here.

use crate::addr::PAGE_SIZE;

/// `BLKIF_OP_*` request operations.
pub mod op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const WRITE_BARRIER: u8 = 2;
    pub const FLUSH_DISKCACHE: u8 = 3;
    /// Reserved for a SLES device-specific packet: answered `EOPNOTSUPP`.
    pub const RESERVED_1: u8 = 4;
    pub const DISCARD: u8 = 5;
    pub const INDIRECT: u8 = 6;
}

/// `BLKIF_RSP_*` response statuses.
pub mod status {
    pub const EOPNOTSUPP: i16 = -2;
    pub const ERROR: i16 = -1;
    pub const OKAY: i16 = 0;
}

/// `VDISK_*` bits of the backend's `info` node.
pub mod vdisk {
    pub const CDROM: u32 = 0x1;
    pub const REMOVABLE: u32 = 0x2;
    pub const READONLY: u32 = 0x4;
}

/// `BLKIF_DISCARD_SECURE`: the discard flag asking for the data to be made unrecoverable.
pub const DISCARD_SECURE: u8 = 1 << 0;
/// `XEN_IO_PROTO_ABI_X86_64` (`public/io/protocols.h`): the frontend's `protocol` for this ABI.
pub const PROTOCOL_X86_64: &str = "x86_64-abi";
/// `XEN_IO_PROTO_ABI_X86_32`: the packed i386 ABI, refused by grantsvc.
pub const PROTOCOL_X86_32: &str = "x86_32-abi";
/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`: segments carried in a direct request.
pub const MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`: granted segment pages an indirect request may name.
pub const MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// The unit of every sector number and count on the ring, whatever the disk's sector size.
pub const SECTOR_SIZE: usize = 512;
/// Sectors in one granted page: `last_sect` is below this.
pub const SECTORS_PER_PAGE: u8 = (PAGE_SIZE / SECTOR_SIZE) as u8;
/// Segments in one indirect page (`PAGE_SIZE / sizeof(struct blkif_request_segment)`).
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = PAGE_SIZE / core::mem::size_of::<RequestSegment>();
/// The largest ring grantsvc accepts: `2^4` pages (Xen's `XENBUS_MAX_RING_GRANT_ORDER`).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// `struct blkif_request_segment`: sectors `first_sect..=last_sect` of the page granted by `gref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RequestSegment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

/// `struct blkif_request`: read, write, flush and barrier requests.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Request {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: u16,
    /// The frontend's private value, echoed in the response.
    pub id: u64,
    pub sector_number: u64,
    pub seg: [RequestSegment; MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_discard`: the same slot read for `BLKIF_OP_DISCARD`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RequestDiscard {
    pub operation: u8,
    /// `BLKIF_DISCARD_SECURE` or 0.
    pub flag: u8,
    pub handle: u16,
    pub id: u64,
    pub sector_number: u64,
    pub nr_sectors: u64,
}

/// `struct blkif_request_indirect` (x86-64 layout, without the i386-only trailing pad).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RequestIndirect {
    pub operation: u8,
    /// `BLKIF_OP_READ` or `BLKIF_OP_WRITE`.
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub id: u64,
    pub sector_number: u64,
    pub handle: u16,
    pub indirect_grefs: [u32; MAX_INDIRECT_PAGES_PER_REQUEST],
}

/// `struct blkif_response`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
}

/// The header of `struct blkif_sring` (`DEFINE_RING_TYPES` in `ring.h`); the slots follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedRingHeader {
    pub req_prod: u32,
    pub req_event: u32,
    pub rsp_prod: u32,
    pub rsp_event: u32,
    /// `pvt`: a union of netif/tapif bytes, unused by blkif.
    pub private: [u8; 4],
    pub pad: [u8; 44],
}

/// Bytes of one ring slot: `sizeof(union blkif_sring_entry)`.
pub const SLOT_SIZE: usize = core::mem::size_of::<Request>();
/// Offset of the first slot: `offsetof(struct blkif_sring, ring)`.
pub const RING_OFFSET: usize = core::mem::size_of::<SharedRingHeader>();
/// Bytes of a request as copied off the ring.
pub const REQUEST_SIZE: usize = core::mem::size_of::<Request>();
/// Bytes of a response as written onto the ring.
pub const RESPONSE_SIZE: usize = core::mem::size_of::<Response>();

/// Offsets of the ring header's indices (what the ring code reads and writes one at a time).
pub mod header_offset {
    use super::SharedRingHeader;
    use core::mem::offset_of;
    pub const REQ_PROD: usize = offset_of!(SharedRingHeader, req_prod);
    pub const REQ_EVENT: usize = offset_of!(SharedRingHeader, req_event);
    pub const RSP_PROD: usize = offset_of!(SharedRingHeader, rsp_prod);
    pub const RSP_EVENT: usize = offset_of!(SharedRingHeader, rsp_event);
}

/// Slots in a ring of `2^order` pages: `__CONST_RING_SIZE(blkif, PAGE_SIZE << order)`, the
/// largest power of two that fits after the header. `None` past [`MAX_RING_PAGE_ORDER`].
pub const fn ring_slots(order: u32) -> Option<u32> {
    if order > MAX_RING_PAGE_ORDER {
        return None;
    }
    let fitting = ((PAGE_SIZE << order) - RING_OFFSET) / SLOT_SIZE;
    // Round down to a power of two, as `__RD32` does.
    let mut slots = 1usize;
    while slots * 2 <= fitting {
        slots *= 2;
    }
    Some(slots as u32)
}

/// Bytes of a ring of `2^order` pages.
pub const fn ring_bytes(order: u32) -> usize {
    PAGE_SIZE << order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_32_per_page_up_to_512_at_order_4() {
        let slots: [Option<u32>; 6] = core::array::from_fn(|order| ring_slots(order as u32));
        assert_eq!(
            slots,
            [Some(32), Some(64), Some(128), Some(256), Some(512), None]
        );
        assert_eq!(SEGMENTS_PER_INDIRECT_PAGE, 512);
        assert_eq!((REQUEST_SIZE, RESPONSE_SIZE, RING_OFFSET), (112, 16, 64));
    }
}
