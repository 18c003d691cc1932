//! Tests of the grant-share registry: generations, stale results, deaths and shutdown.

use super::*;
use crate::share::nodes::RawFrontendNodes;
use crate::vchan::testing::FakeMemory;

fn open(registry: &mut ShareRegistry<FakeMemory>, peer: u16, device: u32) -> ShareKey {
    let opened = registry.open(DomId::new(peer).unwrap(), DeviceId(device));
    opened.last().map(|(key, _)| *key).unwrap()
}

/// Drives `key` to the point where its refs are being mapped.
fn to_mapping(registry: &mut ShareRegistry<FakeMemory>, key: ShareKey) {
    registry.handle(key, ShareEvent::PeerState(b"3"));
    let actions = registry.handle(
        key,
        ShareEvent::FrontendNodesRead(RawFrontendNodes {
            nr_pages: Some(b"1"),
            refs: Some(b"8"),
            event_channel: Some(b"3"),
            pattern_seed: Some(b"0"),
            writable: Some(b"1"),
        }),
    );
    assert!(matches!(actions[..], [ShareAction::MapGrants { .. }]));
}

#[test]
fn a_recreated_device_gets_a_new_key_and_the_old_sessions_results_are_released() {
    let mut registry = ShareRegistry::default();
    let old = open(&mut registry, 5, 0);
    let other = open(&mut registry, 5, 1);
    to_mapping(&mut registry, old);
    let reopened = registry.open(DomId::new(5).unwrap(), DeviceId(0));
    assert_eq!(reopened.len(), 2);
    assert_eq!(reopened[0].0, old);
    assert!(matches!(
        reopened[0].1.last(),
        Some(ShareAction::ReportClosed(_))
    ));
    let new = reopened[1].0;
    assert_ne!(new, old);
    assert_eq!(
        registry.find(DomId::new(5).unwrap(), DeviceId(0)),
        Some(new)
    );
    // The old session's map finishing now is released, not handed to the new one.
    let late = registry.handle(old, ShareEvent::Mapped(Ok(FakeMemory::new(4096))));
    assert!(matches!(late[..], [ShareAction::Unmap(_)]));
    assert!(matches!(
        registry.session(new).map(|session| session.state()),
        Some(crate::share::session::ShareState::WaitingForFrontend)
    ));
    assert!(registry.session(other).is_some());
    assert_eq!(registry.len(), 2);
}

#[test]
fn a_death_ends_only_that_peers_sessions() {
    let mut registry: ShareRegistry<FakeMemory> = ShareRegistry::default();
    let first = open(&mut registry, 3, 0);
    let second = open(&mut registry, 3, 1);
    let bystander = open(&mut registry, 4, 0);
    to_mapping(&mut registry, first);
    let page = FakeMemory::new(4096);
    registry.handle(first, ShareEvent::Mapped(Ok(page)));
    assert_eq!(registry.mapped_pages(), 1);
    let died = registry.domain_died(DomId::new(3).unwrap());
    let keys: Vec<ShareKey> = died.iter().map(|(key, _)| *key).collect();
    assert_eq!(keys, [first, second]);
    assert!(matches!(died[0].1[0], ShareAction::Unmap(_)));
    assert_eq!(registry.mapped_pages(), 0);
    assert_eq!(
        registry.keys_of(DomId::new(4).unwrap()).collect::<Vec<_>>(),
        [bystander]
    );
    assert_eq!(registry.shutdown().len(), 1);
    assert!(registry.is_empty());
    assert_eq!(format!("{bystander}"), "d4/share0#3");
}
