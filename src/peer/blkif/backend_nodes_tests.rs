//! Tests of the backend node sets and of the toolstack node decoder.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use super::*;

fn value<'a>(nodes: &'a [Node], key: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| value.as_str())
}

#[test]
fn init_wait_offers_the_transport_limits() {
    let nodes = before_init_wait(&BackendOffer {
        max_ring_page_order: 4,
        max_queues: 1,
        max_indirect_segments: 256,
    });
    assert_eq!(value(&nodes, "feature-max-indirect-segments"), Some("256"));
    assert_eq!(value(&nodes, "max-ring-page-order"), Some("4"));
    assert_eq!(value(&nodes, "multi-queue-max-queues"), Some("1"));
}

#[test]
fn a_writable_ram_disk_connects_with_every_feature() {
    let nodes = at_connect(&DiskDescription {
        sectors: 131072,
        writable: true,
        cdrom: false,
        discard: true,
    });
    for (key, expected) in [
        ("sectors", "131072"),
        ("info", "0"),
        ("sector-size", "512"),
        ("physical-sector-size", "4096"),
        ("feature-flush-cache", "1"),
        ("feature-discard", "1"),
        ("discard-granularity", "4096"),
        ("feature-persistent", "1"),
    ] {
        assert_eq!(value(&nodes, key), Some(expected), "{key}");
    }
}

#[test]
fn a_read_only_odd_sized_disk_offers_no_writes() {
    let nodes = at_connect(&DiskDescription {
        sectors: 3,
        writable: false,
        cdrom: true,
        discard: true,
    });
    assert_eq!(value(&nodes, "info"), Some("5"));
    assert_eq!(value(&nodes, "physical-sector-size"), Some("512"));
    assert_eq!(value(&nodes, "feature-flush-cache"), Some("0"));
    assert_eq!(value(&nodes, "feature-discard"), Some("0"));
    assert_eq!(value(&nodes, "discard-granularity"), None);
}

#[test]
fn toolstack_nodes_decode_as_libxl_writes_them() {
    let nodes = |mode: &'static str, kind: &'static str, discard: &'static str| {
        move |key: &'static str| -> Option<&'static [u8]> {
            match key {
                "params" => Some(b"ram:64M"),
                "mode" => Some(mode.as_bytes()),
                "device-type" => Some(kind.as_bytes()),
                "discard-enable" => Some(discard.as_bytes()),
                _ => None,
            }
        }
    };
    assert_eq!(
        ToolstackRequest::decode(nodes("w", "disk", "1")),
        Ok(ToolstackRequest {
            target: Target::Ram { bytes: 64 << 20 },
            writable: true,
            cdrom: false,
            discard_enable: true
        })
    );
    let cdrom = ToolstackRequest::decode(nodes("w", "cdrom", "0")).unwrap();
    assert!(!cdrom.writable && cdrom.cdrom && !cdrom.discard_enable);
    assert!(matches!(
        ToolstackRequest::decode(nodes("rw", "disk", "1")),
        Err(ToolstackFault::Bad { key: "mode", .. })
    ));
    assert!(matches!(
        ToolstackRequest::decode(nodes("r", "floppy", "1")),
        Err(ToolstackFault::Bad {
            key: "device-type",
            ..
        })
    ));
    assert!(matches!(
        ToolstackRequest::decode(|_| None),
        Err(ToolstackFault::Missing("params"))
    ));
}
