//! The client state machine: request ids, the table of requests awaiting replies, the watch table, and dispatch of what arrives.
//!
//! The client moves no bytes. [`Client::send`] returns the bytes of a request for the caller to
//! write (to the xenstore ring in the kernel, to `/dev/xen/xenbus` in dom0), and
//! [`Client::receive`] takes whatever bytes the caller read and returns what they meant: replies
//! matched to their requests, watch events routed to the owner of their token, and faults.
//! A reply whose id no request is waiting for is reported, never taken for another request's.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use litemap::LiteMap;

use crate::error::XsError;
use crate::ids::{RequestId, TransactionId};
use crate::message_type::MessageType;
use crate::parser::{Malformation, Message, Parsed, Parser};
use crate::path::{validate_token, validate_watch_path};
use crate::reply::{decode_reply, Reply, ReplyError, ReplyKind};
use crate::request::{Operation, RequestError};
use crate::watch::WatchEvent;

/// Requests allowed in flight at once; far above xenstored's own per-domain quota, it only
/// bounds the table if a caller forgets to read replies.
pub const MAX_OUTSTANDING: usize = 1024;

/// A request ready to go: its id (the reply will carry it) and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "the request does nothing until its bytes are written to xenstore"]
pub struct Outgoing {
    pub request_id: RequestId,
    pub bytes: Vec<u8>,
}

/// Something the server said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<Owner> {
    /// The answer to request `request_id`.
    Reply {
        request_id: RequestId,
        result: Result<Reply, ReplyError>,
    },
    /// A watch fired; `owner` is what was given to [`Client::watch`] for its token.
    Watch { owner: Owner, event: WatchEvent },
    /// The server broke the protocol. See [`Fault::is_fatal`].
    Fault(Fault),
}

/// A protocol violation by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The byte stream cannot be framed any more: the connection is unusable.
    Malformed(Malformation),
    /// A reply with an id no request is waiting for (dropped).
    UnknownRequest {
        request_id: RequestId,
        message_type: MessageType,
    },
    /// A watch event whose payload is not `path\0token\0` (dropped).
    BadWatchEvent,
    /// A watch event with a token no watch of ours has (dropped).
    UnknownWatch { token: String },
}

impl Fault {
    /// True when the connection must be abandoned; other faults drop one message.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Fault::Malformed(_))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Malformed(reason) => write!(formatter, "malformed xenstore stream: {reason}"),
            Fault::UnknownRequest {
                request_id,
                message_type,
            } => write!(
                formatter,
                "{message_type} reply for request {request_id}, which is not outstanding"
            ),
            Fault::BadWatchEvent => formatter.write_str("malformed watch event"),
            Fault::UnknownWatch { token } => {
                // Bytes escaped, not `{:?}`: str's Debug escaping and its Unicode tables are
                // 7 KB of the kernel image.
                write!(
                    formatter,
                    "watch event for unknown token \"{}\"",
                    token.as_bytes().escape_ascii()
                )
            }
        }
    }
}

/// What a request awaiting its reply needs for decoding it and for the watch table.
#[derive(Debug)]
struct Pending {
    message_type: MessageType,
    kind: ReplyKind,
    /// For `XS_WATCH` / `XS_UNWATCH`: the token whose entry the reply settles.
    watch_token: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WatchState {
    /// `XS_WATCH` sent, not yet acknowledged (events may already arrive).
    Registering,
    Active,
    /// `XS_UNWATCH` sent: events still in flight are dropped quietly.
    Removing,
}

#[derive(Debug)]
struct WatchEntry<Owner> {
    path: String,
    owner: Owner,
    state: WatchState,
}

/// The client's protocol state. `Owner` names who gets a watch's events (a session index, a
/// callback key, `()` for a single user).
#[derive(Debug)]
pub struct Client<Owner> {
    next_request_id: u32,
    pending: LiteMap<RequestId, Pending>,
    watches: LiteMap<String, WatchEntry<Owner>>,
    parser: Parser,
}

impl<Owner: Clone> Default for Client<Owner> {
    fn default() -> Self {
        Client::new()
    }
}

impl<Owner: Clone> Client<Owner> {
    pub fn new() -> Client<Owner> {
        Client::with_first_request_id(1)
    }

    /// A client whose first request id is `first` (0 is skipped); lets tests reach wraparound.
    pub fn with_first_request_id(first: u32) -> Client<Owner> {
        Client {
            next_request_id: first,
            pending: LiteMap::new(),
            watches: LiteMap::new(),
            parser: Parser::new(),
        }
    }

    /// Builds a request outside any transaction.
    pub fn send(&mut self, operation: &Operation<'_>) -> Result<Outgoing, RequestError> {
        self.send_in_transaction(TransactionId::NONE, operation)
    }

    /// Builds a request in `transaction` ([`TransactionId::NONE`] for none). Watches are refused
    /// here: use [`Client::watch`] and [`Client::unwatch`].
    pub fn send_in_transaction(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<Outgoing, RequestError> {
        if matches!(
            operation,
            Operation::Watch { .. } | Operation::Unwatch { .. }
        ) {
            return Err(RequestError::UseWatchMethods);
        }
        self.register(transaction, operation, None)
    }

    /// Builds an `XS_WATCH` for `path` with `token`, whose events will go to `owner`. The token
    /// must not be in use by another watch of this client.
    pub fn watch(
        &mut self,
        path: &str,
        token: &str,
        owner: Owner,
    ) -> Result<Outgoing, RequestError> {
        validate_watch_path(path)?;
        validate_token(token)?;
        if self.watches.contains_key(token) {
            return Err(RequestError::TokenInUse);
        }
        let outgoing = self.register(
            TransactionId::NONE,
            &Operation::Watch { path, token },
            Some(String::from(token)),
        )?;
        self.watches.insert(
            String::from(token),
            WatchEntry {
                path: String::from(path),
                owner,
                state: WatchState::Registering,
            },
        );
        Ok(outgoing)
    }

    /// Builds the `XS_UNWATCH` for the watch with `token`. Its events stop being delivered now.
    pub fn unwatch(&mut self, token: &str) -> Result<Outgoing, RequestError> {
        let entry = self
            .watches
            .get(token)
            .filter(|entry| entry.state != WatchState::Removing)
            .ok_or(RequestError::UnknownToken)?;
        let path = entry.path.clone();
        let outgoing = self.register(
            TransactionId::NONE,
            &Operation::Unwatch { path: &path, token },
            Some(String::from(token)),
        )?;
        if let Some(entry) = self.watches.get_mut(token) {
            entry.state = WatchState::Removing;
        }
        Ok(outgoing)
    }

    /// Takes bytes read from the server and returns what they meant, in order. After a fatal
    /// fault every call returns that fault again.
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Event<Owner>> {
        self.parser.feed(bytes);
        let mut events = Vec::new();
        loop {
            match self.parser.next_message() {
                Parsed::NeedMore => break,
                Parsed::Malformed(reason) => {
                    events.push(Event::Fault(Fault::Malformed(reason)));
                    break;
                }
                Parsed::Message(message) => events.extend(self.dispatch(message)),
            }
        }
        events
    }

    /// Number of requests awaiting their reply.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// True while request `request_id` awaits its reply.
    pub fn is_outstanding(&self, request_id: RequestId) -> bool {
        self.pending.contains_key(&request_id)
    }

    /// The owner of the live (registering or active) watch with `token`.
    pub fn watch_owner(&self, token: &str) -> Option<&Owner> {
        self.watches
            .get(token)
            .filter(|entry| entry.state != WatchState::Removing)
            .map(|entry| &entry.owner)
    }

    /// True once the server's byte stream was found malformed.
    pub fn is_broken(&self) -> bool {
        self.parser.is_broken()
    }

    fn allocate_request_id(&mut self) -> Result<RequestId, RequestError> {
        if self.pending.len() >= MAX_OUTSTANDING {
            return Err(RequestError::TooManyOutstanding);
        }
        // Ends: fewer than MAX_OUTSTANDING ids are taken, so a free one is near.
        loop {
            let candidate = RequestId::new(self.next_request_id);
            self.next_request_id = self.next_request_id.wrapping_add(1);
            if candidate != RequestId::WATCH_EVENT && !self.pending.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
    }

    fn register(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
        watch_token: Option<String>,
    ) -> Result<Outgoing, RequestError> {
        // Validate before taking an id, so that a refused request leaves no trace.
        operation.payload(transaction)?;
        let request_id = self.allocate_request_id()?;
        let bytes = operation.encode(request_id, transaction)?;
        self.pending.insert(
            request_id,
            Pending {
                message_type: operation.message_type(),
                kind: operation.reply_kind(),
                watch_token,
            },
        );
        Ok(Outgoing { request_id, bytes })
    }

    /// What one message means; `None` for a message dropped quietly.
    fn dispatch(&mut self, message: Message) -> Option<Event<Owner>> {
        // Watch events are recognised by type: xenstored sends them with request id 0, but
        // the type alone is what tells them apart from replies.
        if message.header.message_type == MessageType::WatchEvent {
            return self.route_watch_event(&message.payload);
        }
        let request_id = message.header.request_id;
        let Some(pending) = self.pending.remove(&request_id) else {
            return Some(Event::Fault(Fault::UnknownRequest {
                request_id,
                message_type: message.header.message_type,
            }));
        };
        let result = decode_reply(pending.message_type, pending.kind, &message);
        if let Some(token) = pending.watch_token {
            self.settle_watch(pending.message_type, &token, &result);
        }
        Some(Event::Reply { request_id, result })
    }

    fn settle_watch(
        &mut self,
        request_type: MessageType,
        token: &str,
        result: &Result<Reply, ReplyError>,
    ) {
        let Some(entry) = self.watches.get_mut(token) else {
            return;
        };
        match (request_type, result) {
            (MessageType::Watch, Ok(_)) => entry.state = WatchState::Active,
            (MessageType::Watch, Err(_)) => {
                self.watches.remove(token);
            }
            // ENOENT: the server has no such watch, so there is nothing left to remove.
            (MessageType::Unwatch, Ok(_))
            | (MessageType::Unwatch, Err(ReplyError::Xenstore(XsError::NotFound))) => {
                self.watches.remove(token);
            }
            (MessageType::Unwatch, Err(_)) => entry.state = WatchState::Active,
            _ => {}
        }
    }

    fn route_watch_event(&self, payload: &[u8]) -> Option<Event<Owner>> {
        let Some(event) = WatchEvent::decode(payload) else {
            return Some(Event::Fault(Fault::BadWatchEvent));
        };
        let Some(entry) = self.watches.get(&event.token) else {
            return Some(Event::Fault(Fault::UnknownWatch { token: event.token }));
        };
        if entry.state == WatchState::Removing {
            // Events the server queued before it saw our unwatch: expected, dropped quietly.
            return None;
        }
        let owner = entry.owner.clone();
        Some(Event::Watch { owner, event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_ids_are_skipped_when_the_counter_comes_round() {
        let mut client: Client<()> = Client::new();
        let read = |client: &mut Client<()>| {
            client
                .send(&Operation::Read { path: "/a" })
                .map(|outgoing| outgoing.request_id)
        };
        assert_eq!(read(&mut client), Ok(RequestId::new(1)));
        assert_eq!(read(&mut client), Ok(RequestId::new(2)));
        // As if four billion requests had come and gone while 1 and 2 stayed unanswered.
        client.next_request_id = u32::MAX;
        assert_eq!(read(&mut client), Ok(RequestId::new(u32::MAX)));
        assert_eq!(
            read(&mut client),
            Ok(RequestId::new(3)),
            "0 reserved, 1 and 2 in use"
        );
        assert_eq!(client.outstanding(), 4);
    }
}
