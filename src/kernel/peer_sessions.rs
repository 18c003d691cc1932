//! One protocol's sessions as the kernel keeps them (the registry, their requests in flight, the protocol's glue), and the work every protocol shares done once: events delivered through the executor, fired ports, the liveness check, the orderly stop, the replies to the sessions' own requests.
//!
//! grant-share, vchan and blkif each own one [`Sessions`]; what differs between them is their
//! [`ProtocolGlue`] and how they find devices, never how a session's event is carried out.
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::peer_executor::{port_state, Executor, PmapHandle, ProtocolGlue, Region, Transactions};
use super::store_connection::Xenstore;
use alloc::vec::Vec;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::driver;
use grantsvc::peer::liveness::peer_lost;
use grantsvc::peer::pending::{Answered, PendingRequests};
use grantsvc::peer::protocol::{PeerSession, Protocol};
use grantsvc::peer::registry::{ActionsOf, EventOf, KeyOf, KeyedActions, Registry};
use grantsvc::peer::sorted_unique::sorted_unique;
use grantsvc::peer::store_limit::StoreRefusal;
use grantsvc::peer::store_requests::{take_arrived, StoreRequests};
use grantsvc::peer::transaction_write::Outcome;

/// Called after every event a session took, with the session as it is now (`None`: ended).
pub type AfterEvent<S, G> = fn(&mut G, KeyOf<S>, Option<&S>);

/// One protocol's live sessions and what the kernel keeps for them.
pub struct Sessions<S: PeerSession, G> {
    registry: Registry<S>,
    /// The sessions' node reads and writes in flight.
    pending: PendingRequests<KeyOf<S>>,
    /// The sessions' transactional writes in flight.
    transactions: Transactions<S::Protocol>,
    /// What the protocol adds: its directories, watches, log lines.
    pub glue: G,
    after_event: AfterEvent<S, G>,
}

impl<S, G> Sessions<S, G>
where
    S: PeerSession<Region = Region>,
    G: ProtocolGlue<S::Protocol>,
{
    /// No session yet; `after_event` sees each session after each of its events.
    pub fn new(glue: G, after_event: AfterEvent<S, G>) -> Sessions<S, G> {
        Sessions {
            registry: Registry::default(),
            pending: PendingRequests::default(),
            transactions: Transactions::default(),
            glue,
            after_event,
        }
    }

    /// The live sessions.
    pub fn registry(&self) -> &Registry<S> {
        &self.registry
    }

    /// The live sessions, for work of a protocol's own outside events (a timer's purge).
    pub fn registry_mut(&mut self) -> &mut Registry<S> {
        &mut self.registry
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// Sessions ended for a fault of their peer's, since boot.
    pub fn faults(&self) -> u64 {
        self.registry.faults()
    }

    /// Sessions with a bound port (what the liveness check looks at).
    pub fn bound(&self) -> usize {
        self.registry.ports().count()
    }

    /// Adds `session` under a new key and lets the glue note it (`note`) before its first
    /// event is delivered.
    pub fn insert_then(&mut self, session: S, note: impl FnOnce(&mut G, KeyOf<S>)) -> KeyOf<S> {
        let key = self.registry.insert(session);
        note(&mut self.glue, key);
        key
    }

    /// Carries out the actions of sessions just opened (an old session of the same device
    /// ended first: [`Registry::replace`]); returns the last key, the new session's.
    pub fn open(
        &mut self,
        mut store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        opened: Vec<KeyedActions<S>>,
        counters: &ServiceCounters,
    ) -> Option<KeyOf<S>> {
        let mut new_key = None;
        for (key, actions) in opened {
            new_key = Some(key);
            self.drive(store.as_deref_mut(), pmap, key, actions, counters);
        }
        new_key
    }

    /// Adds `session`, ending a live one of the same peer and device first, and carries out
    /// `first_actions`; returns the new key.
    pub fn replace(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        session: S,
        first_actions: ActionsOf<S>,
        counters: &ServiceCounters,
    ) -> Option<KeyOf<S>> {
        let opened = self.registry.replace(session, first_actions, counters);
        self.open(store, pmap, opened, counters)
    }

    /// Hands `event` to session `key` and carries out what it asks.
    pub fn deliver(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        key: KeyOf<S>,
        event: EventOf<'_, S>,
        counters: &ServiceCounters,
    ) {
        let actions = self.registry.handle(key, event, counters);
        self.drive(store, pmap, key, actions, counters);
    }

    /// Carries out `actions` of session `key`.
    pub fn drive(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        key: KeyOf<S>,
        actions: ActionsOf<S>,
        counters: &ServiceCounters,
    ) {
        let mut executor = Executor {
            pmap,
            store,
            pending: &mut self.pending,
            transactions: &mut self.transactions,
            glue: &mut self.glue,
        };
        driver::drive(&mut self.registry, key, actions, &mut executor, counters);
        (self.after_event)(&mut self.glue, key, self.registry.session(key));
    }

    /// Carries on after session `key`'s transaction ended (`committed`: its actions kept for
    /// after it; `Err`: the nodes were not written).
    fn resume(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        key: KeyOf<S>,
        committed: Result<ActionsOf<S>, ()>,
        counters: &ServiceCounters,
    ) {
        let mut executor = Executor {
            pmap,
            store: Some(store),
            pending: &mut self.pending,
            transactions: &mut self.transactions,
            glue: &mut self.glue,
        };
        driver::resume(&mut self.registry, key, committed, &mut executor, counters);
        (self.after_event)(&mut self.glue, key, self.registry.session(key));
    }

    /// Hands an `EventChannel` event to the sessions whose port fired and to `also`; returns
    /// how many sessions it reached.
    pub fn on_ports(
        &mut self,
        mut store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        ready: &ReadySnapshot,
        also: impl Iterator<Item = KeyOf<S>>,
        counters: &ServiceCounters,
    ) -> usize {
        let due: Vec<KeyOf<S>> = ready
            .ports()
            .filter_map(|port| self.registry.key_for_port(port))
            .chain(also)
            .collect();
        let due = sorted_unique(due);
        for &key in &due {
            self.deliver(
                store.as_deref_mut(),
                pmap,
                key,
                PeerEvent::EventChannel,
                counters,
            );
        }
        due.len()
    }

    /// True when session `key`'s port no longer leads to its peer (the peer died, or closed
    /// its end of the channel).
    pub fn peer_lost(&self, key: KeyOf<S>) -> bool {
        self.registry
            .ports()
            .any(|(live, port)| live == key && peer_lost(key.peer, port_state(port)))
    }

    /// Session `key`'s peer `state` node as read after its watch fired: handed over, or
    /// (`None`: gone or unreadable) the peer removed its nodes - or died, when its end of our
    /// event channel is gone too.
    pub fn peer_state_read(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        key: KeyOf<S>,
        state: Option<&[u8]>,
        counters: &ServiceCounters,
    ) {
        let event = match state {
            Some(state) => PeerEvent::PeerState(state),
            None if self.peer_lost(key) => PeerEvent::DomainDied,
            None => PeerEvent::PeerNodesRemoved,
        };
        self.deliver(store, pmap, key, event, counters);
    }

    /// The liveness check: ends the sessions whose port's remote end is no longer their peer's.
    pub fn check_liveness(
        &mut self,
        mut store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        let lost: Vec<KeyOf<S>> = self
            .registry
            .ports()
            .filter(|(key, port)| peer_lost(key.peer, port_state(*port)))
            .map(|(key, _)| key)
            .collect();
        for key in lost {
            log::info!(
                "{}: session {key}: the {}'s end of our event channel is gone",
                S::Protocol::NAME,
                <S::Protocol as Protocol>::PEER_WORD
            );
            self.deliver(
                store.as_deref_mut(),
                pmap,
                key,
                PeerEvent::DomainDied,
                counters,
            );
        }
    }

    /// Ends every session (grantsvc is shutting down), unmapping first; returns how many ended.
    pub fn close_all(
        &mut self,
        mut store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) -> usize {
        let all = self.registry.shutdown(counters);
        let closed = all.len();
        for (key, actions) in all {
            self.drive(store.as_deref_mut(), pmap, key, actions, counters);
        }
        closed
    }

    /// True when a reply to a session's own request has arrived (work for the run loop).
    pub fn has_replies(&self, store: &Xenstore) -> bool {
        self.pending
            .ids()
            .into_iter()
            .any(|id| StoreRequests::has_reply(store, id))
            || self.transactions.has_replies(store)
    }

    /// Takes the replies to the sessions' node reads, writes and transactions, and acts on
    /// them.
    pub fn on_replies(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        for outcome in self.transactions.take_replies(store) {
            let (Outcome::Committed { key, .. } | Outcome::Failed { key, .. }) = &outcome;
            if self.registry.session(*key).is_none() {
                // Ended meanwhile (its transaction forgotten without a store to tell): what it
                // kept for after the write must not run.
                continue;
            }
            match outcome {
                Outcome::Committed { key, then, .. } => {
                    self.resume(store, pmap, key, Ok(then), counters)
                }
                Outcome::Failed { key, reason, .. } => {
                    log::warn!(
                        "{}: session {key}: its nodes' transaction: {reason}",
                        S::Protocol::NAME
                    );
                    self.resume(store, pmap, key, Err(()), counters);
                }
            }
        }
        for (id, result) in take_arrived(store, &self.pending.ids()) {
            match self.pending.answer(id, result) {
                Answered::NodesRead { key, nodes } => {
                    let read: Vec<(&'static str, Option<&[u8]>)> = nodes
                        .iter()
                        .map(|(name, value)| (*name, value.as_deref()))
                        .collect();
                    self.deliver(
                        Some(store),
                        pmap,
                        key,
                        PeerEvent::PeerNodesRead(&read),
                        counters,
                    );
                }
                Answered::WriteFailed { key, node, error } => {
                    log::warn!(
                        "{}: session {key}: writing {node} failed: {error}",
                        S::Protocol::NAME
                    );
                    let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::write(node, error));
                    self.deliver(Some(store), pmap, key, event, counters);
                }
                Answered::WritesAcknowledged { key } => {
                    self.deliver(Some(store), pmap, key, PeerEvent::OwnNodesWritten, counters);
                }
                Answered::Nothing => {}
            }
        }
    }
}

/// An [`AfterEvent`] for protocols that keep nothing per session.
pub fn nothing_after_event<S, G>(_: &mut G, _: KeyOf<S>, _: Option<&S>)
where
    S: PeerSession,
{
}
