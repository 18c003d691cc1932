//! Host tests of the ring client against a fake xenstored on a simulated page: requests in flight together, replies matched by id in any order, watch events kept queued.

use xenstore::fake_xenstored::Xenstored;
use xenstore::ring_client::RingClient;
use xenstore::{Operation, Reply, TransactionId};

#[test]
fn several_requests_in_flight_get_their_own_replies_in_any_order() {
    let mut server = Xenstored::new();
    server.values.insert("/a".into(), b"one".to_vec());
    server.values.insert("/b".into(), b"two".to_vec());
    let mut client: RingClient<u32> = RingClient::attach(&server.page).unwrap();
    let first = client
        .submit(TransactionId::NONE, &Operation::Read { path: "/a" })
        .unwrap();
    let second = client
        .submit(TransactionId::NONE, &Operation::Read { path: "/b" })
        .unwrap();
    let missing = client
        .submit(TransactionId::NONE, &Operation::Read { path: "/c" })
        .unwrap();
    assert!(client.pump(&server.page).moved);
    assert_eq!(client.in_flight(), 3, "all three sent before any reply");
    server.hold_replies = true;
    server.serve();
    server.release_held_in_reverse();
    client.pump(&server.page);
    assert_eq!(client.queued_replies(), 3);
    assert_eq!(
        client.take_reply(second),
        Some(Ok(Reply::Value(b"two".to_vec())))
    );
    assert_eq!(
        client.take_reply(first),
        Some(Ok(Reply::Value(b"one".to_vec())))
    );
    assert!(client.take_reply(missing).unwrap().is_err());
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn a_write_that_fires_a_watch_leaves_the_event_queued_until_taken() {
    let mut server = Xenstored::new();
    let mut client: RingClient<u32> = RingClient::attach(&server.page).unwrap();
    let watch = client.submit_watch("/peer", "token", 7).unwrap();
    client.pump(&server.page);
    server.serve();
    client.pump(&server.page);
    assert_eq!(client.take_reply(watch), Some(Ok(Reply::Acknowledged)));
    // The service publishes a counter; meanwhile a peer's node changes under the watch.
    let write = client
        .submit(
            TransactionId::NONE,
            &Operation::Write {
                path: "/peer/state",
                value: b"3",
            },
        )
        .unwrap();
    client.pump(&server.page);
    server.serve();
    client.pump(&server.page);
    // The caller waiting for its write takes its reply; the watch event it read along the way
    // stays queued, and says so, until its owner takes it.
    assert_eq!(client.take_reply(write), Some(Ok(Reply::Acknowledged)));
    assert_eq!(client.queued_watch_events(), 1);
    assert!(client.has_watch_event(|owner| *owner == 7));
    let events = client.take_watch_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, 7);
    assert_eq!(events[0].1.path, "/peer/state");
    assert_eq!(client.queued_watch_events(), 0);
}

#[test]
fn at_most_max_sent_requests_are_out_and_the_rest_follow_as_replies_come_back() {
    use xenstore::ring_client::MAX_SENT;
    let mut server = Xenstored::new();
    server.values.insert("/a".into(), b"1".to_vec());
    let mut client: RingClient<u32> = RingClient::attach(&server.page).unwrap();
    let ids: Vec<_> = (0..MAX_SENT + 5)
        .map(|_| {
            client
                .submit(TransactionId::NONE, &Operation::Read { path: "/a" })
                .unwrap()
        })
        .collect();
    client.pump(&server.page);
    assert_eq!(client.sent(), MAX_SENT, "the rest are held back");
    server.serve();
    // The replies read release the held requests, which the same pump sends.
    client.pump(&server.page);
    assert_eq!(client.sent(), 5);
    server.serve();
    client.pump(&server.page);
    assert_eq!(client.sent(), 0);
    for id in ids {
        assert_eq!(client.take_reply(id), Some(Ok(Reply::Value(b"1".to_vec()))));
    }
    assert_eq!(client.in_flight(), 0);
}
