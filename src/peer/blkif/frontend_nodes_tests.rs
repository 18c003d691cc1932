//! Tests of the frontend node decoder: defaults, Linux blkfront's layouts (single, multi-page, multi-queue), and each refusal.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use super::*;
use alloc::collections::BTreeMap;
use alloc::string::ToString;

struct Nodes(BTreeMap<String, Vec<u8>>);

impl FrontendNodes for Nodes {
    fn read(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }
}

fn nodes(pairs: &[(&str, &str)]) -> Nodes {
    Nodes(
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.as_bytes().to_vec()))
            .collect(),
    )
}

const OFFER: BackendOffer = BackendOffer {
    max_ring_page_order: 4,
    max_queues: 2,
    max_indirect_segments: 256,
};

#[test]
fn a_single_page_ring_with_defaults() {
    let config =
        FrontendConfig::decode(&nodes(&[("ring-ref", "8"), ("event-channel", "5")]), &OFFER)
            .unwrap();
    assert_eq!(
        config,
        FrontendConfig {
            protocol: Protocol::X86_64,
            persistent: false,
            ring_page_order: 0,
            queues: alloc::vec![QueueConfig {
                ring_refs: alloc::vec![grant_ref(8)],
                event_channel: RemotePort::new(5).unwrap(),
            }],
        }
    );
}

#[test]
fn linux_blkfront_multi_page_multi_queue_layout() {
    let config = FrontendConfig::decode(
        &nodes(&[
            ("protocol", "x86_64-abi"),
            ("feature-persistent", "1"),
            ("multi-queue-num-queues", "2"),
            ("ring-page-order", "1"),
            ("queue-0/ring-ref0", "10"),
            ("queue-0/ring-ref1", "11"),
            ("queue-0/event-channel", "20"),
            ("queue-1/ring-ref0", "12"),
            ("queue-1/ring-ref1", "13"),
            ("queue-1/event-channel", "21"),
        ]),
        &OFFER,
    )
    .unwrap();
    assert!(config.persistent);
    assert_eq!(config.ring_page_order, 1);
    assert_eq!(config.queues.len(), 2);
    assert_eq!(config.queues[1].ring_refs, [grant_ref(12), grant_ref(13)]);
    assert_eq!(config.queues[1].event_channel, RemotePort::new(21).unwrap());
}

#[test]
fn order_zero_accepts_ring_ref0_when_alone() {
    let config = FrontendConfig::decode(
        &nodes(&[
            ("ring-page-order", "0"),
            ("ring-ref0", "3"),
            ("event-channel", "4"),
        ]),
        &OFFER,
    )
    .unwrap();
    assert_eq!(config.queues[0].ring_refs, [grant_ref(3)]);
}

#[test]
fn each_bad_node_is_refused_by_name() {
    let base = [("ring-ref", "8"), ("event-channel", "5")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs: Vec<(&str, &str)> = base.to_vec();
        pairs.retain(|(key, _)| !extra.iter().any(|(other, _)| other == key));
        pairs.extend_from_slice(extra);
        FrontendConfig::decode(&nodes(&pairs), &OFFER)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        with(&[("protocol", "x86_32-abi")]),
        "protocol x86_32-abi is not served (only x86_64-abi rings)"
    );
    assert_eq!(
        with(&[("protocol", "arm-abi")]),
        "unknown protocol \"arm-abi\""
    );
    assert_eq!(
        with(&[("feature-persistent", "2")]),
        "node feature-persistent: \"2\" is not 0 or 1"
    );
    assert_eq!(
        with(&[("multi-queue-num-queues", "0")]),
        "0 queues asked, 1 to 2 offered"
    );
    assert_eq!(
        with(&[("multi-queue-num-queues", "3")]),
        "3 queues asked, 1 to 2 offered"
    );
    assert_eq!(
        with(&[("ring-page-order", "5")]),
        "ring page order 5 asked, at most 4 offered"
    );
    assert_eq!(
        with(&[("ring-page-order", "99999999999")]),
        "node ring-page-order: value \"99999999999\" out of range"
    );
    assert_eq!(
        with(&[("ring-ref", "-1")]),
        "node ring-ref: non-numeric value \"-1\""
    );
    assert_eq!(
        with(&[("event-channel", "0")]),
        "node event-channel: no event channel has port 0"
    );
    assert_eq!(
        with(&[("event-channel", "131072")]),
        "node event-channel: no event channel has port 131072"
    );
    assert_eq!(
        with(&[
            ("ring-page-order", "2"),
            ("ring-ref0", "1"),
            ("ring-ref1", "1"),
            ("ring-ref2", "1")
        ]),
        "node ring-ref3 missing"
    );
    assert_eq!(
        with(&[("multi-queue-num-queues", "2")]),
        "node queue-0/ring-ref missing"
    );
    let missing_port = FrontendConfig::decode(&nodes(&[("ring-ref", "1")]), &OFFER).unwrap_err();
    assert_eq!(
        missing_port,
        FrontendFault::Missing {
            key: "event-channel".to_string()
        }
    );
}
