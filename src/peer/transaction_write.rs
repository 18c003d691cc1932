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

use super::store_requests::{take_arrived, StoreRequests};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;
use xenstore::{Operation, Reply, ReplyError, RequestId, TransactionId};

/// Runs of a transaction xenstored answers with EAGAIN before giving up.
pub const ATTEMPTS: u32 = 5;
/// Transactions open at once (xenstored's default quota is 10 per domain; the rest is left
/// for others).
pub const MAX_OPEN: usize = 4;

/// Where a transaction's write stands.
#[derive(Debug)]
enum Stage {
    /// Waiting for one of the [`MAX_OPEN`] places.
    Queued,
    /// Its start sent.
    Starting(RequestId),
    /// Its writes sent; those not yet acknowledged.
    Writing {
        transaction: TransactionId,
        unanswered: Vec<RequestId>,
    },
    /// Its commit sent.
    Committing { end: RequestId },
}

/// One session's write.
#[derive(Debug)]
struct Write<T> {
    /// (path, value), written in this order.
    nodes: Vec<(String, String)>,
    attempt: u32,
    stage: Stage,
    then: T,
}

/// What became of a transaction's write.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome<K, T> {
    /// Committed, in `attempts` runs: `then` may go on.
    Committed { key: K, then: T, attempts: u32 },
    /// Not written (refused, or EAGAIN every time): why, for the log.
    Failed { key: K, then: T, reason: String },
}

/// The transactions' writes in flight, one at most per session `K`, each with what its
/// session does after it (`T`).
#[derive(Debug)]
pub struct TransactionWrites<K, T> {
    writes: LiteMap<K, Write<T>>,
    /// The writes waiting for a place, oldest first.
    queued: VecDeque<K>,
    /// Transactions of forgotten sessions whose start is still to be answered: ended without
    /// a commit once it is.
    orphans: Vec<RequestId>,
}

impl<K, T> Default for TransactionWrites<K, T> {
    fn default() -> Self {
        TransactionWrites {
            writes: LiteMap::new(),
            queued: VecDeque::new(),
            orphans: Vec::new(),
        }
    }
}

impl<K: Copy + Ord, T> TransactionWrites<K, T> {
    /// Starts writing `nodes` ((path, value), in order) for `key` in one transaction, or
    /// queues it while [`MAX_OPEN`] are open; `then` comes back with the outcome. Err (with
    /// `then`) when the start could not be sent.
    pub fn start<S: StoreRequests>(
        &mut self,
        store: &mut S,
        key: K,
        nodes: Vec<(String, String)>,
        then: T,
    ) -> Result<(), (T, String)> {
        let stage = if self.open() >= MAX_OPEN {
            self.queued.push_back(key);
            Stage::Queued
        } else {
            match store.submit(&Operation::TransactionStart) {
                Ok(id) => Stage::Starting(id),
                Err(error) => return Err((then, format!("starting a transaction: {error}"))),
            }
        };
        self.writes.insert(
            key,
            Write {
                nodes,
                attempt: 1,
                stage,
                then,
            },
        );
        Ok(())
    }

    /// Transactions open or being opened (those of forgotten sessions included).
    fn open(&self) -> usize {
        self.writes.len() - self.queued.len() + self.orphans.len()
    }

    /// Starts the oldest queued writes while places are free; those that cannot be started
    /// fail.
    fn start_queued<S: StoreRequests>(&mut self, store: &mut S) -> Vec<Outcome<K, T>> {
        let mut failed = Vec::new();
        while self.open() < MAX_OPEN {
            let Some(key) = self.queued.pop_front() else {
                break;
            };
            match store.submit(&Operation::TransactionStart) {
                Ok(id) => {
                    if let Some(write) = self.writes.get_mut(&key) {
                        write.stage = Stage::Starting(id);
                    }
                }
                Err(error) => {
                    if let Some(write) = self.writes.remove(&key) {
                        failed.push(Outcome::Failed {
                            key,
                            then: write.then,
                            reason: format!("starting a transaction: {error}"),
                        });
                    }
                }
            }
        }
        failed
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        let mut ids = self.orphans.clone();
        for write in self.writes.values() {
            match &write.stage {
                Stage::Queued => {}
                Stage::Starting(id) | Stage::Committing { end: id } => ids.push(*id),
                Stage::Writing { unanswered, .. } => ids.extend(unanswered.iter().copied()),
            }
        }
        ids
    }

    /// True when a reply has arrived, or a queued write can start (work for the run loop).
    pub fn has_replies<S: StoreRequests>(&self, store: &S) -> bool {
        (!self.queued.is_empty() && self.open() < MAX_OPEN)
            || self.ids().into_iter().any(|id| store.has_reply(id))
    }

    /// Starts queued writes where places are free, and takes the replies that arrived (and
    /// those to the requests they lead to, if already here); the writes that ended.
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Vec<Outcome<K, T>> {
        // Places a forgotten session freed.
        let mut ended = self.start_queued(store);
        loop {
            let arrived = take_arrived(store, &self.ids());
            if arrived.is_empty() {
                return ended;
            }
            for (id, result) in arrived {
                ended.extend(self.answer(store, id, result));
            }
            // Places freed: the queued writes' starts go out (their replies come later).
            ended.extend(self.start_queued(store));
        }
    }

    /// Forgets `key`'s write (its session ended): its replies are dropped and an open
    /// transaction is ended without a commit. Returns what it kept for the session.
    pub fn forget<S: StoreRequests>(&mut self, store: &mut S, key: K) -> Option<T> {
        let write = self.writes.remove(&key)?;
        match write.stage {
            Stage::Queued => self.queued.retain(|queued| *queued != key),
            // Its number is not known yet: ended when the start is answered.
            Stage::Starting(id) => self.orphans.push(id),
            Stage::Writing {
                transaction,
                unanswered,
            } => {
                for id in unanswered {
                    store.abandon(id);
                }
                abort(store, transaction);
            }
            // The commit is xenstored's to decide now; its answer means nothing any more.
            Stage::Committing { end } => store.abandon(end),
        }
        Some(write.then)
    }

    /// Takes the reply to `id` (one of [`TransactionWrites::ids`]); the outcome if it ended
    /// a write.
    pub fn answer<S: StoreRequests>(
        &mut self,
        store: &mut S,
        id: RequestId,
        result: Result<Reply, ReplyError>,
    ) -> Option<Outcome<K, T>> {
        if let Some(place) = self.orphans.iter().position(|orphan| *orphan == id) {
            self.orphans.swap_remove(place);
            if let Ok(Reply::TransactionStarted(transaction)) = result {
                abort(store, transaction);
            }
            return None;
        }
        let key = self.key_of(id)?;
        let write = self.writes.get_mut(&key)?;
        let next = match &mut write.stage {
            Stage::Queued => return None,
            Stage::Starting(_) => match result {
                Ok(Reply::TransactionStarted(transaction)) => {
                    send_writes(store, transaction, &write.nodes).map(Some)
                }
                other => Err(format!("starting a transaction: {}", describe(&other))),
            },
            Stage::Writing {
                transaction,
                unanswered,
            } => {
                let transaction = *transaction;
                unanswered.retain(|waiting| *waiting != id);
                match result {
                    Ok(_) if unanswered.is_empty() => commit(store, transaction).map(Some),
                    Ok(_) => return None,
                    Err(error) => {
                        for id in unanswered.drain(..) {
                            store.abandon(id);
                        }
                        abort(store, transaction);
                        Err(format!("a write in the transaction: {error}"))
                    }
                }
            }
            Stage::Committing { .. } => match result {
                // Committed: no next stage.
                Ok(_) => Ok(None),
                Err(error) if error.is_try_again() && write.attempt < ATTEMPTS => {
                    write.attempt += 1;
                    store
                        .submit(&Operation::TransactionStart)
                        .map(|id| Some(Stage::Starting(id)))
                        .map_err(|error| format!("starting a transaction again: {error}"))
                }
                Err(error) => Err(format!(
                    "committing (run {} of at most {ATTEMPTS}): {error}",
                    write.attempt
                )),
            },
        };
        match next {
            Ok(Some(stage)) => {
                write.stage = stage;
                None
            }
            Ok(None) => {
                let write = self.writes.remove(&key)?;
                Some(Outcome::Committed {
                    key,
                    then: write.then,
                    attempts: write.attempt,
                })
            }
            Err(reason) => {
                let write = self.writes.remove(&key)?;
                Some(Outcome::Failed {
                    key,
                    then: write.then,
                    reason,
                })
            }
        }
    }

    /// The session whose write sent `id`.
    fn key_of(&self, id: RequestId) -> Option<K> {
        self.writes
            .iter()
            .find(|(_, write)| match &write.stage {
                Stage::Queued => false,
                Stage::Starting(waiting) | Stage::Committing { end: waiting } => *waiting == id,
                Stage::Writing { unanswered, .. } => unanswered.contains(&id),
            })
            .map(|(key, _)| *key)
    }
}

/// Sends every write of a run, in flight together.
fn send_writes<S: StoreRequests>(
    store: &mut S,
    transaction: TransactionId,
    nodes: &[(String, String)],
) -> Result<Stage, String> {
    let mut unanswered = Vec::new();
    for (path, value) in nodes {
        let operation = Operation::Write {
            path,
            value: value.as_bytes(),
        };
        match store.submit_in(transaction, &operation) {
            Ok(id) => unanswered.push(id),
            Err(error) => {
                for id in unanswered {
                    store.abandon(id);
                }
                abort(store, transaction);
                return Err(format!("writing {path}: {error}"));
            }
        }
    }
    if unanswered.is_empty() {
        return commit(store, transaction);
    }
    Ok(Stage::Writing {
        transaction,
        unanswered,
    })
}

/// Sends the commit.
fn commit<S: StoreRequests>(store: &mut S, transaction: TransactionId) -> Result<Stage, String> {
    store
        .submit_in(transaction, &Operation::TransactionEnd { commit: true })
        .map(|end| Stage::Committing { end })
        .map_err(|error| format!("committing: {error}"))
}

/// Ends `transaction` without a commit; nothing waits for the answer.
fn abort<S: StoreRequests>(store: &mut S, transaction: TransactionId) {
    match store.submit_in(transaction, &Operation::TransactionEnd { commit: false }) {
        Ok(id) => store.abandon(id),
        Err(error) => log::warn!("xenstore: ending transaction {transaction:?}: {error}"),
    }
}

/// A reply that is not the one expected, for a log line.
fn describe(result: &Result<Reply, ReplyError>) -> String {
    match result {
        Ok(reply) => format!("unexpected reply {reply:?}"),
        Err(error) => format!("{error}"),
    }
}

#[cfg(test)]
mod tests;
