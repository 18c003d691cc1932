//! A blocking xenstore connection over any `Read + Write` transport, such as dom0's `/dev/xen/xenbus` (feature `std`).
//!
//! Each call writes its request and reads until the reply with its id arrives;
//! [`Connection::pipeline`] sends many before reading any reply (one wake-up of xenstored for a
//! batch instead of one per request). Watch events that arrive meanwhile are queued for
//! [`Connection::next_watch_event`].

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::string::String;
use std::vec::Vec;

use crate::client::{Client, Event, Fault};
use crate::ids::{DomId, TransactionId};
use crate::permissions::NodePermissions;
use crate::reply::{Reply, ReplyError};
use crate::request::{Operation, RequestError};
use crate::transaction::{retry_transaction, TryAgain};
use crate::watch::WatchEvent;
use crate::wire::{HEADER_SIZE, PAYLOAD_MAX};

/// Why a blocking call failed.
#[derive(Debug)]
pub enum ConnectionError {
    Io(io::Error),
    /// The transport reached end of file.
    Closed,
    /// The request was refused before it was sent.
    Request(RequestError),
    /// xenstored answered with an error (or an undecodable reply).
    Reply(ReplyError),
    /// xenstored broke the protocol; the connection is unusable.
    Protocol(Fault),
    /// The reply decoded, but not as the kind this call expects.
    UnexpectedReply(Reply),
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Io(error) => write!(formatter, "xenstore transport: {error}"),
            ConnectionError::Closed => formatter.write_str("xenstore transport closed"),
            ConnectionError::Request(error) => write!(formatter, "xenstore request: {error}"),
            ConnectionError::Reply(error) => write!(formatter, "{error}"),
            ConnectionError::Protocol(fault) => write!(formatter, "{fault}"),
            ConnectionError::UnexpectedReply(reply) => {
                write!(formatter, "unexpected xenstore reply {reply:?}")
            }
        }
    }
}

impl std::error::Error for ConnectionError {}

impl From<io::Error> for ConnectionError {
    fn from(error: io::Error) -> ConnectionError {
        ConnectionError::Io(error)
    }
}

impl From<RequestError> for ConnectionError {
    fn from(error: RequestError) -> ConnectionError {
        ConnectionError::Request(error)
    }
}

impl TryAgain for ConnectionError {
    fn is_try_again(&self) -> bool {
        matches!(self, ConnectionError::Reply(error) if error.is_try_again())
    }
}

/// A blocking client over `transport`.
pub struct Connection<T> {
    transport: T,
    client: Client<()>,
    watch_events: VecDeque<WatchEvent>,
    /// Non-fatal protocol faults seen (unknown ids or tokens), kept for the caller to log.
    faults: Vec<Fault>,
}

impl<T: Read + Write> Connection<T> {
    pub fn new(transport: T) -> Connection<T> {
        Connection {
            transport,
            client: Client::new(),
            watch_events: VecDeque::new(),
            faults: Vec::new(),
        }
    }

    /// Sends `operation` in `transaction` and waits for its reply.
    pub fn request(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<Reply, ConnectionError> {
        let outgoing = self.client.send_in_transaction(transaction, operation)?;
        self.exchange(outgoing)
    }

    pub fn read(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<Vec<u8>, ConnectionError> {
        match self.request(transaction, &Operation::Read { path })? {
            Reply::Value(value) => Ok(value),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    /// Reads a value that must be UTF-8 text.
    pub fn read_string(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<String, ConnectionError> {
        let value = self.read(transaction, path)?;
        String::from_utf8(value)
            .map_err(|error| ConnectionError::UnexpectedReply(Reply::Value(error.into_bytes())))
    }

    pub fn write(
        &mut self,
        transaction: TransactionId,
        path: &str,
        value: &[u8],
    ) -> Result<(), ConnectionError> {
        self.acknowledged(transaction, &Operation::Write { path, value })
    }

    pub fn mkdir(&mut self, transaction: TransactionId, path: &str) -> Result<(), ConnectionError> {
        self.acknowledged(transaction, &Operation::Mkdir { path })
    }

    pub fn remove(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<(), ConnectionError> {
        self.acknowledged(transaction, &Operation::Remove { path })
    }

    pub fn directory(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<Vec<String>, ConnectionError> {
        match self.request(transaction, &Operation::Directory { path })? {
            Reply::Directory(names) => Ok(names),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    pub fn get_permissions(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<NodePermissions, ConnectionError> {
        match self.request(transaction, &Operation::GetPermissions { path })? {
            Reply::Permissions(permissions) => Ok(permissions),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    pub fn set_permissions(
        &mut self,
        transaction: TransactionId,
        path: &str,
        permissions: &NodePermissions,
    ) -> Result<(), ConnectionError> {
        self.acknowledged(
            transaction,
            &Operation::SetPermissions { path, permissions },
        )
    }

    pub fn get_domain_path(&mut self, domain: DomId) -> Result<String, ConnectionError> {
        match self.request(TransactionId::NONE, &Operation::GetDomainPath { domain })? {
            Reply::DomainPath(path) => Ok(path),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    pub fn transaction_start(&mut self) -> Result<TransactionId, ConnectionError> {
        match self.request(TransactionId::NONE, &Operation::TransactionStart)? {
            Reply::TransactionStarted(transaction) => Ok(transaction),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    /// Commits (`commit`) or abandons `transaction`. `EAGAIN` means run it again.
    pub fn transaction_end(
        &mut self,
        transaction: TransactionId,
        commit: bool,
    ) -> Result<(), ConnectionError> {
        self.acknowledged(transaction, &Operation::TransactionEnd { commit })
    }

    /// Runs `body` in a transaction and commits it, running it all again on `EAGAIN`, at most
    /// `max_attempts` times. When `body` fails the transaction is abandoned.
    pub fn transaction<R>(
        &mut self,
        max_attempts: u32,
        mut body: impl FnMut(&mut Self, TransactionId) -> Result<R, ConnectionError>,
    ) -> Result<R, ConnectionError> {
        retry_transaction(max_attempts, |_attempt| {
            let transaction = self.transaction_start()?;
            match body(self, transaction) {
                Ok(result) => self.transaction_end(transaction, true).map(|()| result),
                Err(error) => {
                    // Abandon it; the body's error is the one worth reporting.
                    let _ = self.transaction_end(transaction, false);
                    Err(error)
                }
            }
        })
    }

    /// Registers a watch; its events come from [`Connection::next_watch_event`].
    pub fn watch(&mut self, path: &str, token: &str) -> Result<(), ConnectionError> {
        let outgoing = self.client.watch(path, token, ())?;
        self.expect_acknowledgement(outgoing)
    }

    pub fn unwatch(&mut self, token: &str) -> Result<(), ConnectionError> {
        let outgoing = self.client.unwatch(token)?;
        self.expect_acknowledgement(outgoing)
    }

    /// The next watch event, waiting for one if none is queued.
    pub fn next_watch_event(&mut self) -> Result<WatchEvent, ConnectionError> {
        loop {
            if let Some(event) = self.watch_events.pop_front() {
                return Ok(event);
            }
            self.receive_once(&[])?;
        }
    }

    /// Watch events already received, without waiting.
    pub fn take_watch_events(&mut self) -> Vec<WatchEvent> {
        self.watch_events.drain(..).collect()
    }

    /// Non-fatal faults seen so far (replies or events nobody waited for), for logging.
    pub fn take_faults(&mut self) -> Vec<Fault> {
        std::mem::take(&mut self.faults)
    }

    pub fn into_inner(self) -> T {
        self.transport
    }

    /// The transport, for a caller that waits until it is readable (`poll` on its descriptor)
    /// before [`Connection::receive`].
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Reads once (blocking until something arrives) and queues the watch events it carried.
    pub fn receive(&mut self) -> Result<(), ConnectionError> {
        self.receive_once(&[]).map(|_| ())
    }

    /// Sends every request of `batch` before reading any reply, then waits for all of them;
    /// their results in the order of `batch`. xenstored applies one connection's requests in
    /// the order sent, so a later request sees the effect of an earlier one. A request that
    /// could not be built fails alone; an I/O or protocol failure fails the whole batch.
    pub fn pipeline(
        &mut self,
        batch: &[(TransactionId, Operation<'_>)],
    ) -> Result<Vec<Result<Reply, ConnectionError>>, ConnectionError> {
        let mut results: Vec<Option<Result<Reply, ConnectionError>>> = Vec::new();
        let mut awaited: Vec<(crate::ids::RequestId, usize)> = Vec::new();
        let mut bytes = Vec::new();
        for (transaction, operation) in batch {
            match self.client.send_in_transaction(*transaction, operation) {
                Ok(outgoing) => {
                    awaited.push((outgoing.request_id, results.len()));
                    results.push(None);
                    // /dev/xen/xenbus takes whole messages, one per write.
                    bytes.push(outgoing.bytes);
                }
                Err(error) => results.push(Some(Err(ConnectionError::Request(error)))),
            }
        }
        for message in bytes {
            self.transport.write_all(&message)?;
        }
        self.transport.flush()?;
        while !awaited.is_empty() {
            for (request_id, result) in self.receive_once(&awaited)? {
                let slot = awaited
                    .iter()
                    .position(|(id, _)| *id == request_id)
                    .map(|position| awaited.swap_remove(position).1);
                if let Some(place) = slot.and_then(|index| results.get_mut(index)) {
                    *place = Some(result.map_err(ConnectionError::Reply));
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|result| result.unwrap_or(Err(ConnectionError::Closed)))
            .collect())
    }

    fn acknowledged(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<(), ConnectionError> {
        match self.request(transaction, operation)? {
            Reply::Acknowledged => Ok(()),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    fn expect_acknowledgement(
        &mut self,
        outgoing: crate::client::Outgoing,
    ) -> Result<(), ConnectionError> {
        match self.exchange(outgoing)? {
            Reply::Acknowledged => Ok(()),
            other => Err(ConnectionError::UnexpectedReply(other)),
        }
    }

    fn exchange(&mut self, outgoing: crate::client::Outgoing) -> Result<Reply, ConnectionError> {
        // One write per message: /dev/xen/xenbus takes whole messages.
        self.transport.write_all(&outgoing.bytes)?;
        self.transport.flush()?;
        let awaited = [(outgoing.request_id, 0)];
        loop {
            if let Some((_, result)) = self.receive_once(&awaited)?.pop() {
                return result.map_err(ConnectionError::Reply);
            }
        }
    }

    /// Reads once and dispatches; returns the replies to requests in `awaited` that arrived
    /// (the caller takes them off `awaited`).
    #[allow(clippy::type_complexity)]
    fn receive_once(
        &mut self,
        awaited: &[(crate::ids::RequestId, usize)],
    ) -> Result<Vec<(crate::ids::RequestId, Result<Reply, ReplyError>)>, ConnectionError> {
        let mut buffer = [0u8; HEADER_SIZE + PAYLOAD_MAX];
        let count = loop {
            match self.transport.read(&mut buffer) {
                Ok(0) => return Err(ConnectionError::Closed),
                Ok(count) => break count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(ConnectionError::Io(error)),
            }
        };
        let mut answers = Vec::new();
        let received = buffer.get(..count).unwrap_or_default();
        for event in self.client.receive(received) {
            match event {
                Event::Reply { request_id, result }
                    if awaited.iter().any(|(id, _)| *id == request_id) =>
                {
                    answers.push((request_id, result));
                }
                // A reply to a request whose caller gave up (after an I/O error): dropped.
                Event::Reply { .. } => {}
                Event::Watch { event, .. } => self.watch_events.push_back(event),
                Event::Fault(fault) if fault.is_fatal() => {
                    return Err(ConnectionError::Protocol(fault))
                }
                Event::Fault(fault) => self.faults.push(fault),
            }
        }
        Ok(answers)
    }
}
