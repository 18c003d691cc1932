//! Frames lent out of the pmap's allocator come back only as the tokens it handed out.

use super::fixture;

#[test]
fn a_lent_frame_is_out_of_the_allocator_until_it_comes_back() {
    let mut pmap = fixture::pmap();
    let allocated_before = pmap.frames().allocated();
    let lent = pmap.lend_frame().expect("a free frame");
    assert_eq!(pmap.frames().allocated(), allocated_before + 1);
    // Not handed out again while lent.
    let other = pmap.lend_frame().expect("a second free frame");
    assert_ne!(other.pfn(), lent.pfn());
    pmap.take_back_frame(lent);
    pmap.take_back_frame(other);
    assert_eq!(pmap.frames().allocated(), allocated_before);
    assert_eq!(pmap.frames().bad_frees, 0);
}
