//! The kernel's xenstore connection: the xenstore crate's `RingClient` over the store page from start_info, notified and waited for through the store port.
//!
//! Requests are queued and pushed into the ring as room allows, several in flight; replies
//! (kept by request id) and watch events are read out whenever [`Xenstore::pump`] runs (the run
//! loop calls it on every turn) and stay queued until taken, so the loop can see them even
//! when a blocking call consumed the store port's wake-up. xenstored's event channel is
//! notified whenever bytes moved either way. The blocking helpers (`read`, `write`, ...) send,
//! then wait on the store port until their own reply arrives, keeping everything else queued;
//! the wait's one-shot timer is cancelled when it ends. Everything xenstored says is decoded by
//! the crate; a broken stream marks the client broken, never panics.
// Driven by peers (replies and watch events carry what they wrote): nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::event_wait;
use super::xen::event_channel;
use super::xen::ring_pages::{self, RingPageError};
use super::xen::shared_region::SharedRegion;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use grantsvc::boot_info::BootInfo;
use grantsvc::ids::{DomId, EvtchnPort};
use grantsvc::peer::store_requests::StoreRequests;
use grantsvc::shared_memory::{OutOfBounds, SharedMemory};
use xenstore::ring_client::{RingClient, SubmitError};
use xenstore::ring_transport::RingMemory;
use xenstore::transaction::TryAgain;
use xenstore::{Operation, Reply, ReplyError, RequestError, RequestId, TransactionId, WatchEvent};

/// How long a blocking request waits for its reply.
const REPLY_PATIENCE_NS: u64 = 10_000_000_000;

/// Who gets a watch's events: a key of the caller's choosing.
pub type WatchOwner = u32;

/// Why a xenstore call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XenstoreError {
    /// The store page could not be used.
    Page(RingPageError),
    /// The ring or the byte stream is broken; the client is unusable.
    Broken(String),
    /// The request was refused before sending.
    Request(RequestError),
    /// xenstored answered with an error.
    Reply(ReplyError),
    /// The reply decoded, but not as this call expects.
    Unexpected(Reply),
    /// No reply in time.
    Timeout,
    /// Too many bytes wait for room in the ring.
    Backlog,
}

impl fmt::Display for XenstoreError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenstoreError::Page(error) => write!(formatter, "xenstore page: {error}"),
            XenstoreError::Broken(reason) => {
                write!(formatter, "xenstore connection broken: {reason}")
            }
            XenstoreError::Request(error) => write!(formatter, "xenstore request refused: {error}"),
            XenstoreError::Reply(error) => write!(formatter, "xenstore: {error}"),
            XenstoreError::Unexpected(reply) => {
                write!(formatter, "unexpected xenstore reply ({:?})", reply.kind())
            }
            XenstoreError::Timeout => write!(formatter, "no xenstore reply within 10 s"),
            XenstoreError::Backlog => write!(formatter, "xenstore request backlog full"),
        }
    }
}

impl TryAgain for XenstoreError {
    fn is_try_again(&self) -> bool {
        matches!(self, XenstoreError::Reply(error) if error.is_try_again())
    }
}

impl XenstoreError {
    /// True for xenstored's ENOENT.
    #[cfg(feature = "lab")]
    pub fn is_not_found(&self) -> bool {
        *self == XenstoreError::Reply(ReplyError::Xenstore(xenstore::XsError::NotFound))
    }
}

impl From<RequestError> for XenstoreError {
    fn from(error: RequestError) -> XenstoreError {
        XenstoreError::Request(error)
    }
}

impl From<SubmitError> for XenstoreError {
    fn from(error: SubmitError) -> XenstoreError {
        match error {
            SubmitError::Broken(reason) => XenstoreError::Broken(reason),
            SubmitError::Request(error) => XenstoreError::Request(error),
            SubmitError::Backlog => XenstoreError::Backlog,
        }
    }
}

/// The store page as the ring transport sees it.
struct StorePage(SharedRegion);

impl RingMemory for StorePage {
    type Error = OutOfBounds;
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        self.0.read_bytes(offset, into)
    }
    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        self.0.write_bytes(offset, from)
    }
    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        self.0.load_u32(offset)
    }
    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.0.store_u32(offset, value)
    }
}

/// A connection to xenstored over the store ring.
pub struct Xenstore {
    page: StorePage,
    port: EvtchnPort,
    client: RingClient<WatchOwner>,
    faults: u64,
}

impl Xenstore {
    /// Attaches to the store ring Xen set up for us.
    pub fn connect(boot_info: &BootInfo) -> Result<Xenstore, XenstoreError> {
        let page = StorePage(ring_pages::xenstore().map_err(XenstoreError::Page)?);
        let client =
            RingClient::attach(&page).map_err(|error| XenstoreError::Broken(error.to_string()))?;
        Ok(Xenstore {
            page,
            port: boot_info.store_port(),
            client,
            faults: 0,
        })
    }

    /// xenstored's event channel.
    #[cfg(feature = "lab")]
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Why the connection is unusable, if it is.
    #[cfg(feature = "lab")]
    pub fn broken(&self) -> Option<&str> {
        self.client.broken()
    }

    /// Non-fatal protocol faults seen (replies or events nobody waited for).
    #[cfg(feature = "lab")]
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Queues a request and pushes it out; its reply comes from [`Xenstore::take_reply`].
    pub fn submit(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, XenstoreError> {
        let request_id = self.client.submit(transaction, operation)?;
        self.pump();
        Ok(request_id)
    }

    /// Queues a watch on `path` whose events go to `owner`; returns the request id of the
    /// acknowledgement.
    pub fn submit_watch(
        &mut self,
        path: &str,
        token: &str,
        owner: WatchOwner,
    ) -> Result<RequestId, XenstoreError> {
        let request_id = self.client.submit_watch(path, token, owner)?;
        self.pump();
        Ok(request_id)
    }

    /// Queues the removal of the watch with `token`.
    pub fn submit_unwatch(&mut self, token: &str) -> Result<RequestId, XenstoreError> {
        let request_id = self.client.submit_unwatch(token)?;
        self.pump();
        Ok(request_id)
    }

    /// The reply to `request_id`, if it arrived.
    pub fn take_reply(&mut self, request_id: RequestId) -> Option<Result<Reply, ReplyError>> {
        self.client.take_reply(request_id)
    }

    /// Stops waiting for `request_id`: its reply will be dropped.
    pub fn abandon(&mut self, request_id: RequestId) {
        self.client.abandon(request_id);
    }

    /// Watch events received so far.
    pub fn take_watch_events(&mut self) -> Vec<(WatchOwner, WatchEvent)> {
        self.client.take_watch_events()
    }

    /// Watch events received and not yet taken: ready work for the run loop, whose store-port
    /// wake-up a blocking request may already have consumed.
    pub fn queued_watch_events(&self) -> usize {
        self.client.queued_watch_events()
    }

    /// True when the reply to `request_id` arrived and is not yet taken.
    pub fn has_reply(&self, request_id: RequestId) -> bool {
        self.client.has_reply(request_id)
    }

    /// Waits (driving the ring) until every request sent has its reply or `deadline_ns`
    /// passes; true when nothing is left in flight. Before the domain goes, so that what it
    /// wrote last reaches xenstored.
    pub fn flush(&mut self, deadline_ns: u64) -> bool {
        loop {
            self.pump();
            if self.client.in_flight() == 0 {
                return true;
            }
            if self.client.broken().is_some() || event_wait::now_ns() >= deadline_ns {
                return false;
            }
            event_wait::wait_for_port(self.port, deadline_ns);
        }
    }

    /// Removes the watch with `token` without waiting for the acknowledgement.
    pub fn unwatch_later(&mut self, token: &str) -> Result<(), XenstoreError> {
        let request_id = self.submit_unwatch(token)?;
        self.abandon(request_id);
        Ok(())
    }

    /// Waits (driving the ring) until a watch event for `owner` is queued or `deadline_ns`
    /// passes; leaves every event queued. True if one is.
    pub fn wait_for_watch_event(&mut self, owner: WatchOwner, deadline_ns: u64) -> bool {
        loop {
            self.pump();
            if self.client.has_watch_event(|queued| *queued == owner) {
                return true;
            }
            if self.client.broken().is_some() || event_wait::now_ns() >= deadline_ns {
                return false;
            }
            event_wait::wait_for_port(self.port, deadline_ns);
        }
    }

    /// Moves bytes: queued requests into the ring, replies and events out of it. Notifies
    /// xenstored when anything moved.
    pub fn pump(&mut self) {
        let was_broken = self.client.broken().is_some();
        let pumped = self.client.pump(&self.page);
        for fault in pumped.faults {
            self.faults += 1;
            log::warn!("xenstore: {fault}");
        }
        if let (false, Some(reason)) = (was_broken, self.client.broken()) {
            log::error!("xenstore: {reason}; the connection is abandoned");
        }
        if pumped.moved {
            // Nothing to do if it fails: xenstored also looks at the ring on its own events.
            let _ = event_channel::send(self.port);
        }
    }

    /// Waits (driving the ring) for the reply to `request_id`.
    pub fn wait_reply(&mut self, request_id: RequestId) -> Result<Reply, XenstoreError> {
        let deadline = event_wait::now_ns().saturating_add(REPLY_PATIENCE_NS);
        loop {
            self.pump();
            if let Some(result) = self.take_reply(request_id) {
                return result.map_err(XenstoreError::Reply);
            }
            if let Some(reason) = self.client.broken() {
                return Err(XenstoreError::Broken(reason.to_string()));
            }
            if event_wait::now_ns() >= deadline {
                self.abandon(request_id);
                return Err(XenstoreError::Timeout);
            }
            event_wait::wait_for_port(self.port, deadline);
        }
    }

    /// Sends `operation` and waits for its reply.
    pub fn request(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<Reply, XenstoreError> {
        let request_id = self.submit(transaction, operation)?;
        self.wait_reply(request_id)
    }

    fn acknowledged(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<(), XenstoreError> {
        match self.request(transaction, operation)? {
            Reply::Acknowledged => Ok(()),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    pub fn read(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<Vec<u8>, XenstoreError> {
        match self.request(transaction, &Operation::Read { path })? {
            Reply::Value(value) => Ok(value),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    /// Reads a value that must be UTF-8 text.
    pub fn read_string(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<String, XenstoreError> {
        let value = self.read(transaction, path)?;
        String::from_utf8(value)
            .map_err(|error| XenstoreError::Unexpected(Reply::Value(error.into_bytes())))
    }

    pub fn write(
        &mut self,
        transaction: TransactionId,
        path: &str,
        value: &[u8],
    ) -> Result<(), XenstoreError> {
        self.acknowledged(transaction, &Operation::Write { path, value })
    }

    #[cfg(feature = "lab")]
    pub fn mkdir(&mut self, transaction: TransactionId, path: &str) -> Result<(), XenstoreError> {
        self.acknowledged(transaction, &Operation::Mkdir { path })
    }

    #[cfg(feature = "lab")]
    pub fn remove(&mut self, transaction: TransactionId, path: &str) -> Result<(), XenstoreError> {
        self.acknowledged(transaction, &Operation::Remove { path })
    }

    #[cfg(feature = "lab")]
    pub fn directory(
        &mut self,
        transaction: TransactionId,
        path: &str,
    ) -> Result<Vec<String>, XenstoreError> {
        match self.request(transaction, &Operation::Directory { path })? {
            Reply::Directory(names) => Ok(names),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    #[cfg(feature = "lab")]
    pub fn get_permissions(
        &mut self,
        path: &str,
    ) -> Result<xenstore::NodePermissions, XenstoreError> {
        match self.request(TransactionId::NONE, &Operation::GetPermissions { path })? {
            Reply::Permissions(permissions) => Ok(permissions),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    #[cfg(feature = "lab")]
    pub fn set_permissions(
        &mut self,
        path: &str,
        permissions: &xenstore::NodePermissions,
    ) -> Result<(), XenstoreError> {
        self.acknowledged(
            TransactionId::NONE,
            &Operation::SetPermissions { path, permissions },
        )
    }

    pub fn get_domain_path(&mut self, domain: DomId) -> Result<String, XenstoreError> {
        match self.request(TransactionId::NONE, &Operation::GetDomainPath { domain })? {
            Reply::DomainPath(path) => Ok(path),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    /// Registers a watch and waits for xenstored's acknowledgement.
    pub fn watch(
        &mut self,
        path: &str,
        token: &str,
        owner: WatchOwner,
    ) -> Result<(), XenstoreError> {
        let request_id = self.submit_watch(path, token, owner)?;
        match self.wait_reply(request_id)? {
            Reply::Acknowledged => Ok(()),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    /// Removes a watch and waits for the acknowledgement.
    #[cfg(feature = "lab")]
    pub fn unwatch(&mut self, token: &str) -> Result<(), XenstoreError> {
        let request_id = self.submit_unwatch(token)?;
        match self.wait_reply(request_id)? {
            Reply::Acknowledged => Ok(()),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    #[cfg(feature = "lab")]
    fn transaction_start(&mut self) -> Result<TransactionId, XenstoreError> {
        match self.request(TransactionId::NONE, &Operation::TransactionStart)? {
            Reply::TransactionStarted(transaction) => Ok(transaction),
            other => Err(XenstoreError::Unexpected(other)),
        }
    }

    /// Runs `body` in a transaction and commits it, running it all again when xenstored
    /// answers the commit with EAGAIN (at most `max_attempts` runs). A failing body abandons
    /// the transaction. Returns the body's result and the number of attempts made.
    #[cfg(feature = "lab")]
    pub fn transaction<R>(
        &mut self,
        max_attempts: u32,
        mut body: impl FnMut(&mut Self, TransactionId, u32) -> Result<R, XenstoreError>,
    ) -> Result<(R, u32), XenstoreError> {
        xenstore::transaction::retry_transaction(max_attempts, |attempt| {
            let transaction = self.transaction_start()?;
            match body(self, transaction, attempt) {
                Ok(result) => self
                    .acknowledged(transaction, &Operation::TransactionEnd { commit: true })
                    .map(|()| (result, attempt)),
                Err(error) => {
                    // Abandon it; the body's error is the one worth reporting.
                    let _ = self
                        .acknowledged(transaction, &Operation::TransactionEnd { commit: false });
                    Err(error)
                }
            }
        })
    }
}

/// The peer framework's requests go through the same ring, never waiting.
impl StoreRequests for Xenstore {
    type Error = XenstoreError;

    fn submit_in(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, XenstoreError> {
        Xenstore::submit(self, transaction, operation)
    }

    fn take_reply(&mut self, id: RequestId) -> Option<Result<Reply, ReplyError>> {
        Xenstore::take_reply(self, id)
    }

    fn has_reply(&self, id: RequestId) -> bool {
        Xenstore::has_reply(self, id)
    }

    fn abandon(&mut self, id: RequestId) {
        Xenstore::abandon(self, id);
    }
}
