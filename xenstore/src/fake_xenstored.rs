//! A fake xenstored on a simulated store page, for host tests of code that talks over the ring (feature `testing`).
//!
//! It serves reads, writes and watches from an in-memory store, fires watches on writes (after
//! the write's reply, as xenstored does), and can hold replies back to send them in another
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

use crate::ids::{RequestId, TransactionId};
use crate::message_type::MessageType;
use crate::parser::{Parsed, Parser};
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
            let (reply, fired) = match message.header.message_type {
                MessageType::Write => {
                    let value = message.payload[first.len() + 1..].to_vec();
                    self.values.insert(first.clone(), value);
                    (Self::message(MessageType::Write, id, b"OK\0"), Some(first))
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

    /// Sends the held replies, last first.
    pub fn release_held_in_reverse(&mut self) {
        while let Some(reply) = self.held.pop() {
            self.produce(&reply);
        }
    }
}
