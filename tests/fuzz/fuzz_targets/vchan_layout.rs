//! Fuzz target: a vchan server's shared page (its header, ring orders and grant list) through the one-time layout decoder.
//!
//! Properties: nothing panics; a decoded layout has both ring orders within 10..=20, an in-page
//! ring only for orders 10 and 11, and for a granted ring exactly one ref per 4 KiB of ring;
//! a channel built on the decoded layout starts from the page's indices: with the server idle
//! (nothing sent, everything consumed) it has nothing to read and room to write. What a
//! server does to the page later is `vchan_channel`'s.
#![no_main]

use grantsvc::abi::vchan as abi;
use grantsvc::peer::vchan::layout::{RingPlacement, VchanLayout};
use grantsvc::shared_memory::SharedMemory;
use libfuzzer_sys::fuzz_target;
#[path = "shared_page.rs"]
mod shared_page;
#[path = "vchan_open.rs"]
mod vchan_open;
use shared_page::Memory;
use vchan_open::open_channel;

const PAGE: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let mut page = input.to_vec();
    page.resize(PAGE, 0);
    let memory = Memory::new(page);
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
    // The server idle: its consumer where our producer starts, its producer where our consumer
    // starts.
    memory
        .store_u32(abi::LEFT_CONS_OFFSET, layout.initial_left_prod)
        .unwrap();
    memory
        .store_u32(abi::RIGHT_PROD_OFFSET, layout.initial_right_cons)
        .unwrap();
    let (mut channel, _, _) = open_channel(&layout, &memory);
    assert_eq!(channel.receive(&mut [0; 64]).unwrap().bytes, 0);
    assert_eq!(channel.send(&[7; 64]).unwrap().bytes, 64);
});
