//! Fuzz target: a vchan session's reads and writes against a server that writes what it likes into the shared page between them.
//!
//! The input picks the ring orders (in the page or granted) and the indices the session starts
//! from, then is a script: each step a byte naming an action and the bytes it takes. The server
//! acts honestly (it produces within the ring, consumes what was sent) or scribbles: any value
//! into its own indices, grantsvc's indices, the notify byte or the live byte. grantsvc's
//! channel receives, sends and reads the live byte. Properties: nothing panics; grantsvc's
//! indices on the page are exactly what it moved, whatever the server wrote over them; a read
//! returns no more than asked; while the server's indices are honest, no operation faults, a
//! read returns exactly the bytes the server produced, in order, across the ring's wrap, and a
//! write moves exactly what fits, which the server then finds in the ring. The first fault ends
//! the session, as the kernel ends it.
#![no_main]

use grantsvc::abi::vchan as abi;
use grantsvc::peer::vchan::layout::{RingPlacement, RingSpec, VchanLayout};
use grantsvc::shared_memory::SharedMemory;
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
#[path = "shared_page.rs"]
mod shared_page;
#[path = "vchan_open.rs"]
mod vchan_open;
use shared_page::Memory;
use vchan_open::open_channel;

const PAGE: usize = 4096;

/// Takes `N` bytes off the front of the script, or ends it.
fn take<const N: usize>(script: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = script.split_first_chunk::<N>()?;
    *script = rest;
    Some(*head)
}

/// One ring as the server sees it: the memory its bytes are in and where they start there.
struct ServerRing {
    memory: Memory,
    base: usize,
    size: u32,
}

impl ServerRing {
    fn new(spec: &RingSpec, page: &Memory, own: &Option<Memory>) -> ServerRing {
        let (memory, base) = match (&spec.placement, own) {
            (RingPlacement::InPage { offset }, _) => (page.clone(), *offset),
            (RingPlacement::Granted { .. }, Some(memory)) => (memory.clone(), 0),
            (RingPlacement::Granted { .. }, None) => unreachable!("granted rings get a region"),
        };
        ServerRing {
            memory,
            base,
            size: spec.size(),
        }
    }

    /// The byte at free-running `index`.
    fn at(&self, index: u32) -> usize {
        self.base + (index & (self.size - 1)) as usize
    }
}

fuzz_target!(|input: &[u8]| {
    let mut script = input;
    let Some([orders]) = take::<1>(&mut script) else {
        return;
    };
    let Some(starts) = take::<8>(&mut script) else {
        return;
    };
    let left_order = 10 + u16::from(orders & 3);
    let right_order = 10 + u16::from((orders >> 2) & 3);
    let [p0, p1, p2, p3, c0, c1, c2, c3] = starts;
    let mut left_prod = u32::from_le_bytes([p0, p1, p2, p3]);
    let mut right_cons = u32::from_le_bytes([c0, c1, c2, c3]);

    // The server's page: its orders, the indices the session starts from, an idle server (it
    // has sent nothing and consumed everything) that is connected.
    let page = Memory::new(vec![0; PAGE]);
    let store_u16 = |offset: usize, value: u16| page.write_bytes(offset, &value.to_le_bytes());
    store_u16(abi::LEFT_ORDER_OFFSET, left_order).unwrap();
    store_u16(abi::RIGHT_ORDER_OFFSET, right_order).unwrap();
    for (offset, value) in [
        (abi::LEFT_PROD_OFFSET, left_prod),
        (abi::LEFT_CONS_OFFSET, left_prod),
        (abi::RIGHT_CONS_OFFSET, right_cons),
        (abi::RIGHT_PROD_OFFSET, right_cons),
    ] {
        page.store_u32(offset, value).unwrap();
    }
    page.store_u8(abi::SRV_LIVE_OFFSET, abi::LIVE_CONNECTED)
        .unwrap();
    let Ok(layout) = VchanLayout::decode(&page) else {
        // Both rings in the page with one order overlap: refused, rightly.
        assert!(left_order == right_order && left_order < abi::PAGED_RING_MIN_ORDER);
        return;
    };
    let (mut channel, left, right) = open_channel(&layout, &page);
    let to_server = ServerRing::new(&layout.left, &page, &left);
    let from_server = ServerRing::new(&layout.right, &page, &right);

    // The server's side: its indices as it keeps them, the bytes it produced that grantsvc has
    // not read, the bytes grantsvc sent that it has not consumed, and whether it has kept to
    // the protocol so far.
    let mut server_prod = right_cons;
    let mut server_cons = left_prod;
    let mut unread = VecDeque::new();
    let mut unconsumed = VecDeque::new();
    let mut honest = true;
    let mut next_byte = 0u8;

    while let Some([action]) = take::<1>(&mut script) {
        match action % 9 {
            // The server produces up to `count` bytes, as many as fit.
            0 => {
                let Some([count]) = take::<1>(&mut script) else {
                    return;
                };
                // (Once the server scribbled, grantsvc may have read past what it produced.)
                let room = from_server
                    .size
                    .saturating_sub(server_prod.wrapping_sub(right_cons));
                let count = u32::from(count).min(room);
                for _ in 0..count {
                    from_server
                        .memory
                        .store_u8(from_server.at(server_prod), next_byte)
                        .unwrap();
                    unread.push_back(next_byte);
                    next_byte = next_byte.wrapping_add(1);
                    server_prod = server_prod.wrapping_add(1);
                }
                page.store_u32(abi::RIGHT_PROD_OFFSET, server_prod).unwrap();
            }
            // The server consumes what grantsvc sent, and finds the bytes it sent (up to the
            // `left.prod` grantsvc wrote, which a scribble of the server's may have hidden).
            1 => {
                while server_cons != left_prod {
                    let byte = to_server.memory.load_u8(to_server.at(server_cons)).unwrap();
                    if honest {
                        assert_eq!(Some(byte), unconsumed.pop_front());
                    }
                    server_cons = server_cons.wrapping_add(1);
                }
                page.store_u32(abi::LEFT_CONS_OFFSET, server_cons).unwrap();
            }
            // The server scribbles on an index, its own or grantsvc's.
            2..=3 => {
                let (Some([which]), Some(value)) = (take::<1>(&mut script), take::<4>(&mut script))
                else {
                    return;
                };
                let offset = [
                    abi::LEFT_CONS_OFFSET,
                    abi::LEFT_PROD_OFFSET,
                    abi::RIGHT_CONS_OFFSET,
                    abi::RIGHT_PROD_OFFSET,
                ][usize::from(which % 4)];
                page.store_u32(offset, u32::from_le_bytes(value)).unwrap();
                // Writing over grantsvc's own indices breaks nothing: it never reads them back.
                if offset == abi::LEFT_CONS_OFFSET || offset == abi::RIGHT_PROD_OFFSET {
                    honest = false;
                }
            }
            // The server scribbles on the notify or live byte.
            4 => {
                let Some([which, value]) = take::<2>(&mut script) else {
                    return;
                };
                let offset = [
                    abi::CLI_NOTIFY_OFFSET,
                    abi::SRV_NOTIFY_OFFSET,
                    abi::SRV_LIVE_OFFSET,
                    abi::CLI_LIVE_OFFSET,
                ][usize::from(which % 4)];
                page.store_u8(offset, value).unwrap();
            }
            // grantsvc reads up to `wanted` bytes.
            5..=6 => {
                let Some([wanted]) = take::<1>(&mut script) else {
                    return;
                };
                let mut into = vec![0; usize::from(wanted) * 8];
                match channel.receive(&mut into) {
                    Ok(transfer) => {
                        assert!(transfer.bytes <= into.len());
                        if honest {
                            assert_eq!(transfer.bytes, into.len().min(unread.len()));
                            let expected: Vec<u8> = unread.drain(..transfer.bytes).collect();
                            assert_eq!(&into[..transfer.bytes], &expected[..]);
                        }
                        right_cons = right_cons.wrapping_add(transfer.bytes as u32);
                        // What grantsvc wrote, whatever the server wrote over it before.
                        if transfer.bytes > 0 {
                            let on_page = page.load_u32(abi::RIGHT_CONS_OFFSET).unwrap();
                            assert_eq!(on_page, right_cons);
                        }
                    }
                    Err(fault) => {
                        assert!(!honest, "an honest server faulted the session: {fault}");
                        return;
                    }
                }
            }
            // grantsvc writes `length` bytes.
            7 => {
                let Some([length]) = take::<1>(&mut script) else {
                    return;
                };
                let from: Vec<u8> = (0..usize::from(length) * 8)
                    .map(|index| index as u8 ^ length)
                    .collect();
                match channel.send(&from) {
                    Ok(transfer) => {
                        assert!(transfer.bytes <= from.len());
                        if honest {
                            let room = to_server.size - left_prod.wrapping_sub(server_cons);
                            assert_eq!(transfer.bytes, from.len().min(room as usize));
                            unconsumed.extend(&from[..transfer.bytes]);
                        }
                        left_prod = left_prod.wrapping_add(transfer.bytes as u32);
                        if transfer.bytes > 0 {
                            let on_page = page.load_u32(abi::LEFT_PROD_OFFSET).unwrap();
                            assert_eq!(on_page, left_prod);
                        }
                    }
                    Err(fault) => {
                        assert!(!honest, "an honest server faulted the session: {fault}");
                        return;
                    }
                }
            }
            // grantsvc looks at the live byte: a value the protocol does not define is a fault.
            _ => {
                let live = page.load_u8(abi::SRV_LIVE_OFFSET).unwrap();
                let defined = live == abi::LIVE_GONE || live == abi::LIVE_CONNECTED;
                assert_eq!(channel.server_liveness().is_ok(), defined);
            }
        }
    }
});
