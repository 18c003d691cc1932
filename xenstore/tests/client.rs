//! Host tests of the client state machine: request ids, reply matching, watch routing and faults.

use xenstore::client::MAX_OUTSTANDING;
use xenstore::wire::encode_message;
use xenstore::{
    Client, Event, Fault, Malformation, MessageType, Operation, Reply, ReplyError, RequestError,
    RequestId, TransactionId, WatchEvent, XsError,
};

fn server_message(message_type: MessageType, request_id: RequestId, payload: &[u8]) -> Vec<u8> {
    encode_message(message_type, request_id, TransactionId::NONE, payload).expect("small payload")
}

fn watch_event(path: &str, token: &str) -> Vec<u8> {
    let payload = WatchEvent {
        path: path.into(),
        token: token.into(),
    }
    .encode();
    server_message(MessageType::WatchEvent, RequestId::WATCH_EVENT, &payload)
}

fn read(client: &mut Client<u32>, path: &str) -> RequestId {
    client
        .send(&Operation::Read { path })
        .expect("valid read")
        .request_id
}

#[test]
fn request_ids_are_unique_nonzero_and_wrap_past_zero() {
    let mut client: Client<u32> = Client::with_first_request_id(u32::MAX - 1);
    let ids: Vec<RequestId> = (0..4).map(|_| read(&mut client, "/a")).collect();
    assert_eq!(
        ids,
        [
            RequestId::new(u32::MAX - 1),
            RequestId::new(u32::MAX),
            RequestId::new(1),
            RequestId::new(2)
        ]
    );
}

#[test]
fn replies_are_matched_to_their_requests_in_any_order() {
    let mut client: Client<u32> = Client::new();
    let first = read(&mut client, "/first");
    let second = client
        .send(&Operation::Directory { path: "/second" })
        .expect("valid")
        .request_id;
    let mut bytes = server_message(MessageType::Directory, second, b"x\0y\0");
    bytes.extend(server_message(MessageType::Read, first, b"one"));
    let events = client.receive(&bytes);
    assert_eq!(
        events,
        [
            Event::Reply {
                request_id: second,
                result: Ok(Reply::Directory(vec!["x".into(), "y".into()]))
            },
            Event::Reply {
                request_id: first,
                result: Ok(Reply::Value(b"one".to_vec()))
            },
        ]
    );
    assert_eq!(client.outstanding(), 0);
}

#[test]
fn a_reply_for_an_unknown_or_already_answered_id_is_a_fault() {
    let mut client: Client<u32> = Client::new();
    let id = read(&mut client, "/a");
    let reply = server_message(MessageType::Read, id, b"v");
    assert!(matches!(client.receive(&reply)[..], [Event::Reply { .. }]));
    let fault = Event::Fault(Fault::UnknownRequest {
        request_id: id,
        message_type: MessageType::Read,
    });
    assert_eq!(client.receive(&reply), [fault]);
    let stranger = server_message(MessageType::Read, RequestId::new(999), b"v");
    assert!(matches!(
        client.receive(&stranger)[..],
        [Event::Fault(Fault::UnknownRequest {
            request_id,
            ..
        })] if request_id == RequestId::new(999)
    ));
    assert!(!client.is_broken(), "an unknown id drops one message only");
}

#[test]
fn error_and_mismatched_replies_complete_the_request_with_a_typed_error() {
    let mut client: Client<u32> = Client::new();
    let missing = read(&mut client, "/missing");
    let confused = read(&mut client, "/confused");
    let mut bytes = server_message(MessageType::Error, missing, b"ENOENT\0");
    bytes.extend(server_message(MessageType::Write, confused, b"OK\0"));
    assert_eq!(
        client.receive(&bytes),
        [
            Event::Reply {
                request_id: missing,
                result: Err(ReplyError::Xenstore(XsError::NotFound))
            },
            Event::Reply {
                request_id: confused,
                result: Err(ReplyError::UnexpectedType {
                    expected: MessageType::Read,
                    received: MessageType::Write
                })
            },
        ]
    );
    assert_eq!(client.outstanding(), 0);
}

#[test]
fn watch_events_reach_the_owner_of_their_token() {
    let mut client: Client<u32> = Client::new();
    let peer_a = client.watch("/backend/a", "peer-a", 10).expect("valid");
    let peer_b = client.watch("@releaseDomain", "peer-b", 20).expect("valid");
    assert_eq!(
        client.watch("/other", "peer-a", 30),
        Err(RequestError::TokenInUse)
    );
    let mut bytes = server_message(MessageType::Watch, peer_a.request_id, b"OK\0");
    bytes.extend(watch_event("@releaseDomain", "peer-b"));
    bytes.extend(watch_event("/backend/a/state", "peer-a"));
    bytes.extend(watch_event("/x", "nobody"));
    let events = client.receive(&bytes);
    assert_eq!(events.len(), 4);
    assert!(matches!(
        events[0],
        Event::Reply {
            result: Ok(Reply::Acknowledged),
            ..
        }
    ));
    assert!(
        matches!(&events[1], Event::Watch { owner: 20, event } if event.path == "@releaseDomain")
    );
    assert!(
        matches!(&events[2], Event::Watch { owner: 10, event } if event.path == "/backend/a/state")
    );
    assert_eq!(
        events[3],
        Event::Fault(Fault::UnknownWatch {
            token: "nobody".into()
        })
    );
    // peer-b's XS_WATCH is still unanswered, yet its events were routed (xenstored may fire
    // the initial event right behind the acknowledgement).
    assert!(client.is_outstanding(peer_b.request_id));
}

#[test]
fn unwatching_drops_late_events_then_frees_the_token() {
    let mut client: Client<u32> = Client::new();
    let watch = client.watch("/p", "tok", 1).expect("valid");
    client.receive(&server_message(
        MessageType::Watch,
        watch.request_id,
        b"OK\0",
    ));
    let unwatch = client.unwatch("tok").expect("live watch");
    assert_eq!(client.unwatch("tok"), Err(RequestError::UnknownToken));
    assert_eq!(client.watch_owner("tok"), None);
    assert_eq!(client.receive(&watch_event("/p", "tok")), []);
    client.receive(&server_message(
        MessageType::Unwatch,
        unwatch.request_id,
        b"OK\0",
    ));
    assert_eq!(
        client.receive(&watch_event("/p", "tok")),
        [Event::Fault(Fault::UnknownWatch {
            token: "tok".into()
        })]
    );
    assert!(client.watch("/p", "tok", 2).is_ok(), "token free again");
}

#[test]
fn a_refused_watch_frees_its_token_and_a_failed_unwatch_keeps_the_watch() {
    let mut client: Client<u32> = Client::new();
    let watch = client.watch("/p", "tok", 1).expect("valid");
    client.receive(&server_message(
        MessageType::Error,
        watch.request_id,
        b"EACCES\0",
    ));
    assert_eq!(client.watch_owner("tok"), None);
    let watch = client.watch("/p", "tok", 2).expect("token reusable");
    client.receive(&server_message(
        MessageType::Watch,
        watch.request_id,
        b"OK\0",
    ));
    let unwatch = client.unwatch("tok").expect("live");
    client.receive(&server_message(
        MessageType::Error,
        unwatch.request_id,
        b"EIO\0",
    ));
    assert_eq!(client.watch_owner("tok"), Some(&2));
}

#[test]
fn refused_requests_leave_no_trace() {
    let mut client: Client<u32> = Client::new();
    assert_eq!(
        client.send(&Operation::Watch {
            path: "/p",
            token: "t"
        }),
        Err(RequestError::UseWatchMethods)
    );
    assert!(client.send(&Operation::Read { path: "bad path" }).is_err());
    assert!(client.watch("/p/", "t", 1).is_err());
    assert_eq!(client.outstanding(), 0);
    assert_eq!(client.watch_owner("t"), None);
    assert_eq!(
        read(&mut client, "/ok"),
        RequestId::new(1),
        "no id was consumed"
    );
}

#[test]
fn transactions_carry_their_id_in_the_header() {
    let mut client: Client<u32> = Client::new();
    let start = client.send(&Operation::TransactionStart).expect("valid");
    let events = client.receive(&server_message(
        MessageType::TransactionStart,
        start.request_id,
        b"17\0",
    ));
    assert_eq!(
        events,
        [Event::Reply {
            request_id: start.request_id,
            result: Ok(Reply::TransactionStarted(TransactionId::new(17)))
        }]
    );
    let write = client
        .send_in_transaction(
            TransactionId::new(17),
            &Operation::Write {
                path: "/a",
                value: b"1",
            },
        )
        .expect("valid");
    assert_eq!(&write.bytes[8..12], &17u32.to_ne_bytes());
    assert_eq!(
        client.send(&Operation::TransactionEnd { commit: true }),
        Err(RequestError::NotInTransaction)
    );
}

#[test]
fn the_outstanding_table_is_bounded() {
    let mut client: Client<u32> = Client::new();
    for _ in 0..MAX_OUTSTANDING {
        read(&mut client, "/a");
    }
    assert_eq!(
        client.send(&Operation::Read { path: "/a" }),
        Err(RequestError::TooManyOutstanding)
    );
}

#[test]
fn a_stream_split_at_every_byte_gives_the_same_events() {
    let build = || {
        let mut client: Client<u32> = Client::new();
        let a = read(&mut client, "/a");
        let watch = client.watch("/w", "t", 7).expect("valid");
        let mut bytes = server_message(MessageType::Read, a, b"value");
        bytes.extend(watch_event("/w/x", "t"));
        bytes.extend(server_message(
            MessageType::Error,
            watch.request_id,
            b"ENOSPC\0",
        ));
        (client, bytes)
    };
    let (mut whole_client, bytes) = build();
    let expected = whole_client.receive(&bytes);
    assert_eq!(expected.len(), 3);
    for split in 0..=bytes.len() {
        let (mut client, _) = build();
        let mut events = client.receive(&bytes[..split]);
        events.extend(client.receive(&bytes[split..]));
        assert_eq!(events, expected, "split at {split}");
    }
    // And one byte at a time.
    let (mut client, _) = build();
    let events: Vec<_> = bytes
        .iter()
        .flat_map(|byte| client.receive(&[*byte]))
        .collect();
    assert_eq!(events, expected);
}

#[test]
fn a_malformed_stream_is_a_fatal_fault_that_persists() {
    let mut client: Client<u32> = Client::new();
    let id = read(&mut client, "/a");
    let mut bytes = server_message(MessageType::Read, id, b"v");
    let mut bad = server_message(MessageType::Read, RequestId::new(5), b"");
    bad[..4].copy_from_slice(&20u32.to_ne_bytes());
    bytes.extend(bad);
    let events = client.receive(&bytes);
    assert!(matches!(events[0], Event::Reply { .. }));
    let fatal = Event::Fault(Fault::Malformed(Malformation::UnknownType(20)));
    assert_eq!(events[1], fatal);
    assert!(matches!(&events[1], Event::Fault(fault) if fault.is_fatal()));
    assert_eq!(client.receive(&watch_event("/p", "t")), [fatal]);
    assert!(client.is_broken());
}

#[test]
fn a_garbled_watch_event_is_dropped_with_a_fault() {
    let mut client: Client<u32> = Client::new();
    let bytes = server_message(
        MessageType::WatchEvent,
        RequestId::WATCH_EVENT,
        b"only-a-path\0",
    );
    assert_eq!(client.receive(&bytes), [Event::Fault(Fault::BadWatchEvent)]);
}
