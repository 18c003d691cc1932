//! Nodes written in one xenstore transaction without waiting: its start, its writes and its commit are requests in flight, each sent when the one before is answered, and the whole runs again when xenstored answers the commit with EAGAIN.
//!
//! A session that writes its nodes in a transaction (blkif at connect: a reader sees all of
//! them or none) waits in its connecting phase meanwhile; what it asked to do after the write
//! (`then`: its `state`, its report) is kept here and handed back when the transaction
//! commits, so it announces nothing before its nodes are there. Other sessions are served
//! meanwhile. The writes of one run are in flight together; the commit is sent only once all
//! were acknowledged (a write refused, past a quota, must not be committed without it). A
//! session that ends meanwhile is forgotten: its open transaction is ended without a commit,
//! so none stays open in xenstored. xenstored allows a domain only a few open transactions (10
//! by default, `--transaction`): at most [`MAX_OPEN`] are open at once, and further writes
//! wait their turn in the order they came.

use super::store_requests::StoreRequests;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;
use runs::{RunEnd, Runs, Ticket};
use xenstore::{Reply, ReplyError, RequestId};

mod runs;

/// Runs of a transaction xenstored answers with EAGAIN before giving up.
pub const ATTEMPTS: u32 = 5;
/// Transactions open at once (xenstored's default quota is 10 per domain; the rest is left
/// for others).
pub const MAX_OPEN: usize = 4;

/// What became of a transaction's write.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<K, T> {
    /// Committed, in `attempts` runs: `then` may go on.
    Committed { key: K, then: T, attempts: u32 },
    /// Not written (refused, or EAGAIN every time): why, for the log.
    Failed { key: K, then: T, reason: String },
}

/// The transactions' writes in flight, one at most per session `K`, each with what its
/// session does after it (`T`). The writes themselves are [`Runs`], which know them by ticket;
/// this adds only whose each is and what it keeps, the part that differs per protocol.
#[derive(Debug)]
pub struct TransactionWrites<K, T> {
    runs: Runs,
    /// Per write: its session and what that session does after it.
    sessions: LiteMap<Ticket, (K, T)>,
}

impl<K, T> Default for TransactionWrites<K, T> {
    fn default() -> Self {
        TransactionWrites {
            runs: Runs::default(),
            sessions: LiteMap::new(),
        }
    }
}

impl<K: Copy + Ord, T> TransactionWrites<K, T> {
    /// Starts writing `nodes` ((path, value), in order) for `key` in one transaction, or
    /// queues it while [`MAX_OPEN`] are open; `then` comes back with the outcome. Err (with
    /// `then`) when the start could not be sent. A write `key` still has is forgotten first.
    pub fn start<S: StoreRequests>(
        &mut self,
        store: &mut S,
        key: K,
        nodes: Vec<(String, String)>,
        then: T,
    ) -> Result<(), (T, String)> {
        drop(self.forget(store, key));
        match self.runs.start(store, nodes) {
            Ok(ticket) => {
                self.sessions.insert(ticket, (key, then));
                Ok(())
            }
            Err(reason) => Err((then, reason)),
        }
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        self.runs.ids()
    }

    /// True when a reply has arrived, or a queued write can start (work for the run loop).
    pub fn has_replies<S: StoreRequests>(&self, store: &S) -> bool {
        self.runs.has_replies(store)
    }

    /// Starts queued writes where places are free, and takes the replies that arrived (and
    /// those to the requests they lead to, if already here); the writes that ended.
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Vec<Outcome<K, T>> {
        let ended = self.runs.take_replies(store);
        ended
            .into_iter()
            .filter_map(|(ticket, end)| self.outcome(ticket, end))
            .collect()
    }

    /// Forgets `key`'s write (its session ended): its replies are dropped and an open
    /// transaction is ended without a commit. Returns what it kept for the session.
    pub fn forget<S: StoreRequests>(&mut self, store: &mut S, key: K) -> Option<T> {
        // A few writes at most are in flight: a scan.
        let ticket = self
            .sessions
            .iter()
            .find(|(_, (of, _))| *of == key)
            .map(|(ticket, _)| *ticket)?;
        let (_, then) = self.sessions.remove(&ticket)?;
        self.runs.forget(store, ticket);
        Some(then)
    }

    /// Takes the reply to `id` (one of [`TransactionWrites::ids`]); the outcome if it ended
    /// a write.
    pub fn answer<S: StoreRequests>(
        &mut self,
        store: &mut S,
        id: RequestId,
        result: Result<Reply, ReplyError>,
    ) -> Option<Outcome<K, T>> {
        let (ticket, end) = self.runs.answer(store, id, result)?;
        self.outcome(ticket, end)
    }

    /// Transactions open or being opened, for the tests of the bound.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.runs.open()
    }

    fn outcome(&mut self, ticket: Ticket, end: RunEnd) -> Option<Outcome<K, T>> {
        let (key, then) = self.sessions.remove(&ticket)?;
        Some(match end {
            RunEnd::Committed { attempts } => Outcome::Committed {
                key,
                then,
                attempts,
            },
            RunEnd::Failed { reason } => Outcome::Failed { key, then, reason },
        })
    }
}

#[cfg(test)]
mod tests;
