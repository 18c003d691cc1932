//! The live sessions of one protocol, keyed by peer, device and generation; results delivered late for an ended or replaced session are turned into their release.
//!
//! Every session gets a generation number never used before. Results the kernel delivers late
//! (a map finishing after its session ended, or for a session replaced by a newer one of the
//! same peer) carry the old key and are turned into their release (unmap, close) instead of
//! reaching the new session.

use super::action::{leftovers, PeerAction, PeerEvent};
use super::counters::ServiceCounters;
use super::key::SessionKey;
use super::protocol::{PeerSession, Protocol};
use crate::ids::{DomId, EvtchnPort};
use alloc::vec::Vec;
use litemap::LiteMap;

/// The protocol of session type `S`.
type ProtocolOf<S> = <S as PeerSession>::Protocol;
/// The key of a session of type `S`.
pub type KeyOf<S> = SessionKey<ProtocolOf<S>>;
/// The device of a session of type `S`.
type DeviceOf<S> = <ProtocolOf<S> as Protocol>::Device;
/// One session's actions.
pub type ActionsOf<S> = Vec<PeerAction<ProtocolOf<S>, <S as PeerSession>::Region>>;
/// An event for a session of type `S`.
pub type EventOf<'a, S> = PeerEvent<'a, ProtocolOf<S>, <S as PeerSession>::Region>;
/// Actions for one session, with its key.
pub type KeyedActions<S> = (KeyOf<S>, ActionsOf<S>);

/// Every live session of one protocol.
#[derive(Debug)]
pub struct Registry<S: PeerSession> {
    next_generation: u64,
    sessions: LiteMap<KeyOf<S>, S>,
    /// Sessions ended for a fault of their peer's, since boot.
    faults: u64,
}

impl<S: PeerSession> Default for Registry<S> {
    fn default() -> Self {
        Registry {
            next_generation: 1,
            sessions: LiteMap::new(),
            faults: 0,
        }
    }
}

impl<S: PeerSession> Registry<S> {
    /// Adds `session` under a new key.
    pub fn insert(&mut self, session: S) -> KeyOf<S> {
        let key = SessionKey::new(session.peer(), session.device(), self.next_generation);
        self.next_generation += 1;
        self.sessions.insert(key, session);
        key
    }

    /// Adds `session`, first ending a live session of the same peer and device (as if its
    /// peer had removed its nodes), so that the device's old mapping never lingers. Returns
    /// the ended session's actions, if any, then the new key with `first_actions`.
    pub fn replace(
        &mut self,
        session: S,
        first_actions: ActionsOf<S>,
        counters: &ServiceCounters,
    ) -> Vec<KeyedActions<S>> {
        let mut results = Vec::new();
        if let Some(old) = self.find(session.peer(), session.device()) {
            let actions = self.handle(old, PeerEvent::PeerNodesRemoved, counters);
            results.push((old, actions));
        }
        let key = self.insert(session);
        results.push((key, first_actions));
        results
    }

    /// Delivers `event` to session `key`; a closed session leaves the registry. For an unknown
    /// (stale) key the event's resources are released.
    pub fn handle(
        &mut self,
        key: KeyOf<S>,
        event: EventOf<'_, S>,
        counters: &ServiceCounters,
    ) -> ActionsOf<S> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return leftovers(event);
        };
        let actions = session.handle(event, counters);
        if session.is_closed() {
            self.sessions.remove(&key);
            let faulted = actions.iter().any(|action| {
                matches!(
                    action,
                    PeerAction::ReportClosed(super::action::CloseReason::Fault(_))
                )
            });
            if faulted {
                self.faults += 1;
            }
        }
        actions
    }

    /// Ends every session with `peer` (it died): each session's actions, unmaps first.
    pub fn domain_died(&mut self, peer: DomId, counters: &ServiceCounters) -> Vec<KeyedActions<S>> {
        let keys: Vec<KeyOf<S>> = self.keys_of(peer).collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, PeerEvent::DomainDied, counters)))
            .collect()
    }

    /// Ends every session (grantsvc is shutting down).
    pub fn shutdown(&mut self, counters: &ServiceCounters) -> Vec<KeyedActions<S>> {
        let keys: Vec<KeyOf<S>> = self.sessions.keys().copied().collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, PeerEvent::Shutdown, counters)))
            .collect()
    }

    /// Session `key`, to change (for what is not an event of its peer's, such as a timer).
    pub fn session_mut(&mut self, key: KeyOf<S>) -> Option<&mut S> {
        self.sessions.get_mut(&key)
    }

    /// The live session for `device` of `peer`.
    pub fn find(&self, peer: DomId, device: DeviceOf<S>) -> Option<KeyOf<S>> {
        self.sessions
            .keys()
            .copied()
            .find(|key| key.peer == peer && key.device == device)
    }

    /// The sessions with `peer`.
    pub fn keys_of(&self, peer: DomId) -> impl Iterator<Item = KeyOf<S>> + '_ {
        self.sessions
            .keys()
            .copied()
            .filter(move |key| key.peer == peer)
    }

    /// Every live session's key.
    pub fn keys(&self) -> impl Iterator<Item = KeyOf<S>> + '_ {
        self.sessions.keys().copied()
    }

    /// Every live session's key with its bound port (for the liveness check).
    pub fn ports(&self) -> impl Iterator<Item = (KeyOf<S>, EvtchnPort)> + '_ {
        self.sessions
            .iter()
            .filter_map(|(key, session)| Some((*key, session.port()?)))
    }

    /// The session whose local port is `port`.
    pub fn key_for_port(&self, port: EvtchnPort) -> Option<KeyOf<S>> {
        self.sessions
            .iter()
            .find(|(_, session)| session.port() == Some(port))
            .map(|(key, _)| *key)
    }

    /// The session `key`, if live.
    pub fn session(&self, key: KeyOf<S>) -> Option<&S> {
        self.sessions.get(&key)
    }

    /// Pages mapped by all sessions together (for the published counters).
    pub fn mapped_pages(&self) -> u64 {
        self.sessions
            .values()
            .map(|session| u64::from(session.mapped_pages()))
            .sum()
    }

    /// Sessions ended for a fault of their peer's since boot.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
