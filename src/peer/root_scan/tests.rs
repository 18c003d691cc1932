//! Tests of the backend-root scan over the fake xenstored: listings in flight together, replies in any order, folders that go between requests, refusals, scans asked for meanwhile.

use super::*;
use crate::peer::fake_store::FakeStore;
use alloc::vec;

const ROOT: &str = "/local/domain/4/backend/test";

fn device_of_path(root: &str, path: &str) -> Option<(DomId, u32)> {
    let rest = path.strip_prefix(root)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let peer = parts.next()?.parse::<u16>().ok().and_then(DomId::new)?;
    let device = parts.next()?.parse::<u32>().ok()?;
    Some((peer, device))
}

fn domid(id: u16) -> DomId {
    DomId::new(id).unwrap()
}

#[test]
fn present_and_live_devices_are_each_looked_up_once_in_order() {
    let present = vec![(domid(3), 1), (domid(2), 0)];
    let live = [(domid(3), 1), (domid(5), 0), (domid(2), 7)];
    assert_eq!(
        devices_to_look_up(present, live),
        [(domid(2), 0), (domid(2), 7), (domid(3), 1), (domid(5), 0)]
    );
}

fn store_with(devices: &[(u16, u32)]) -> FakeStore {
    let mut store = FakeStore::new();
    for (peer, device) in devices {
        store.put(&format!("{ROOT}/{peer}/{device}/state"), "1");
    }
    store
}

/// Runs the scan to its end, xenstored answering in order.
fn scan_all(scan: &mut RootScan<u32>, store: &mut FakeStore) -> Vec<Vec<(DomId, u32)>> {
    let mut ended = Vec::new();
    for _ in 0..8 {
        store.serve();
        ended.extend(scan.take_replies(store));
        if !scan.in_flight() {
            break;
        }
    }
    ended
}

#[test]
fn every_folder_is_listed_in_flight_together_and_the_devices_present_reported() {
    let mut store = store_with(&[(5, 0), (5, 1), (6, 0), (7, 3)]);
    store.put(&format!("{ROOT}/7/not-a-device/state"), "1");
    let mut scan = RootScan::new(ROOT, device_of_path);
    scan.request(&mut store);
    assert_eq!(scan.ids().len(), 1, "the root is listed first");
    store.serve();
    let root_reply = scan.ids()[0];
    let result = store.take_reply(root_reply).unwrap();
    assert_eq!(scan.answer(&mut store, root_reply, result), None);
    assert_eq!(
        scan.ids().len(),
        3,
        "the three folders' listings are in flight together"
    );
    store.serve();
    let ended = scan.take_replies(&mut store);
    assert_eq!(
        ended,
        vec![Vec::from([
            (domid(5), 0),
            (domid(5), 1),
            (domid(6), 0),
            (domid(7), 3)
        ])]
    );
    assert!(!scan.in_flight());
    assert_eq!(store.in_flight(), 0);
}

#[test]
fn replies_handed_over_in_reverse_order_give_the_same_devices() {
    let mut store = store_with(&[(5, 0), (6, 2), (8, 1)]);
    let mut scan = RootScan::new(ROOT, device_of_path);
    scan.request(&mut store);
    store.serve();
    assert_eq!(scan.take_replies(&mut store), Vec::<Vec<_>>::new());
    store.serve();
    let mut ids = scan.ids();
    ids.reverse();
    let mut ended = Vec::new();
    for id in ids {
        let result = store.take_reply(id).unwrap();
        ended.extend(scan.answer(&mut store, id, result));
    }
    assert_eq!(
        ended,
        vec![Vec::from([(domid(5), 0), (domid(6), 2), (domid(8), 1)])]
    );
    // A reply nobody asked for (an ended scan's) changes nothing.
    assert_eq!(
        scan.answer(
            &mut store,
            RequestId::new(999),
            Ok(Reply::Directory(vec![]))
        ),
        None
    );
}

#[test]
fn a_folder_that_goes_between_the_listings_or_is_refused_contributes_nothing() {
    let mut store = store_with(&[(5, 0), (6, 0), (7, 0)]);
    let mut scan = RootScan::new(ROOT, device_of_path);
    scan.request(&mut store);
    store.serve();
    assert!(scan.take_replies(&mut store).is_empty());
    // Between the root's listing and the folders': frontend 6's folder goes, 7's is refused.
    store.remove(&format!("{ROOT}/6"));
    store.server.refuse.insert(format!("{ROOT}/7"), "EACCES");
    let ended = scan_all(&mut scan, &mut store);
    assert_eq!(ended, vec![Vec::from([(domid(5), 0)])]);
}

#[test]
fn a_refused_or_missing_root_ends_the_scan() {
    let mut store = FakeStore::new();
    let mut scan = RootScan::new(ROOT, device_of_path);
    scan.request(&mut store);
    assert_eq!(
        scan_all(&mut scan, &mut store),
        vec![Vec::new()],
        "no root: no device"
    );
    store.server.refuse.insert(ROOT.into(), "EACCES");
    scan.request(&mut store);
    assert_eq!(scan_all(&mut scan, &mut store), Vec::<Vec<_>>::new());
    assert!(!scan.in_flight(), "a refusal leaves nothing in flight");
}

#[test]
fn scans_asked_for_meanwhile_make_one_more_that_sees_the_later_device() {
    let mut store = store_with(&[(5, 0)]);
    let mut scan = RootScan::new(ROOT, device_of_path);
    scan.request(&mut store);
    store.serve();
    assert!(scan.take_replies(&mut store).is_empty());
    // A device appears after the folders' listings were sent; three events ask for scans.
    store.serve();
    store.put(&format!("{ROOT}/9/4/state"), "1");
    for _ in 0..3 {
        scan.request(&mut store);
    }
    let ended = scan_all(&mut scan, &mut store);
    assert_eq!(
        ended,
        vec![
            Vec::from([(domid(5), 0)]),
            Vec::from([(domid(5), 0), (domid(9), 4)])
        ],
        "one scan more, not three"
    );
    assert!(!scan.in_flight());
}
