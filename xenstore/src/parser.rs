//! An incremental xenstore message parser: bytes in any split go in, whole messages come out.
//!
//! The parser owns no transport. The caller feeds it whatever arrived (part of a header, several
//! messages at once) and then asks for messages until it answers [`Parsed::NeedMore`]. A header
//! with an unknown type or a payload over the limit means the byte stream can no longer be framed:
//! the parser then reports the same [`Parsed::Malformed`] forever, and the connection must go.

use alloc::vec::Vec;
use core::fmt;

use crate::wire::{Header, HEADER_SIZE};

/// Why a byte stream is not xenstore messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformation {
    /// The header's type number is not one Xen defines.
    UnknownType(u32),
    /// The header's length is over `XENSTORE_PAYLOAD_MAX`.
    PayloadTooLong(u32),
}

impl fmt::Display for Malformation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformation::UnknownType(number) => write!(formatter, "unknown message type {number}"),
            Malformation::PayloadTooLong(length) => {
                write!(
                    formatter,
                    "payload length {length} over the 4096-byte limit"
                )
            }
        }
    }
}

/// One message: its checked header and its payload (exactly `header.length` bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// What the parser has for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No whole message is buffered yet: feed more bytes.
    NeedMore,
    /// The next message of the stream.
    Message(Message),
    /// The stream is broken; this stays the answer from now on.
    Malformed(Malformation),
}

/// The parser's state: bytes received but not yet returned as messages.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    /// Offset in `buffer` of the first byte not yet consumed. Consumed bytes are dropped in
    /// bulk so that a chunk holding many messages costs one copy, not one per message.
    start: usize,
    broken: Option<Malformation>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Appends received bytes. Nothing is parsed until [`Parser::next_message`] is called.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        self.compact();
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one is buffered.
    pub fn next_message(&mut self) -> Parsed {
        if let Some(reason) = self.broken {
            return Parsed::Malformed(reason);
        }
        let pending = self.buffer.get(self.start..).unwrap_or_default();
        let Some(header_bytes) = pending.first_chunk::<HEADER_SIZE>() else {
            return Parsed::NeedMore;
        };
        let header = match Header::decode(header_bytes) {
            Ok(header) => header,
            Err(reason) => {
                self.broken = Some(reason);
                self.buffer = Vec::new();
                self.start = 0;
                return Parsed::Malformed(reason);
            }
        };
        // The header checked `length` against PAYLOAD_MAX, so this cannot overflow.
        let total = HEADER_SIZE + header.length as usize;
        let Some(payload) = pending.get(HEADER_SIZE..total) else {
            return Parsed::NeedMore;
        };
        let message = Message {
            header,
            payload: payload.to_vec(),
        };
        self.start += total;
        Parsed::Message(message)
    }

    /// Bytes buffered but not yet returned in a message.
    pub fn buffered(&self) -> usize {
        self.buffer.len().saturating_sub(self.start)
    }

    /// True once the stream has been found malformed.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{RequestId, TransactionId};
    use crate::message_type::MessageType;
    use crate::wire::encode_message;

    fn message(message_type: MessageType, id: u32, payload: &[u8]) -> Vec<u8> {
        encode_message(
            message_type,
            RequestId::new(id),
            TransactionId::NONE,
            payload,
        )
        .unwrap_or_default()
    }

    fn drain(parser: &mut Parser) -> (Vec<Message>, Parsed) {
        let mut messages = Vec::new();
        loop {
            match parser.next_message() {
                Parsed::Message(message) => messages.push(message),
                other => return (messages, other),
            }
        }
    }

    #[test]
    fn a_message_split_at_every_point_comes_out_whole_once() {
        let bytes = message(MessageType::Read, 9, b"/local/domain/0/name\0");
        for split in 0..=bytes.len() {
            let mut parser = Parser::new();
            parser.feed(&bytes[..split]);
            let (first, state) = drain(&mut parser);
            assert_eq!(state, Parsed::NeedMore);
            parser.feed(&bytes[split..]);
            let (second, state) = drain(&mut parser);
            assert_eq!(state, Parsed::NeedMore);
            let all: Vec<Message> = first.into_iter().chain(second).collect();
            assert_eq!(all.len(), 1, "split at {split}");
            assert_eq!(all[0].header.request_id, RequestId::new(9));
            assert_eq!(all[0].payload, b"/local/domain/0/name\0");
            assert_eq!(parser.buffered(), 0);
        }
    }

    #[test]
    fn several_messages_in_one_chunk_come_out_in_order() {
        let mut bytes = message(MessageType::Read, 1, b"a");
        bytes.extend(message(MessageType::WatchEvent, 0, b"/p\0tok\0"));
        bytes.extend(message(MessageType::Write, 2, b""));
        bytes.extend(&message(MessageType::Error, 3, b"EINVAL\0")[..10]);
        let mut parser = Parser::new();
        parser.feed(&bytes);
        let (messages, state) = drain(&mut parser);
        assert_eq!(state, Parsed::NeedMore);
        let ids: Vec<u32> = messages.iter().map(|m| m.header.request_id.get()).collect();
        assert_eq!(ids, [1, 0, 2]);
        assert_eq!(messages[2].payload, b"");
        assert_eq!(
            parser.buffered(),
            10,
            "the partial fourth header stays buffered"
        );
    }

    #[test]
    fn an_oversized_length_breaks_the_stream_for_good() {
        let mut bytes = message(MessageType::Read, 1, b"ok");
        let mut bad = message(MessageType::Read, 2, b"");
        bad[12..16].copy_from_slice(&4097u32.to_ne_bytes());
        bytes.extend(bad);
        let mut parser = Parser::new();
        parser.feed(&bytes);
        assert!(matches!(parser.next_message(), Parsed::Message(_)));
        let broken = Parsed::Malformed(Malformation::PayloadTooLong(4097));
        assert_eq!(parser.next_message(), broken);
        parser.feed(&message(MessageType::Read, 3, b""));
        assert_eq!(parser.next_message(), broken);
        assert!(parser.is_broken());
        assert_eq!(parser.buffered(), 0, "nothing kept once broken");
    }

    #[test]
    fn an_unknown_type_is_malformed_as_soon_as_the_header_is_whole() {
        let mut parser = Parser::new();
        let mut header = [0u8; HEADER_SIZE];
        header[..4].copy_from_slice(&0xffffu32.to_ne_bytes());
        parser.feed(&header[..15]);
        assert_eq!(parser.next_message(), Parsed::NeedMore);
        parser.feed(&header[15..]);
        assert_eq!(
            parser.next_message(),
            Parsed::Malformed(Malformation::UnknownType(0xffff))
        );
    }

    #[test]
    fn the_largest_payload_is_accepted() {
        let payload = [7u8; crate::wire::PAYLOAD_MAX];
        let mut parser = Parser::new();
        parser.feed(&message(MessageType::Read, 4, &payload));
        match parser.next_message() {
            Parsed::Message(message) => assert_eq!(message.payload.len(), payload.len()),
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
