//! Tests of the grant-share node paths and of the validation of frontend-written values.

use super::*;
use crate::peer::value::ValueFault;
use alloc::string::ToString;

fn raw<'a>(nr_pages: &'a [u8], refs: &'a [u8]) -> RawFrontendNodes<'a> {
    RawFrontendNodes {
        nr_pages: Some(nr_pages),
        refs: Some(refs),
        event_channel: Some(b"17"),
        pattern_seed: Some(b"4294967295"),
        writable: Some(b"1"),
    }
}

#[test]
fn good_nodes_decode() {
    let nodes = FrontendNodes::decode(&raw(b"3", b"8 9 4000")).unwrap();
    assert_eq!(
        nodes.refs,
        vec![GrantRef::new(8), GrantRef::new(9), GrantRef::new(4000)]
    );
    assert_eq!(nodes.event_channel, RemotePort(17));
    assert_eq!(nodes.pattern_seed, u32::MAX);
    assert!(nodes.writable);
    assert_eq!(FrontendNodes::encode_refs(&nodes.refs), "8 9 4000");
}

#[test]
fn the_largest_device_fits_in_one_xenstore_value() {
    let refs: Vec<GrantRef> = (0..MAX_PAGES).map(|_| GrantRef::new(u32::MAX)).collect();
    let encoded = FrontendNodes::encode_refs(&refs);
    assert!(encoded.len() < 4096, "{}", encoded.len());
    let count = MAX_PAGES.to_string();
    let nodes = FrontendNodes::decode(&raw(count.as_bytes(), encoded.as_bytes())).unwrap();
    assert_eq!(nodes.refs.len(), MAX_PAGES as usize);
}

#[test]
fn page_counts_outside_the_range_are_refused() {
    assert_eq!(
        FrontendNodes::decode(&raw(b"0", b"")),
        Err(ShareFaultKind::NrPagesOutOfRange(0))
    );
    assert_eq!(
        FrontendNodes::decode(&raw(b"257", b"1")),
        Err(ShareFaultKind::NrPagesOutOfRange(257))
    );
    assert!(matches!(
        FrontendNodes::decode(&raw(b"99999999999", b"1")),
        Err(ShareFaultKind::BadNrPages(ValueFault::TooLarge(_)))
    ));
    assert!(matches!(
        FrontendNodes::decode(&raw(b"two", b"1 2")),
        Err(ShareFaultKind::BadNrPages(ValueFault::NotDecimal(_)))
    ));
}

#[test]
fn ref_lists_must_be_exact() {
    let fewer = ShareFaultKind::RefCount {
        expected: 3,
        more: false,
    };
    let more = ShareFaultKind::RefCount {
        expected: 3,
        more: true,
    };
    assert_eq!(FrontendNodes::decode(&raw(b"3", b"1 2")), Err(fewer));
    assert_eq!(FrontendNodes::decode(&raw(b"3", b"1 2 3 4")), Err(more));
    for (refs, index) in [
        (&b"1 x 3"[..], 1),
        (b"1  3", 1),
        (b"1 2 3 ", 3),
        (b" 1 2", 0),
        (b"1 2\n3", 1),
        (b"1 -2 3", 1),
    ] {
        match FrontendNodes::decode(&raw(b"3", refs)) {
            Err(ShareFaultKind::BadRef { index: found, .. }) => {
                assert_eq!(found, index, "{refs:?}")
            }
            // A trailing separator makes a fourth, empty word: too many before it is parsed.
            Err(ShareFaultKind::RefCount { more: true, .. }) => assert_eq!(index, 3),
            other => panic!("{refs:?}: {other:?}"),
        }
    }
    let fault = FrontendNodes::decode(&raw(b"2", b"1 0x20")).unwrap_err();
    assert_eq!(fault.to_string(), "refs[1]: non-numeric value \"0x20\"");
}

#[test]
fn ports_seeds_flags_and_missing_nodes_are_checked() {
    let mut nodes = raw(b"1", b"5");
    nodes.event_channel = Some(b"0");
    assert_eq!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::EventChannelOutOfRange(0))
    );
    nodes.event_channel = Some(b"131072");
    assert_eq!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::EventChannelOutOfRange(131072))
    );
    nodes.event_channel = Some(b"port");
    assert!(matches!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::BadEventChannel(_))
    ));
    nodes.event_channel = Some(b"3");
    nodes.pattern_seed = Some(b"-1");
    assert!(matches!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::BadPatternSeed(_))
    ));
    nodes.pattern_seed = Some(b"1");
    nodes.writable = Some(b"yes");
    assert!(matches!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::BadWritable(_))
    ));
    nodes.writable = Some(b"0");
    assert!(!FrontendNodes::decode(&nodes).unwrap().writable);
    nodes.refs = None;
    assert_eq!(
        FrontendNodes::decode(&nodes),
        Err(ShareFaultKind::Missing("refs"))
    );
}

#[test]
fn paths_follow_the_xenbus_layout() {
    assert_eq!(
        frontend_path(DomId::new(0).unwrap(), DeviceId(3)),
        "/local/domain/0/device/grantsvc-share/3"
    );
    assert_eq!(
        backend_path(DomId::new(7).unwrap(), DomId::new(0).unwrap(), DeviceId(3)),
        "/local/domain/7/backend/grantsvc-share/0/3"
    );
    let root = backend_root("/local/domain/7");
    assert_eq!(root, "/local/domain/7/backend/grantsvc-share");
    assert_eq!(
        device_of_backend_path(&root, "/local/domain/7/backend/grantsvc-share/5/2/state"),
        Some((DomId::new(5).unwrap(), DeviceId(2)))
    );
    assert_eq!(
        device_of_backend_path(&root, "/local/domain/7/backend/grantsvc-share/5/2"),
        Some((DomId::new(5).unwrap(), DeviceId(2)))
    );
    for not_a_device in [
        "/local/domain/7/backend/grantsvc-share",
        "/local/domain/7/backend/grantsvc-share/5",
        "/local/domain/7/backend/grantsvc-sharex/5/2",
        "/local/domain/7/backend/grantsvc-share/x/2",
        "/local/domain/7/backend/grantsvc-share/70000/2",
        "/local/domain/7/backend/grantsvc-share/32752/2",
        "/local/domain/8/backend/grantsvc-share/5/2",
    ] {
        assert_eq!(
            device_of_backend_path(&root, not_a_device),
            None,
            "{not_a_device}"
        );
    }
}

#[test]
fn refs_with_a_leading_zero_are_refused() {
    // The protocol's numbers are plain decimal as "%u" writes them: "01" is not a ref.
    assert!(matches!(
        FrontendNodes::decode(&raw(b"2", b"8 01")),
        Err(ShareFaultKind::BadRef {
            index: 1,
            fault: ValueFault::LeadingZero(_)
        })
    ));
    assert!(matches!(
        FrontendNodes::decode(&raw(b"02", b"8 9")),
        Err(ShareFaultKind::BadNrPages(ValueFault::LeadingZero(_)))
    ));
    // Ref 0 itself is a number the decoder takes (the grant table refuses it later).
    assert!(FrontendNodes::decode(&raw(b"2", b"0 10")).is_ok());
}
