//! Host tests of the blocking `Connection` against a small in-memory xenstored that answers in 7-byte reads.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};

use xenstore::connection::{Connection, ConnectionError};
use xenstore::wire::encode_message;
use xenstore::{
    DomId, MessageType, Parsed, Parser, ReplyError, RequestId, TransactionId, WatchEvent, XsError,
};

/// Just enough of xenstored: a flat map of nodes, watches by prefix, and transactions whose
/// end answers `EAGAIN` while `conflicts_left` lasts.
#[derive(Default)]
struct FakeXenstored {
    nodes: BTreeMap<String, Vec<u8>>,
    watches: Vec<(String, String)>,
    requests: Parser,
    replies: VecDeque<u8>,
    next_transaction: u32,
    conflicts_left: u32,
    transaction_ends: u32,
    closed: bool,
}

fn strings(payload: &[u8]) -> Vec<String> {
    payload
        .split(|byte| *byte == 0)
        .map(|part| String::from_utf8_lossy(part).into_owned())
        .collect()
}

impl FakeXenstored {
    fn reply(&mut self, message_type: MessageType, request_id: RequestId, payload: &[u8]) {
        let bytes = encode_message(message_type, request_id, TransactionId::NONE, payload)
            .expect("small reply");
        self.replies.extend(bytes);
    }

    fn fire(&mut self, path: &str) {
        let fired: Vec<(String, String)> = self
            .watches
            .iter()
            .filter(|(watched, _)| path.starts_with(watched.as_str()))
            .cloned()
            .collect();
        for (_, token) in fired {
            let event = WatchEvent {
                path: path.into(),
                token,
            };
            self.reply(
                MessageType::WatchEvent,
                RequestId::WATCH_EVENT,
                &event.encode(),
            );
        }
    }

    fn handle(&mut self, message_type: MessageType, id: RequestId, payload: &[u8]) {
        let args = strings(payload);
        match message_type {
            MessageType::Read => match self.nodes.get(&args[0]).cloned() {
                Some(value) => self.reply(message_type, id, &value),
                None => self.reply(MessageType::Error, id, b"ENOENT\0"),
            },
            MessageType::Write => {
                let split = payload.iter().position(|byte| *byte == 0).expect("path");
                self.nodes
                    .insert(args[0].clone(), payload[split + 1..].to_vec());
                self.reply(message_type, id, b"OK\0");
                self.fire(&args[0]);
            }
            MessageType::Directory => {
                let prefix = format!("{}/", args[0]);
                let mut listing = Vec::new();
                for path in self.nodes.keys().filter(|path| path.starts_with(&prefix)) {
                    listing.extend(&path.as_bytes()[prefix.len()..]);
                    listing.push(0);
                }
                self.reply(message_type, id, &listing);
            }
            MessageType::Watch => {
                self.watches.push((args[0].clone(), args[1].clone()));
                self.reply(message_type, id, b"OK\0");
                // xenstored fires every new watch once.
                self.fire(&args[0]);
            }
            MessageType::Unwatch => {
                self.watches.retain(|(_, token)| *token != args[1]);
                self.reply(message_type, id, b"OK\0");
            }
            MessageType::TransactionStart => {
                self.next_transaction += 1;
                let text = format!("{}\0", self.next_transaction);
                self.reply(message_type, id, text.as_bytes());
            }
            MessageType::TransactionEnd => {
                self.transaction_ends += 1;
                if args[0] == "T" && self.conflicts_left > 0 {
                    self.conflicts_left -= 1;
                    self.reply(MessageType::Error, id, b"EAGAIN\0");
                } else {
                    self.reply(message_type, id, b"OK\0");
                }
            }
            MessageType::GetDomainPath => {
                let text = format!("/local/domain/{}\0", args[0]);
                self.reply(message_type, id, text.as_bytes());
            }
            _ => self.reply(MessageType::Error, id, b"ENOSYS\0"),
        }
    }
}

impl Write for FakeXenstored {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.requests.feed(bytes);
        while let Parsed::Message(message) = self.requests.next_message() {
            let header = message.header;
            self.handle(header.message_type, header.request_id, &message.payload);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for FakeXenstored {
    fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        if self.replies.is_empty() && self.closed {
            return Ok(0);
        }
        // Deliberately small reads, so replies arrive split across many reads.
        let count = into.len().min(7).min(self.replies.len());
        for slot in into.iter_mut().take(count) {
            *slot = self.replies.pop_front().unwrap_or_default();
        }
        Ok(count)
    }
}

const NONE: TransactionId = TransactionId::NONE;

#[test]
fn write_read_directory_and_errors() {
    let mut connection = Connection::new(FakeXenstored::default());
    connection.write(NONE, "/data/a", b"hello").expect("write");
    connection.write(NONE, "/data/b", b"").expect("write");
    assert_eq!(connection.read(NONE, "/data/a").expect("read"), b"hello");
    assert_eq!(connection.read_string(NONE, "/data/b").expect("read"), "");
    assert_eq!(
        connection.directory(NONE, "/data").expect("directory"),
        ["a", "b"]
    );
    assert!(matches!(
        connection.read(NONE, "/missing"),
        Err(ConnectionError::Reply(ReplyError::Xenstore(
            XsError::NotFound
        )))
    ));
    assert_eq!(
        connection
            .get_domain_path(DomId::new(5).unwrap())
            .expect("path"),
        "/local/domain/5"
    );
    assert!(matches!(
        connection.read(NONE, "not//valid"),
        Err(ConnectionError::Request(_))
    ));
}

#[test]
fn watch_events_are_queued_while_waiting_for_replies() {
    let mut connection = Connection::new(FakeXenstored::default());
    connection.watch("/peer", "peer-token").expect("watch");
    let initial = connection.next_watch_event().expect("initial event");
    assert_eq!(initial.path, "/peer");
    assert_eq!(initial.token, "peer-token");
    connection.write(NONE, "/peer/state", b"4").expect("write");
    connection.write(NONE, "/other", b"x").expect("write");
    let events = connection.take_watch_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].path, "/peer/state");
    connection.unwatch("peer-token").expect("unwatch");
    connection.write(NONE, "/peer/state", b"5").expect("write");
    assert!(connection.take_watch_events().is_empty());
    assert!(connection.take_faults().is_empty());
}

#[test]
fn a_transaction_is_run_again_on_eagain() {
    let server = FakeXenstored {
        conflicts_left: 2,
        ..FakeXenstored::default()
    };
    let mut connection = Connection::new(server);
    let mut runs = Vec::new();
    let result = connection.transaction(5, |connection, transaction| {
        runs.push(transaction);
        connection.write(transaction, "/counter", b"1")?;
        Ok(runs.len())
    });
    assert_eq!(result.expect("committed on the third run"), 3);
    assert_eq!(
        runs,
        [
            TransactionId::new(1),
            TransactionId::new(2),
            TransactionId::new(3)
        ]
    );
    assert_eq!(connection.into_inner().transaction_ends, 3);
}

#[test]
fn a_transaction_gives_up_after_its_attempts() {
    let server = FakeXenstored {
        conflicts_left: 10,
        ..FakeXenstored::default()
    };
    let mut connection = Connection::new(server);
    let result = connection.transaction(3, |_, _| Ok(()));
    assert!(matches!(
        result,
        Err(ConnectionError::Reply(ReplyError::Xenstore(
            XsError::TryAgain
        )))
    ));
    assert_eq!(connection.into_inner().transaction_ends, 3);
}

#[test]
fn a_failing_body_abandons_its_transaction_without_retrying() {
    let mut connection = Connection::new(FakeXenstored::default());
    let mut runs = 0;
    let result: Result<(), _> = connection.transaction(3, |connection, transaction| {
        runs += 1;
        connection.read(transaction, "/missing").map(|_| ())
    });
    assert!(matches!(
        result,
        Err(ConnectionError::Reply(ReplyError::Xenstore(
            XsError::NotFound
        )))
    ));
    assert_eq!(runs, 1);
    assert_eq!(connection.into_inner().transaction_ends, 1, "ended with F");
}

#[test]
fn a_closed_transport_is_an_error_not_a_hang() {
    let server = FakeXenstored {
        closed: true,
        ..FakeXenstored::default()
    };
    let mut connection = Connection::new(server);
    connection
        .write(NONE, "/a", b"1")
        .expect("reply already queued");
    assert!(matches!(
        connection.next_watch_event(),
        Err(ConnectionError::Closed)
    ));
}
