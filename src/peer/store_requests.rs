//! How the peer framework's target-independent code talks to xenstore without waiting: a request is submitted now and its reply taken later by request id.
//!
//! The kernel implements [`StoreRequests`] once over its store ring; host tests implement it
//! over the xenstore crate's fake xenstored (`fake_store`). Code written against it (the
//! backend-root scans, vchan discovery, transactional writes) keeps several requests in flight
//! and never blocks the service loop on a round trip.

use alloc::vec::Vec;
use core::fmt;
use xenstore::{Operation, Reply, ReplyError, RequestId, TransactionId, XsError};

/// A xenstore connection that sends requests and hands their replies back by id.
pub trait StoreRequests {
    /// Why a request could not be sent (the connection is broken, its backlog full, ...).
    type Error: fmt::Display;

    /// Queues `operation` (in `transaction`, or none) for xenstored.
    fn submit_in(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, Self::Error>;

    /// The reply to `id`, if it has arrived (taken: asked again, it is `None`).
    fn take_reply(&mut self, id: RequestId) -> Option<Result<Reply, ReplyError>>;

    /// True when the reply to `id` has arrived and is not yet taken.
    fn has_reply(&self, id: RequestId) -> bool;

    /// Stops waiting for `id`: its reply will be dropped.
    fn abandon(&mut self, id: RequestId);

    /// Queues `operation` outside any transaction.
    fn submit(&mut self, operation: &Operation<'_>) -> Result<RequestId, Self::Error> {
        self.submit_in(TransactionId::NONE, operation)
    }
}

/// Takes the replies that have arrived for `ids`, in the order of `ids`.
pub fn take_arrived<S: StoreRequests>(
    store: &mut S,
    ids: &[RequestId],
) -> Vec<(RequestId, Result<Reply, ReplyError>)> {
    ids.iter()
        .filter_map(|id| Some((*id, store.take_reply(*id)?)))
        .collect()
}

/// What a read's reply says of the node: its value, `Ok(None)` when it does not exist, or the
/// error xenstored answered (or the reply was not a value).
pub fn read_value(result: Result<Reply, ReplyError>) -> Result<Option<Vec<u8>>, ReplyError> {
    match result {
        Ok(Reply::Value(value)) => Ok(Some(value)),
        Err(ReplyError::Xenstore(XsError::NotFound)) => Ok(None),
        Err(error) => Err(error),
        Ok(_) => Err(ReplyError::BadPayload(xenstore::reply::ReplyKind::Value)),
    }
}

/// What a directory's reply says: its children's names, none when it does not exist, or the
/// error xenstored answered.
pub fn directory_names(
    result: Result<Reply, ReplyError>,
) -> Result<Vec<alloc::string::String>, ReplyError> {
    match result {
        Ok(Reply::Directory(names)) => Ok(names),
        Err(ReplyError::Xenstore(XsError::NotFound)) => Ok(Vec::new()),
        Err(error) => Err(error),
        Ok(_) => Err(ReplyError::BadPayload(
            xenstore::reply::ReplyKind::Directory,
        )),
    }
}
