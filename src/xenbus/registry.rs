//! The live peer sessions, keyed by (domid, generation) so that a restarted peer is never taken for the old one.
//!
//! Every session gets a generation number never used before. Results the kernel delivers late
//! (a map finishing after its session ended, or for a session replaced by a newer one with the
//! same domid) carry the old key and are turned into their release (unmap, close) instead of
//! reaching the new session.

use super::session::{SessionAction, SessionEvent, VchanSession};
use crate::ids::{DomId, EvtchnPort};
use crate::shared_memory::SharedMemory;
use crate::vchan::service::{ServiceCounters, ServiceKind};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// A session's identity: the peer domain and a generation unique within this registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub domid: DomId,
    pub generation: u64,
}

impl fmt::Display for PeerKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "d{}#{}", self.domid, self.generation)
    }
}

/// Every live session.
#[derive(Debug)]
pub struct PeerRegistry<R> {
    next_generation: u64,
    sessions: BTreeMap<PeerKey, VchanSession<R>>,
}

impl<R> Default for PeerRegistry<R> {
    fn default() -> Self {
        PeerRegistry {
            next_generation: 1,
            sessions: BTreeMap::new(),
        }
    }
}

impl<R: SharedMemory> PeerRegistry<R> {
    /// Starts a session with `peer` for a vchan carrying `service`; returns its key.
    pub fn open(&mut self, peer: DomId, service: ServiceKind) -> PeerKey {
        let key = PeerKey {
            domid: peer,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        self.sessions.insert(key, VchanSession::new(peer, service));
        key
    }

    /// Delivers `event` to the session `key`; a closed session is dropped from the registry.
    /// For an unknown (stale) key the event's resources are released.
    pub fn handle(
        &mut self,
        key: PeerKey,
        event: SessionEvent<'_, R>,
        counters: &ServiceCounters,
    ) -> Vec<SessionAction<R>> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return VchanSession::leftovers(event);
        };
        let actions = session.handle(event, counters);
        if session.is_closed() {
            self.sessions.remove(&key);
        }
        actions
    }

    /// Ends every session with `peer` (it died): each session's actions, unmaps first.
    pub fn domain_died(
        &mut self,
        peer: DomId,
        counters: &ServiceCounters,
    ) -> Vec<(PeerKey, Vec<SessionAction<R>>)> {
        let keys: Vec<PeerKey> = self.keys_of(peer).collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, SessionEvent::DomainDied, counters)))
            .collect()
    }

    /// Ends every session (grantsvc is shutting down).
    pub fn shutdown(
        &mut self,
        counters: &ServiceCounters,
    ) -> Vec<(PeerKey, Vec<SessionAction<R>>)> {
        let keys: Vec<PeerKey> = self.sessions.keys().copied().collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, SessionEvent::Shutdown, counters)))
            .collect()
    }

    /// The sessions with `peer`.
    pub fn keys_of(&self, peer: DomId) -> impl Iterator<Item = PeerKey> + '_ {
        self.sessions
            .keys()
            .copied()
            .filter(move |key| key.domid == peer)
    }

    /// The session whose local event-channel port is `port`.
    pub fn key_for_port(&self, port: EvtchnPort) -> Option<PeerKey> {
        self.sessions
            .iter()
            .find(|(_, session)| session.port() == Some(port))
            .map(|(key, _)| *key)
    }

    /// The session `key`, if live.
    pub fn session(&self, key: PeerKey) -> Option<&VchanSession<R>> {
        self.sessions.get(&key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vchan::testing::{FakeMemory, FakeServer};
    use crate::xenbus::fault::MapPurpose;

    fn start(registry: &mut PeerRegistry<FakeMemory>, peer: DomId) -> PeerKey {
        let counters = ServiceCounters::default();
        let key = registry.open(peer, ServiceKind::Echo);
        let event = SessionEvent::NodesRead {
            ring_ref: b"77",
            event_channel: b"12",
        };
        assert_eq!(registry.handle(key, event, &counters).len(), 1);
        key
    }

    #[test]
    fn a_restarted_peer_gets_a_new_key_and_old_results_are_released() {
        let counters = ServiceCounters::default();
        let mut registry = PeerRegistry::default();
        let old = start(&mut registry, DomId::new(5).unwrap());
        let other = start(&mut registry, DomId::new(6).unwrap());
        let died = registry.domain_died(DomId::new(5).unwrap(), &counters);
        assert_eq!(died.len(), 1);
        assert_eq!(died[0].0, old);
        let new = start(&mut registry, DomId::new(5).unwrap());
        assert_ne!(old, new);
        assert_eq!(registry.len(), 2);
        // A map for the old session finishing now must not reach the new one.
        let server = FakeServer::new(10, 11);
        let actions = registry.handle(
            old,
            SessionEvent::Mapped {
                purpose: MapPurpose::SharedPage,
                result: Ok(server.page.clone()),
            },
            &counters,
        );
        assert!(matches!(actions[..], [SessionAction::Unmap { .. }]));
        let actions = registry.handle(
            old,
            SessionEvent::PortBound(Ok(EvtchnPort::new(9).unwrap())),
            &counters,
        );
        assert!(matches!(
            actions[..],
            [SessionAction::ClosePort(port)] if port.get() == 9
        ));
        assert!(matches!(
            registry.session(new).map(|session| session.state()),
            Some(super::super::session::SessionState::Binding { .. })
        ));
        assert!(registry.session(other).is_some());
    }

    #[test]
    fn shutdown_closes_every_session_and_empties_the_registry() {
        let counters = ServiceCounters::default();
        let mut registry: PeerRegistry<FakeMemory> = PeerRegistry::default();
        start(&mut registry, DomId::new(1).unwrap());
        start(&mut registry, DomId::new(2).unwrap());
        let closed = registry.shutdown(&counters);
        assert_eq!(closed.len(), 2);
        assert!(registry.is_empty());
        assert_eq!(format!("{}", closed[0].0), "d1#1");
    }

    #[test]
    fn events_are_routed_by_port() {
        let counters = ServiceCounters::default();
        let mut registry: PeerRegistry<FakeMemory> = PeerRegistry::default();
        let key = start(&mut registry, DomId::new(3).unwrap());
        assert_eq!(registry.key_for_port(EvtchnPort::new(40).unwrap()), None);
        registry.handle(
            key,
            SessionEvent::PortBound(Ok(EvtchnPort::new(40).unwrap())),
            &counters,
        );
        assert_eq!(
            registry.key_for_port(EvtchnPort::new(40).unwrap()),
            Some(key)
        );
        assert_eq!(
            registry.keys_of(DomId::new(3).unwrap()).collect::<Vec<_>>(),
            vec![key]
        );
    }
}
