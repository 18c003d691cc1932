//! The transactions' runs, each known by a ticket: starts, writes, commits and retries, with nothing of the session that asked or of what it keeps in their types, so that their code is in the image once, not once per protocol (issue 10).

use super::{ATTEMPTS, MAX_OPEN};
use crate::peer::store_requests::{take_arrived, StoreRequests};
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;
use xenstore::{Operation, Reply, ReplyError, RequestId, TransactionId};

/// One write's identity, in the order writes were asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

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

/// One write.
#[derive(Debug)]
struct Run {
    /// (path, value), written in this order.
    nodes: Vec<(String, String)>,
    attempt: u32,
    stage: Stage,
}

/// How a write ended.
#[derive(Debug)]
pub enum RunEnd {
    /// Committed, in `attempts` runs.
    Committed { attempts: u32 },
    /// Not written (refused, or EAGAIN every time): why, for the log.
    Failed { reason: String },
}

/// The writes in flight or queued.
#[derive(Debug, Default)]
pub struct Runs {
    runs: LiteMap<Ticket, Run>,
    /// The writes waiting for a place, oldest first.
    queued: VecDeque<Ticket>,
    /// Transactions of forgotten writes whose start is still to be answered: ended without a
    /// commit once it is.
    orphans: Vec<RequestId>,
    next: u64,
}

impl Runs {
    /// Starts writing `nodes` ((path, value), in order) in one transaction, or queues it while
    /// [`MAX_OPEN`] are open. Err when the start could not be sent.
    pub fn start<S: StoreRequests>(
        &mut self,
        store: &mut S,
        nodes: Vec<(String, String)>,
    ) -> Result<Ticket, String> {
        let stage = if self.open() >= MAX_OPEN {
            Stage::Queued
        } else {
            match store.submit(&Operation::TransactionStart) {
                Ok(id) => Stage::Starting(id),
                Err(error) => return Err(format!("starting a transaction: {error}")),
            }
        };
        let ticket = Ticket(self.next);
        self.next += 1;
        if matches!(stage, Stage::Queued) {
            self.queued.push_back(ticket);
        }
        // Tickets ascend: an append.
        self.runs.insert(
            ticket,
            Run {
                nodes,
                attempt: 1,
                stage,
            },
        );
        Ok(ticket)
    }

    /// Transactions open or being opened (those of forgotten writes included).
    pub fn open(&self) -> usize {
        self.runs.len() - self.queued.len() + self.orphans.len()
    }

    /// Starts the oldest queued writes while places are free; those that cannot be started
    /// fail.
    fn start_queued<S: StoreRequests>(&mut self, store: &mut S) -> Vec<(Ticket, RunEnd)> {
        let mut failed = Vec::new();
        while self.open() < MAX_OPEN {
            let Some(ticket) = self.queued.pop_front() else {
                break;
            };
            match store.submit(&Operation::TransactionStart) {
                Ok(id) => {
                    if let Some(run) = self.runs.get_mut(&ticket) {
                        run.stage = Stage::Starting(id);
                    }
                }
                Err(error) => {
                    if self.runs.remove(&ticket).is_some() {
                        let reason = format!("starting a transaction: {error}");
                        failed.push((ticket, RunEnd::Failed { reason }));
                    }
                }
            }
        }
        failed
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        let mut ids = self.orphans.clone();
        for run in self.runs.values() {
            match &run.stage {
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
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Vec<(Ticket, RunEnd)> {
        // Places a forgotten write freed.
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

    /// Forgets `ticket`'s write: its replies are dropped and an open transaction is ended
    /// without a commit.
    pub fn forget<S: StoreRequests>(&mut self, store: &mut S, ticket: Ticket) {
        let Some(run) = self.runs.remove(&ticket) else {
            return;
        };
        match run.stage {
            Stage::Queued => self.queued.retain(|queued| *queued != ticket),
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
    }

    /// Takes the reply to `id` (one of [`Runs::ids`]); how its write ended, if it did.
    pub fn answer<S: StoreRequests>(
        &mut self,
        store: &mut S,
        id: RequestId,
        result: Result<Reply, ReplyError>,
    ) -> Option<(Ticket, RunEnd)> {
        if let Some(place) = self.orphans.iter().position(|orphan| *orphan == id) {
            self.orphans.swap_remove(place);
            if let Ok(Reply::TransactionStarted(transaction)) = result {
                abort(store, transaction);
            }
            return None;
        }
        let ticket = self.ticket_of(id)?;
        let run = self.runs.get_mut(&ticket)?;
        let next = match &mut run.stage {
            Stage::Queued => return None,
            Stage::Starting(_) => match result {
                Ok(Reply::TransactionStarted(transaction)) => {
                    send_writes(store, transaction, &run.nodes).map(Some)
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
                Err(error) if error.is_try_again() && run.attempt < ATTEMPTS => {
                    run.attempt += 1;
                    store
                        .submit(&Operation::TransactionStart)
                        .map(|id| Some(Stage::Starting(id)))
                        .map_err(|error| format!("starting a transaction again: {error}"))
                }
                Err(error) => Err(format!(
                    "committing (run {} of at most {ATTEMPTS}): {error}",
                    run.attempt
                )),
            },
        };
        match next {
            Ok(Some(stage)) => {
                run.stage = stage;
                None
            }
            Ok(None) => {
                let run = self.runs.remove(&ticket)?;
                Some((
                    ticket,
                    RunEnd::Committed {
                        attempts: run.attempt,
                    },
                ))
            }
            Err(reason) => {
                self.runs.remove(&ticket)?;
                Some((ticket, RunEnd::Failed { reason }))
            }
        }
    }

    /// The write that sent `id`.
    fn ticket_of(&self, id: RequestId) -> Option<Ticket> {
        self.runs
            .iter()
            .find(|(_, run)| match &run.stage {
                Stage::Queued => false,
                Stage::Starting(waiting) | Stage::Committing { end: waiting } => *waiting == id,
                Stage::Writing { unanswered, .. } => unanswered.contains(&id),
            })
            .map(|(ticket, _)| *ticket)
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
        Err(error) => log::warn!("xenstore: ending transaction {transaction}: {error}"),
    }
}

/// A reply that is not the one expected, for a log line.
fn describe(result: &Result<Reply, ReplyError>) -> String {
    match result {
        Ok(reply) => format!("unexpected reply ({:?})", reply.kind()),
        Err(error) => format!("{error}"),
    }
}
