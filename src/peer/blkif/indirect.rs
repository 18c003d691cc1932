//! Indirect requests' segment pages: how many a request uses, and decoding a private copy of one into segments.
//!
//! A page is an array of 512 `struct blkif_request_segment` (`blkif.h`,
//! `BLKIF_OP_INDIRECT`); a request with `n` segments uses the first `ceil(n / 512)` of its page
//! refs, and the last page only partly. The caller copies each page out of its mapping once
//! (XSA-155 applies to these pages as to the ring) and decodes only the copy.

use super::request::Segment;
use crate::abi::blkif::{RequestSegment, SEGMENTS_PER_INDIRECT_PAGE};
use crate::addr::PAGE_SIZE;
use alloc::vec::Vec;
use core::mem::size_of;

/// A segment page copied out of its mapping.
pub type PageCopy = [u8; PAGE_SIZE];

/// Pages used by an indirect request of `nr_segments` segments.
pub const fn pages_needed(nr_segments: u16) -> usize {
    (nr_segments as usize).div_ceil(SEGMENTS_PER_INDIRECT_PAGE)
}

/// Appends the segments of `page` to `segments`, stopping when `segments` holds `total`.
pub fn decode_page(page: &PageCopy, total: usize, segments: &mut Vec<Segment>) {
    for chunk in page.chunks_exact(size_of::<RequestSegment>()) {
        if segments.len() >= total {
            break;
        }
        let mut bytes = [0; size_of::<RequestSegment>()];
        bytes.copy_from_slice(chunk);
        segments.push(Segment::from_bytes(bytes));
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::peer::blkif::request::{encode::segment_bytes, grant_ref};

    #[test]
    fn pages_are_counted_in_units_of_512_segments() {
        assert_eq!([1, 256, 512, 513, 4096].map(pages_needed), [1, 1, 1, 2, 8]);
    }

    #[test]
    fn a_page_yields_only_the_segments_asked_for() {
        let mut page = [0xff; PAGE_SIZE];
        for index in 0..3u32 {
            let segment = Segment {
                gref: grant_ref(100 + index),
                first_sect: 1,
                last_sect: 6,
            };
            let offset = index as usize * 8;
            page[offset..offset + 8].copy_from_slice(&segment_bytes(&segment));
        }
        let mut segments = Vec::new();
        decode_page(&page, 2, &mut segments);
        assert_eq!(segments.len(), 2);
        assert_eq!(
            segments[1],
            Segment {
                gref: grant_ref(101),
                first_sect: 1,
                last_sect: 6
            }
        );
        let mut all = Vec::new();
        decode_page(&page, 600, &mut all);
        assert_eq!(all.len(), 512);
        assert_eq!(
            all[511],
            Segment {
                gref: grant_ref(u32::MAX),
                first_sect: 0xff,
                last_sect: 0xff
            }
        );
    }
}
