//! A fake xenstored on a simulated store page, for host tests of code that talks over the ring (feature `testing`).
//!
//! It serves reads, writes, directories, permissions, removals, transactions and watches from an
//! in-memory store, fires watches on writes (after the write's reply, as xenstored does), can
//! refuse requests on chosen paths or commits, and can hold replies back to send them in another
//! order. It panics on anything else: it is for tests only.
#![allow(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used
)]

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::fmt;

use crate::ids::{DomId, RequestId, TransactionId};
use crate::message_type::MessageType;
use crate::parser::{Parsed, Parser};
use crate::permissions::NodePermissions;
use crate::ring::{
    REQUEST_CONSUMER_OFFSET, REQUEST_PRODUCER_OFFSET, REQUEST_RING_OFFSET,
    RESPONSE_CONSUMER_OFFSET, RESPONSE_PRODUCER_OFFSET, RESPONSE_RING_OFFSET, RING_SIZE,
};
use crate::ring_transport::RingMemory;
use crate::watch::WatchEvent;
use crate::wire::encode_message;

/// The store page.
pub struct Page(RefCell<Vec<u8>>);

/// An access outside the page.
#[derive(Debug)]
pub struct OutOfPage;

impl fmt::Display for OutOfPage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("out of page")
    }
}

impl Page {
    fn get_u32(&self, offset: usize) -> u32 {
        let bytes = self.0.borrow();
        u32::from_ne_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
    }

    fn set_u32(&self, offset: usize, value: u32) {
        self.0.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }
}

impl RingMemory for Page {
    type Error = OutOfPage;
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfPage> {
        let bytes = self.0.borrow();
        into.copy_from_slice(bytes.get(offset..offset + into.len()).ok_or(OutOfPage)?);
        Ok(())
    }
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfPage> {
        let mut bytes = self.0.borrow_mut();
        bytes
            .get_mut(offset..offset + from.len())
            .ok_or(OutOfPage)?
            .copy_from_slice(from);
        Ok(())
    }
    fn load_u32(&self, offset: usize) -> Result<u32, OutOfPage> {
        Ok(self.get_u32(offset))
    }
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfPage> {
        self.set_u32(offset, value);
        Ok(())
    }
}

/// A fake xenstored: a store of values, watches that fire on writes, and replies that can be
/// held back to be sent in another order.
pub struct Xenstored {
    /// The store page the client attaches to.
    pub page: Page,
    parser: Parser,
    /// The store.
    pub values: BTreeMap<String, Vec<u8>>,
    /// (path, token) of each watch.
    watches: Vec<(String, String)>,
    /// Replies held back (answered later, in reverse).
    held: Vec<Vec<u8>>,
    /// Hold replies back until [`Xenstored::release_held_in_reverse`].
    pub hold_replies: bool,
    /// Requests on these paths are answered with this error name (`EACCES`, `ENOSPC`, ...).
    pub refuse: BTreeMap<String, &'static str>,
    /// The owner of a node, as `GET_PERMS` reports it (dom0 when not listed).
    pub owners: BTreeMap<String, u16>,
    /// Commits to answer with `EAGAIN` before one succeeds.
    pub conflicting_commits: u32,
    /// Writes of each open transaction, applied when it commits.
    transactions: BTreeMap<u32, Vec<(String, Vec<u8>)>>,
    next_transaction: u32,
}

impl Xenstored {
    /// A fresh page and an empty store.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Xenstored {
        Xenstored {
            page: Page(RefCell::new(vec![0; 4096])),
            parser: Parser::new(),
            values: BTreeMap::new(),
            watches: Vec::new(),
            held: Vec::new(),
            hold_replies: false,
            refuse: BTreeMap::new(),
            owners: BTreeMap::new(),
            conflicting_commits: 0,
            transactions: BTreeMap::new(),
            next_transaction: 1,
        }
    }

    fn produce(&self, data: &[u8]) {
        let producer = self.page.get_u32(RESPONSE_PRODUCER_OFFSET);
        let consumer = self.page.get_u32(RESPONSE_CONSUMER_OFFSET);
        assert!(producer.wrapping_sub(consumer) as usize + data.len() <= RING_SIZE as usize);
        for (step, byte) in data.iter().enumerate() {
            let place = (producer.wrapping_add(step as u32) & (RING_SIZE - 1)) as usize;
            self.page.0.borrow_mut()[RESPONSE_RING_OFFSET + place] = *byte;
        }
        self.page.set_u32(
            RESPONSE_PRODUCER_OFFSET,
            producer.wrapping_add(data.len() as u32),
        );
    }

    fn message(message_type: MessageType, request_id: RequestId, payload: &[u8]) -> Vec<u8> {
        encode_message(message_type, request_id, TransactionId::NONE, payload).expect("small")
    }

    /// Fires the watches on `path` (as another domain's write would).
    pub fn fire(&self, path: &str) {
        for (watched, token) in &self.watches {
            if path.starts_with(watched.as_str()) {
                let payload = WatchEvent {
                    path: path.into(),
                    token: token.clone(),
                }
                .encode();
                self.produce(&Self::message(
                    MessageType::WatchEvent,
                    RequestId::WATCH_EVENT,
                    &payload,
                ));
            }
        }
    }

    /// Consumes every request in the ring and answers it (a write also fires the watches
    /// on its path, after the reply, as xenstored does).
    pub fn serve(&mut self) {
        let consumer = self.page.get_u32(REQUEST_CONSUMER_OFFSET);
        let producer = self.page.get_u32(REQUEST_PRODUCER_OFFSET);
        let bytes: Vec<u8> = (0..producer.wrapping_sub(consumer))
            .map(|step| {
                let place = (consumer.wrapping_add(step) & (RING_SIZE - 1)) as usize;
                self.page.0.borrow()[REQUEST_RING_OFFSET + place]
            })
            .collect();
        self.page.set_u32(REQUEST_CONSUMER_OFFSET, producer);
        self.parser.feed(&bytes);
        while let Parsed::Message(message) = self.parser.next_message() {
            let id = message.header.request_id;
            let mut fields = message.payload.split(|&byte| byte == 0);
            let first = String::from_utf8_lossy(fields.next().unwrap_or_default()).to_string();
            let transaction = message.header.transaction_id;
            let message_type = message.header.message_type;
            let (reply, fired) = match message_type {
                _ if self.refuse.contains_key(&first) => {
                    let name = self.refuse[&first];
                    let mut payload = name.as_bytes().to_vec();
                    payload.push(0);
                    (Self::message(MessageType::Error, id, &payload), None)
                }
                MessageType::Write if transaction != TransactionId::NONE => {
                    let value = message.payload[first.len() + 1..].to_vec();
                    self.transactions
                        .get_mut(&transaction.get())
                        .expect("an open transaction")
                        .push((first, value));
                    (Self::message(MessageType::Write, id, b"OK\0"), None)
                }
                MessageType::Write => {
                    let value = message.payload[first.len() + 1..].to_vec();
                    self.values.insert(first.clone(), value);
                    (Self::message(MessageType::Write, id, b"OK\0"), Some(first))
                }
                MessageType::Directory => {
                    let names = self.children(&first);
                    if names.is_empty() && !self.values.contains_key(&first) {
                        (Self::message(MessageType::Error, id, b"ENOENT\0"), None)
                    } else {
                        let mut payload = Vec::new();
                        for name in names {
                            payload.extend_from_slice(name.as_bytes());
                            payload.push(0);
                        }
                        (Self::message(MessageType::Directory, id, &payload), None)
                    }
                }
                MessageType::GetPermissions if self.values.contains_key(&first) => {
                    let owner = self.owners.get(&first).copied().unwrap_or(0);
                    let owner = DomId::new(owner).expect("a domain id");
                    let permissions = NodePermissions::owner_and_reader(owner, owner).encode();
                    (
                        Self::message(MessageType::GetPermissions, id, &permissions),
                        None,
                    )
                }
                MessageType::GetPermissions => {
                    (Self::message(MessageType::Error, id, b"ENOENT\0"), None)
                }
                MessageType::Remove => {
                    let below = alloc::format!("{first}/");
                    self.values
                        .retain(|path, _| *path != first && !path.starts_with(&below));
                    (Self::message(MessageType::Remove, id, b"OK\0"), Some(first))
                }
                MessageType::TransactionStart => {
                    let number = self.next_transaction;
                    self.next_transaction += 1;
                    self.transactions.insert(number, Vec::new());
                    let payload = alloc::format!("{number}\0");
                    (
                        Self::message(MessageType::TransactionStart, id, payload.as_bytes()),
                        None,
                    )
                }
                MessageType::TransactionEnd => {
                    let writes = self
                        .transactions
                        .remove(&transaction.get())
                        .expect("an open transaction");
                    if first != "T" {
                        (
                            Self::message(MessageType::TransactionEnd, id, b"OK\0"),
                            None,
                        )
                    } else if self.conflicting_commits > 0 {
                        self.conflicting_commits -= 1;
                        (Self::message(MessageType::Error, id, b"EAGAIN\0"), None)
                    } else {
                        for (path, value) in writes {
                            self.values.insert(path.clone(), value);
                            self.fire(&path);
                        }
                        (
                            Self::message(MessageType::TransactionEnd, id, b"OK\0"),
                            None,
                        )
                    }
                }
                MessageType::Read => match self.values.get(&first) {
                    Some(value) => (Self::message(MessageType::Read, id, value), None),
                    None => (Self::message(MessageType::Error, id, b"ENOENT\0"), None),
                },
                MessageType::Watch => {
                    let token =
                        String::from_utf8_lossy(fields.next().unwrap_or_default()).to_string();
                    self.watches.push((first, token));
                    (Self::message(MessageType::Watch, id, b"OK\0"), None)
                }
                other => panic!("the fake does not serve {other:?}"),
            };
            if self.hold_replies {
                self.held.push(reply);
            } else {
                self.produce(&reply);
            }
            if let Some(path) = fired {
                self.fire(&path);
            }
        }
    }

    /// The names of the children of `path` in the store (a node exists when it has a value or
    /// a descendant).
    fn children(&self, path: &str) -> Vec<String> {
        let below = alloc::format!("{path}/");
        let mut names: Vec<String> = self
            .values
            .keys()
            .filter_map(|key| key.strip_prefix(below.as_str()))
            .map(|rest| rest.split('/').next().unwrap_or_default().to_string())
            .collect();
        names.dedup();
        names
    }

    /// Sends the held replies, last first.
    pub fn release_held_in_reverse(&mut self) {
        while let Some(reply) = self.held.pop() {
            self.produce(&reply);
        }
    }
}
