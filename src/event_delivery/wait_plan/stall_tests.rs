//! The 10-second stall of issue 8 reproduced over a fake xenstored: the counters' write reads a peer's watch event into the queue and takes the store port's wake-up; the loop must not block then.

use super::*;
use xenstore::fake_xenstored::Xenstored;
use xenstore::ring_client::RingClient;
use xenstore::{Operation, Reply, TransactionId};

/// The deadline of the old blocking request's one-shot timer (10 s): the only thing that
/// woke the old loop.
const STALE_TIMER_NS: u64 = 10_000_000_000;
const WATCH_OWNER: u32 = 5;

/// A client with a watch on a peer's directory, as the service has.
fn watching() -> (Xenstored, RingClient<u32>) {
    let mut server = Xenstored::new();
    let mut client: RingClient<u32> = RingClient::attach(&server.page).unwrap();
    let watch = client
        .submit_watch("/local/domain/5/device", "peer", WATCH_OWNER)
        .unwrap();
    client.pump(&server.page);
    server.serve();
    client.pump(&server.page);
    assert_eq!(client.take_reply(watch), Some(Ok(Reply::Acknowledged)));
    (server, client)
}

/// The loop publishes a counter with a blocking write while the peer's state changes: the
/// write's wait reads the reply and the watch event in one pump and consumes the port's
/// wake-up. Returns what the loop has in hand afterwards.
fn publish_while_the_peer_moves(server: &mut Xenstored, client: &mut RingClient<u32>) {
    let write = client
        .submit(
            TransactionId::NONE,
            &Operation::Write {
                path: "/local/domain/4/data/grantsvc/maps",
                value: b"7",
            },
        )
        .unwrap();
    client.pump(&server.page);
    server.serve();
    server.fire("/local/domain/5/device/grantsvc-share/0/state");
    client.pump(&server.page);
    assert_eq!(client.take_reply(write), Some(Ok(Reply::Acknowledged)));
}

#[test]
fn judged_by_ports_alone_the_loop_blocks_with_a_watch_event_queued() {
    let (mut server, mut client) = watching();
    publish_while_the_peer_moves(&mut server, &mut client);
    // The old loop looked at fired ports only; the store port's wake-up was taken by the
    // write's wait, so it blocked until the stale 10 s timer although an event was queued.
    let ports_only = QueuedWork::default();
    assert_eq!(
        next_wait(&ports_only, &[Some(STALE_TIMER_NS)]),
        NextWait::Block {
            until: Some(STALE_TIMER_NS)
        }
    );
    assert_eq!(client.queued_watch_events(), 1, "the stall's queued event");
}

#[test]
fn with_the_queues_counted_the_loop_runs_again_and_a_timer_find_is_flagged() {
    let (mut server, mut client) = watching();
    publish_while_the_peer_moves(&mut server, &mut client);
    let work = QueuedWork {
        watch_events: client.queued_watch_events(),
        replies: client.queued_replies(),
        ..QueuedWork::default()
    };
    assert_eq!(
        next_wait(&work, &[Some(STALE_TIMER_NS)]),
        NextWait::RunAgain
    );
    // Had it blocked anyway, the timer's expiry finding this work would be logged.
    assert!(found_only_at_timer(false, true, &work));
    let events = client.take_watch_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, WATCH_OWNER);
    let idle = QueuedWork {
        watch_events: client.queued_watch_events(),
        replies: client.queued_replies(),
        ..QueuedWork::default()
    };
    assert_eq!(next_wait(&idle, &[None]), NextWait::Block { until: None });
}
