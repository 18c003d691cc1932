//! Host tests of `SharedRegion`, the reader and writer of the console and xenstore ring pages, over a page of the test's own.

use super::*;
use std::boxed::Box;
use std::vec;

/// A page-aligned page, as the direct map hands the ring pages out.
#[repr(C, align(4096))]
struct Page(core::cell::UnsafeCell<[u8; 4096]>);

/// A region over a fresh zeroed page, which the returned box keeps alive (and which nothing else
/// references while the region is used).
fn region() -> (Box<Page>, SharedRegion) {
    let page = Box::new(Page(core::cell::UnsafeCell::new([0; 4096])));
    // SAFETY: (1) the box outlives the region in every test (returned together, dropped
    // together); (2) page-aligned; (3) only the region touches the bytes.
    let region = unsafe { SharedRegion::new(page.0.get().cast::<u8>(), 4096) };
    (page, region)
}

#[test]
fn bytes_and_words_round_trip_at_the_ends_of_the_page() {
    let (_page, region) = region();
    assert_eq!(region.size(), 4096);
    region.write_bytes(0, b"head").unwrap();
    region.write_bytes(4092, b"tail").unwrap();
    let mut buffer = [0u8; 4];
    region.read_bytes(4092, &mut buffer).unwrap();
    assert_eq!(&buffer, b"tail");
    region.read_bytes(0, &mut buffer).unwrap();
    assert_eq!(&buffer, b"head");
    region.store_u32(1024, 0xdead_beef).unwrap();
    assert_eq!(region.load_u32(1024), Ok(0xdead_beef));
    let mut bytes = [0u8; 4];
    region.read_bytes(1024, &mut bytes).unwrap();
    assert_eq!(u32::from_le_bytes(bytes), 0xdead_beef);
    region.store_u8(4095, 0x0f).unwrap();
    assert_eq!(region.fetch_or_u8(4095, 0xf0), Ok(0x0f));
    assert_eq!(region.fetch_and_u8(4095, 0x3c), Ok(0xff));
    assert_eq!(region.load_u8(4095), Ok(0x3c));
    // A whole-page copy reads every byte once.
    let mut whole = vec![0u8; 4096];
    region.read_bytes(0, &mut whole).unwrap();
    assert_eq!(&whole[..4], b"head");
    assert_eq!(whole[4095], 0x3c);
}

#[test]
fn accesses_past_the_end_or_misaligned_are_refused_without_touching_memory() {
    let (_page, region) = region();
    let refused = |offset, length| OutOfBounds {
        offset,
        length,
        size: 4096,
    };
    let mut buffer = [0u8; 8];
    assert_eq!(
        region.read_bytes(4093, &mut buffer[..4]),
        Err(refused(4093, 4))
    );
    assert_eq!(region.write_bytes(4096, b"x"), Err(refused(4096, 1)));
    assert_eq!(
        region.read_bytes(usize::MAX, &mut buffer),
        Err(refused(usize::MAX, 8))
    );
    assert_eq!(region.load_u32(4094), Err(refused(4094, 4)));
    assert_eq!(region.load_u32(2), Err(refused(2, 4)), "misaligned");
    assert_eq!(region.store_u32(4093, 1), Err(refused(4093, 4)));
    assert_eq!(region.load_u8(4096), Err(refused(4096, 1)));
    assert_eq!(
        region.fetch_or_u8(usize::MAX, 1),
        Err(refused(usize::MAX, 1))
    );
}
