//! A client over the shared ring, with no waiting of its own: requests queued and pushed as room allows, several in flight, replies kept by request id, watch events queued for their owners.
//!
//! The caller supplies the ring memory at each [`RingClient::pump`] and does the waiting
//! (the kernel blocks on the store port, a test drives a fake xenstored). Nothing here blocks,
//! so one slow reply holds up no other request: each caller takes its own reply by id when it
//! arrives. What a pump read stays queued until taken ([`RingClient::queued_watch_events`],
//! [`RingClient::queued_replies`]), so a run loop can tell that work is waiting even when the
//! event-channel wake-up that announced it was consumed by someone else's wait. At most
//! [`MAX_SENT`] requests are out at once, below xenstored's per-domain quota of outstanding
//! requests; the rest wait here in order.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use litemap::LiteMap;

use crate::client::{Client, Event, Fault};
use crate::ids::{RequestId, TransactionId};
use crate::reply::{Reply, ReplyError};
use crate::request::{Operation, RequestError};
use crate::ring_transport::{RingError, RingMemory, XenstoreRing};
use crate::watch::WatchEvent;

/// Most bytes queued for the ring before new requests are refused (a stuck xenstored must not
/// make the caller's memory grow without bound).
pub const MAX_QUEUED_BYTES: usize = 64 * 1024;

/// Most requests sent to xenstored whose replies have not arrived; more wait here, in order,
/// and go out as replies come back. C xenstored stops reading a domain's ring while the domain
/// has 20 requests outstanding (`--quota outstanding=`, the default in Xen 4.17): a client
/// that stays below that never depends on xenstored's throttling, and keeps room for the
/// requests of others sharing the connection.
pub const MAX_SENT: usize = 16;

/// Why a request was not queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The ring or the byte stream is broken; the client is unusable.
    Broken(String),
    /// The request itself was refused.
    Request(RequestError),
    /// Too many bytes wait for room in the ring.
    Backlog,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitError::Broken(reason) => {
                write!(formatter, "xenstore connection broken: {reason}")
            }
            SubmitError::Request(error) => write!(formatter, "xenstore request refused: {error}"),
            SubmitError::Backlog => formatter.write_str("xenstore request backlog full"),
        }
    }
}

impl From<RequestError> for SubmitError {
    fn from(error: RequestError) -> SubmitError {
        SubmitError::Request(error)
    }
}

/// What one pump did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pumped {
    /// Bytes moved either way: notify xenstored.
    pub moved: bool,
    /// Faults of xenstored's that dropped one message each (for the caller's log).
    pub faults: Vec<Fault>,
}

/// The client's side of the ring.
#[derive(Debug)]
pub struct RingClient<Owner> {
    ring: XenstoreRing,
    client: Client<Owner>,
    /// Bytes released to the ring, written as room allows.
    outgoing: VecDeque<u8>,
    /// Whole requests not yet released (past [`MAX_SENT`]), oldest first, and their bytes.
    held: VecDeque<Vec<u8>>,
    held_bytes: usize,
    /// Requests released whose replies have not arrived.
    sent: usize,
    replies: LiteMap<RequestId, Result<Reply, ReplyError>>,
    /// Requests whose caller stopped waiting: their replies are dropped.
    abandoned: LiteMap<RequestId, ()>,
    watch_events: VecDeque<(Owner, WatchEvent)>,
    broken: Option<String>,
}

impl<Owner: Clone> RingClient<Owner> {
    /// Takes over the ring as `memory` holds it now.
    pub fn attach<M: RingMemory>(memory: &M) -> Result<RingClient<Owner>, RingError<M::Error>> {
        Ok(RingClient {
            ring: XenstoreRing::attach(memory)?,
            client: Client::new(),
            outgoing: VecDeque::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            sent: 0,
            replies: LiteMap::new(),
            abandoned: LiteMap::new(),
            watch_events: VecDeque::new(),
            broken: None,
        })
    }

    /// Why the connection is unusable, if it is.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    fn check_usable(&self) -> Result<(), SubmitError> {
        match &self.broken {
            Some(reason) => Err(SubmitError::Broken(reason.clone())),
            None if self.outgoing.len() + self.held_bytes > MAX_QUEUED_BYTES => {
                Err(SubmitError::Backlog)
            }
            None => Ok(()),
        }
    }

    /// Queues a request; its reply comes from [`RingClient::take_reply`] after pumping.
    pub fn submit(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, SubmitError> {
        self.check_usable()?;
        let outgoing = self.client.send_in_transaction(transaction, operation)?;
        self.queue(outgoing.bytes);
        Ok(outgoing.request_id)
    }

    /// Queues a watch on `path` whose events go to `owner`; returns the acknowledgement's id.
    pub fn submit_watch(
        &mut self,
        path: &str,
        token: &str,
        owner: Owner,
    ) -> Result<RequestId, SubmitError> {
        self.check_usable()?;
        let outgoing = self.client.watch(path, token, owner)?;
        self.queue(outgoing.bytes);
        Ok(outgoing.request_id)
    }

    /// Queues the removal of the watch with `token`.
    pub fn submit_unwatch(&mut self, token: &str) -> Result<RequestId, SubmitError> {
        self.check_usable()?;
        let outgoing = self.client.unwatch(token)?;
        self.queue(outgoing.bytes);
        Ok(outgoing.request_id)
    }

    /// Holds a request's bytes until fewer than [`MAX_SENT`] are out.
    fn queue(&mut self, bytes: Vec<u8>) {
        self.held_bytes += bytes.len();
        self.held.push_back(bytes);
        self.release();
    }

    /// Releases held requests to the ring while fewer than [`MAX_SENT`] are out.
    fn release(&mut self) {
        while self.sent < MAX_SENT {
            let Some(bytes) = self.held.pop_front() else {
                return;
            };
            self.held_bytes -= bytes.len();
            self.outgoing.extend(bytes);
            self.sent += 1;
        }
    }

    /// Requests sent to xenstored whose replies have not arrived (at most [`MAX_SENT`]).
    pub fn sent(&self) -> usize {
        self.sent
    }

    /// The reply to `request_id`, if it arrived.
    pub fn take_reply(&mut self, request_id: RequestId) -> Option<Result<Reply, ReplyError>> {
        self.replies.remove(&request_id)
    }

    /// True when the reply to `request_id` arrived and is not yet taken.
    pub fn has_reply(&self, request_id: RequestId) -> bool {
        self.replies.contains_key(&request_id)
    }

    /// True while `request_id` awaits its reply (sent or queued, not yet arrived).
    pub fn is_outstanding(&self, request_id: RequestId) -> bool {
        self.client.is_outstanding(request_id)
    }

    /// Stops waiting for `request_id`: its reply will be dropped.
    pub fn abandon(&mut self, request_id: RequestId) {
        if self.replies.remove(&request_id).is_none() && self.client.is_outstanding(request_id) {
            self.abandoned.insert(request_id, ());
        }
    }

    /// Watch events received so far, oldest first.
    pub fn take_watch_events(&mut self) -> Vec<(Owner, WatchEvent)> {
        self.watch_events.drain(..).collect()
    }

    /// Watch events received and not yet taken.
    pub fn queued_watch_events(&self) -> usize {
        self.watch_events.len()
    }

    /// True when a watch event for an owner that `wanted` accepts is queued.
    pub fn has_watch_event(&self, wanted: impl Fn(&Owner) -> bool) -> bool {
        self.watch_events.iter().any(|(owner, _)| wanted(owner))
    }

    /// Replies received and not yet taken.
    pub fn queued_replies(&self) -> usize {
        self.replies.len()
    }

    /// Requests sent or queued whose replies have not arrived.
    pub fn in_flight(&self) -> usize {
        self.client.outstanding()
    }

    /// Moves bytes: queued requests into the ring, replies and events out of it.
    pub fn pump<M: RingMemory>(&mut self, memory: &M) -> Pumped
    where
        M::Error: fmt::Display,
    {
        let mut pumped = Pumped::default();
        if self.broken.is_some() {
            return pumped;
        }
        if !self.write_out(memory, &mut pumped) {
            return pumped;
        }
        let mut buffer = [0u8; 1024];
        loop {
            match self.ring.read(memory, &mut buffer) {
                Ok(0) => break,
                Ok(count) => {
                    pumped.moved = true;
                    let received = buffer.get(..count).unwrap_or_default();
                    for event in self.client.receive(received) {
                        self.dispatch(event, &mut pumped.faults);
                    }
                    if self.broken.is_some() {
                        return pumped;
                    }
                }
                Err(error) => {
                    self.broken = Some(error.to_string());
                    return pumped;
                }
            }
        }
        // Replies read released held requests: out with them now.
        self.write_out(memory, &mut pumped);
        pumped
    }

    /// Writes released bytes as the ring has room; false when the ring broke.
    fn write_out<M: RingMemory>(&mut self, memory: &M, pumped: &mut Pumped) -> bool
    where
        M::Error: fmt::Display,
    {
        while !self.outgoing.is_empty() {
            let (first, second) = self.outgoing.as_slices();
            let chunk = if first.is_empty() { second } else { first };
            match self.ring.write(memory, chunk) {
                Ok(0) => break,
                Ok(written) => {
                    self.outgoing.drain(..written);
                    pumped.moved = true;
                }
                Err(error) => {
                    self.broken = Some(error.to_string());
                    return false;
                }
            }
        }
        true
    }

    fn dispatch(&mut self, event: Event<Owner>, faults: &mut Vec<Fault>) {
        match event {
            Event::Reply { request_id, result } => {
                self.sent = self.sent.saturating_sub(1);
                self.release();
                if self.abandoned.remove(&request_id).is_none() {
                    self.replies.insert(request_id, result);
                }
            }
            Event::Watch { owner, event } => self.watch_events.push_back((owner, event)),
            Event::Fault(fault) if fault.is_fatal() => self.broken = Some(fault.to_string()),
            Event::Fault(fault) => faults.push(fault),
        }
    }
}
