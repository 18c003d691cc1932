//! The live vchan sessions: the framework's registry, keyed by (domid, generation) so that a restarted server is never taken for the old one.

use super::protocol::VchanProtocol;
use super::session::VchanSession;
use crate::peer::key::SessionKey;
use crate::peer::registry::Registry;

/// A vchan session's identity: the server's domain and a generation unique within the registry.
pub type PeerKey = SessionKey<VchanProtocol>;
/// Every live vchan session.
pub type PeerRegistry<R> = Registry<VchanSession<R>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DomId, EvtchnPort};
    use crate::peer::counters::ServiceCounters;
    use crate::peer::vchan::service::ServiceKind;
    use crate::peer::vchan::session::{SessionAction, SessionEvent};
    use crate::peer::vchan::session_fault::MapPurpose;
    use crate::peer::vchan::testing::{nodes_read, FakeMemory, FakeServer};
    use alloc::vec;
    use alloc::vec::Vec;

    fn start(registry: &mut PeerRegistry<FakeMemory>, peer: DomId) -> PeerKey {
        let counters = ServiceCounters::default();
        let key = registry.insert(VchanSession::new(peer, ServiceKind::Echo));
        let nodes = nodes_read(b"77", b"12");
        let event = SessionEvent::PeerNodesRead(&nodes);
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
            Some(crate::peer::vchan::session::SessionState::Binding { .. })
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
