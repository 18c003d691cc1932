//! Tests of the client channel and the echo pump against a fake libxenvchan server.

use super::*;
use crate::peer::counters::ServiceCounters;
use crate::peer::vchan::echo::EchoService;
use crate::peer::vchan::pump::StreamPump;
use crate::peer::vchan::testing::{FakeMemory, FakeServer};
use alloc::vec::Vec;
use proptest::prelude::*;

fn connect(server: &FakeServer) -> VchanChannel<FakeMemory> {
    let layout = VchanLayout::decode(&server.page).unwrap();
    let regions = ChannelRegions {
        page: server.page.clone(),
        left: server.left_region(),
        right: server.right_region(),
    };
    let channel = VchanChannel::new(&layout, regions)
        .map_err(|(fault, _)| fault)
        .unwrap();
    channel.connect().unwrap();
    channel
}

/// Sends `data` from the server through an echoing client and returns what came back, checking
/// that every wait for progress was covered by an event (no lost wake-up).
fn echo_through(server: &mut FakeServer, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut channel = connect(server);
    let mut pump = StreamPump::default();
    let mut echo = EchoService::default();
    let counters = ServiceCounters::default();
    let mut sent = 0;
    let mut back = Vec::new();
    let mut client_events = 0usize;
    let mut idle_rounds = 0;
    while back.len() < data.len() {
        let events_before = server.events_sent;
        let end = data.len().min(sent + chunk);
        sent += server.write(&data[sent..end]);
        back.extend(server.read());
        // The client runs only when the server signalled it, or on its first round.
        if server.events_sent > events_before || client_events == 0 {
            client_events += 1;
            let outcome = pump.run(&mut channel, &mut echo, &counters).unwrap();
            let _ = outcome.notify_peer;
            idle_rounds = 0;
        } else {
            idle_rounds += 1;
            assert!(
                idle_rounds < 3,
                "stalled: no event after {} bytes back",
                back.len()
            );
        }
    }
    back
}

#[test]
fn connect_sets_cli_live_and_asks_for_write_notifications() {
    let server = FakeServer::new(10, 11);
    assert_eq!(server.cli_live(), abi::LIVE_NOT_YET_CONNECTED);
    let channel = connect(&server);
    assert_eq!(server.cli_live(), abi::LIVE_CONNECTED);
    assert_eq!(
        server.page.load_u8(abi::SRV_NOTIFY_OFFSET).unwrap(),
        abi::NOTIFY_WRITE
    );
    assert_eq!(channel.server_liveness(), Ok(ServerLiveness::Connected));
    let regions = channel.close(true);
    assert_eq!(server.cli_live(), abi::LIVE_GONE);
    assert!(regions.left.is_none() && regions.right.is_none());
}

#[test]
fn the_client_writes_left_and_reads_right() {
    let mut server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    assert_eq!(server.write(b"from server"), 11);
    let mut buffer = [0u8; 64];
    let transfer = channel.receive(&mut buffer).unwrap();
    assert_eq!(&buffer[..transfer.bytes], b"from server");
    assert_eq!(channel.send(b"from client").unwrap().bytes, 11);
    assert_eq!(server.read(), b"from client");
}

/// Bytes of the long echoes; under Miri (`make miri`), where each byte is thousands of times
/// slower, still several times the size of every ring but the order-16 one, so those wrap.
const MEBIBYTE_ECHO: u32 = if cfg!(miri) { 1 << 16 } else { 1 << 20 };
const ORDERS_ECHO: u32 = if cfg!(miri) { 40_000 } else { 300_000 };

#[test]
fn echo_of_a_mebibyte_through_the_socket_proxy_orders() {
    let data: Vec<u8> = (0..MEBIBYTE_ECHO)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut server = FakeServer::new(10, 11);
    assert_eq!(echo_through(&mut server, &data, 8192), data);
}

#[test]
fn echo_through_granted_rings_of_several_orders() {
    let data: Vec<u8> = (0..ORDERS_ECHO).map(|i| (i % 251) as u8).collect();
    for (left, right) in [(11, 10), (12, 11), (13, 12), (12, 14), (16, 13)] {
        let mut server = FakeServer::new(left, right);
        assert_eq!(
            echo_through(&mut server, &data, 5000),
            data,
            "orders {left}/{right}"
        );
    }
}

#[test]
fn indices_near_u32_wraparound_still_echo() {
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
    let mut server = FakeServer::new(10, 12);
    server.set_indices(u32::MAX - 700);
    assert_eq!(echo_through(&mut server, &data, 3000), data);
}

#[test]
fn totals_and_indices_account_for_every_byte() {
    let mut server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    let mut pump = StreamPump::default();
    let mut echo = EchoService::default();
    let counters = ServiceCounters::default();
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    assert_eq!(server.write(&data), 2048);
    let _ = pump.run(&mut channel, &mut echo, &counters).unwrap();
    // All 2048 bytes were taken; 1024 fit the left ring, the rest wait in the pump.
    let totals = pump.totals();
    assert_eq!(
        (totals.received, totals.sent, totals.held),
        (2048, 1024, 1024)
    );
    assert_eq!(
        totals.to_string(),
        "2048 byte(s) received, 1024 sent, 1024 held"
    );
    assert_eq!(server.read().len(), 1024);
    assert_eq!(
        channel.indices().to_string(),
        "left ring prod 1024 cons 1024 (server's), right ring prod 2048 (server's) cons 2048"
    );
    let _ = pump.run(&mut channel, &mut echo, &counters).unwrap();
    assert_eq!(pump.totals().held, 0);
    assert_eq!(channel.indices().left_prod, 2048);
}

#[test]
fn a_producer_index_beyond_the_ring_is_a_fault() {
    let server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    server.page.store_u32(abi::RIGHT_PROD_OFFSET, 2049).unwrap();
    let mut buffer = [0u8; 16];
    assert_eq!(
        channel.receive(&mut buffer),
        Err(VchanFault::IndexBeyondRing {
            ring: RingSide::Right,
            ours: 0,
            theirs: 2049,
            size: 2048
        })
    );
}

#[test]
fn a_consumer_index_beyond_our_producer_is_a_fault() {
    let server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    server.page.store_u32(abi::LEFT_CONS_OFFSET, 5).unwrap();
    assert!(matches!(
        channel.send(b"x"),
        Err(VchanFault::IndexBeyondRing {
            ring: RingSide::Left,
            ..
        })
    ));
}

#[test]
fn scribbling_on_our_own_indices_changes_nothing() {
    let mut server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    server.write(b"abc");
    server
        .page
        .store_u32(abi::RIGHT_CONS_OFFSET, 1_000_000)
        .unwrap();
    let mut buffer = [0u8; 8];
    let transfer = channel.receive(&mut buffer).unwrap();
    assert_eq!(&buffer[..transfer.bytes], b"abc");
    assert_eq!(server.page.load_u32(abi::RIGHT_CONS_OFFSET).unwrap(), 3);
}

#[test]
fn a_producer_moving_backwards_is_a_fault() {
    let mut server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    server.write(b"abcdef");
    let mut buffer = [0u8; 2];
    let _ = channel.receive(&mut buffer).unwrap();
    server.page.store_u32(abi::RIGHT_PROD_OFFSET, 3).unwrap();
    assert!(matches!(
        channel.receive(&mut buffer),
        Err(VchanFault::ProducerMovedBackwards {
            previous: 6,
            now: 3
        })
    ));
}

#[test]
fn server_exit_and_garbage_live_bytes_are_seen() {
    let server = FakeServer::new(10, 11);
    let channel = connect(&server);
    server.page.store_u8(abi::SRV_LIVE_OFFSET, 7).unwrap();
    assert_eq!(
        channel.server_liveness(),
        Err(VchanFault::InvalidLiveByte { value: 7 })
    );
    server.exit();
    assert_eq!(channel.server_liveness(), Ok(ServerLiveness::Gone));
}

#[test]
fn notify_only_when_the_server_asked() {
    let mut server = FakeServer::new(10, 11);
    let mut channel = connect(&server);
    // init_gnt_srv leaves cli_notify = WRITE: the first write must signal, the second not.
    assert!(channel.send(b"a").unwrap().notify_peer);
    assert!(!channel.send(b"b").unwrap().notify_peer);
    // A server that read everything and found the ring empty asks again.
    assert_eq!(server.read(), b"ab");
    let _ = server.read();
    assert!(channel.send(b"c").unwrap().notify_peer);
}

#[test]
fn mismatched_regions_are_handed_back() {
    let server = FakeServer::new(12, 11);
    let layout = VchanLayout::decode(&server.page).unwrap();
    let regions = ChannelRegions {
        page: server.page.clone(),
        left: None,
        right: None,
    };
    let (fault, back) = VchanChannel::new(&layout, regions).unwrap_err();
    assert_eq!(fault, VchanFault::RegionsMismatchLayout);
    assert!(back.page.same_as(&server.page));
    let regions = ChannelRegions {
        page: server.page.clone(),
        left: Some(FakeMemory::new(1024)),
        right: Some(FakeMemory::new(4096)),
    };
    let (_, back) = VchanChannel::new(&layout, regions).unwrap_err();
    assert!(back.left.is_some() && back.right.is_some());
}

// Under Miri (`make miri`) every case runs thousands of times slower: there the property runs
// on fewer and shorter cases, with the same assertions (1,500 bytes still lap the 1 KiB ring).
const ECHO_CASES: u32 = if cfg!(miri) { 3 } else { 24 };
const ECHO_BYTES: usize = if cfg!(miri) { 1_500 } else { 20_000 };

proptest! {
    #![proptest_config(ProptestConfig::with_cases(ECHO_CASES))]

    #[test]
    fn arbitrary_bytes_echo_unchanged(
        data in proptest::collection::vec(any::<u8>(), 0..ECHO_BYTES),
        orders in prop_oneof![Just((10u16, 11u16)), Just((11, 10)), Just((12, 13)), Just((13, 11))],
        chunk in 1usize..5000,
        start in any::<u32>(),
    ) {
        let mut server = FakeServer::new(orders.0, orders.1);
        server.set_indices(start);
        prop_assert_eq!(echo_through(&mut server, &data, chunk), data);
    }

    #[test]
    fn hostile_indices_never_panic(prod in any::<u32>(), cons in any::<u32>()) {
        let server = FakeServer::new(10, 12);
        let mut channel = connect(&server);
        server.page.store_u32(abi::RIGHT_PROD_OFFSET, prod).unwrap();
        server.page.store_u32(abi::LEFT_CONS_OFFSET, cons).unwrap();
        let mut buffer = [0u8; 4096];
        if let Ok(transfer) = channel.receive(&mut buffer) {
            // The read ring (right, order 12) holds 4096 bytes; our consumer index starts at 0.
            prop_assert!(transfer.bytes <= 4096 && prod <= 4096);
        }
        if let Ok(transfer) = channel.send(&buffer) {
            // The write ring (left, order 10) holds 1024 bytes; our producer index starts at 0.
            prop_assert!(transfer.bytes <= 1024 && 0u32.wrapping_sub(cons) <= 1024);
        }
    }
}
