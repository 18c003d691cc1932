//! Tests of vchan discovery over the fake xenstored: many servers looked up in flight together, replies in any order, vchans that change between requests, refusals, replies for ended sessions.

use super::*;
use crate::peer::fake_store::FakeStore;
use alloc::vec;

const BASE: &str = "/local/domain/0/data/vchan/7";

/// Publishes a server at `name` owned by `owner`, as libxenvchan does (both nodes, then the
/// watch events for them), and returns the events' paths.
fn publish(store: &mut FakeStore, name: &str, owner: u16, ring_ref: &str) -> Vec<String> {
    let ring_path = format!("{BASE}/{name}/ring-ref");
    store.server.owners.insert(ring_path.clone(), owner);
    store.put(&format!("{BASE}/{name}/event-channel"), "5");
    store.put(&ring_path, ring_ref);
    vec![
        format!("{BASE}/{name}"),
        format!("{BASE}/{name}/event-channel"),
        ring_path,
    ]
}

/// Hands every event to the search.
fn events(search: &mut ServerSearch<u32>, store: &mut FakeStore, paths: &[String]) {
    for path in paths {
        search.on_watch_event(store, path);
    }
}

/// Serves and takes replies until nothing is in flight, acting as the kernel does on what is
/// found (a session key per open, starting at `next_key`). Returns what was found, and the
/// number of round trips.
fn settle(
    search: &mut ServerSearch<u32>,
    store: &mut FakeStore,
    next_key: &mut u32,
) -> (Vec<Found<u32>>, usize) {
    let mut all = Vec::new();
    let mut round_trips = 0;
    while !search.ids().is_empty() {
        round_trips += 1;
        assert!(round_trips < 20, "the search does not settle");
        store.serve();
        for found in search.take_replies(store) {
            act(search, &found, next_key);
            all.push(found);
        }
    }
    (all, round_trips)
}

fn act(search: &mut ServerSearch<u32>, found: &Found<u32>, next_key: &mut u32) {
    match found {
        Found::End(key) => {
            search.ended(*key);
        }
        Found::Open { name, nodes, .. } => {
            *next_key += 1;
            search.started(name.clone(), *next_key, nodes.clone());
        }
    }
}

fn opened(found: &[Found<u32>]) -> Vec<(String, u16)> {
    found
        .iter()
        .filter_map(|found| match found {
            Found::Open { name, server, .. } => Some((name.clone(), server.get())),
            Found::End(_) => None,
        })
        .collect()
}

#[test]
fn servers_published_before_the_first_event_are_found_by_listing() {
    let mut store = FakeStore::new();
    publish(&mut store, "echo", 0, "8");
    publish(&mut store, "cmd", 3, "9");
    store.put(&format!("{BASE}/half/ring-ref"), "10");
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    search.on_watch_event(&mut store, BASE);
    let (found, round_trips) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(
        opened(&found),
        vec![("cmd".into(), 3), ("echo".into(), 0)],
        "the half-published vchan is not a server"
    );
    assert_eq!(round_trips, 3, "listing, then every node, then every owner");
    assert_eq!(search.live_count(), 2);
}

/// Servers published at once; under Miri (`make miri`), where the fake xenstored's every
/// request costs about a second, 8: three round trips for all of them is the same property.
const SERVERS_AT_ONCE: usize = if cfg!(miri) { 8 } else { 32 };

#[test]
fn servers_published_together_are_looked_up_in_flight_together() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, SERVERS_AT_ONCE);
    let mut keys = 0;
    let mut paths = Vec::new();
    for server in 0..SERVERS_AT_ONCE {
        paths.extend(publish(
            &mut store,
            &format!("s{server}"),
            0,
            &format!("{}", 100 + server),
        ));
    }
    events(&mut search, &mut store, &paths);
    assert_eq!(
        search.ids().len(),
        2 * SERVERS_AT_ONCE,
        "two reads per server in flight, the other events merged"
    );
    let (found, round_trips) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found).len(), SERVERS_AT_ONCE);
    // Nodes, owners, then the one more lookup each that the merged events asked for.
    assert_eq!(round_trips, 3);
    assert!(found
        .iter()
        .all(|found| matches!(found, Found::Open { .. })));
    assert_eq!(search.live_count(), SERVERS_AT_ONCE);
}

#[test]
fn replies_handed_over_in_reverse_order_start_each_server_once() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    let mut paths = Vec::new();
    for name in ["a", "b", "c"] {
        paths.extend(publish(&mut store, name, 2, "8"));
    }
    events(&mut search, &mut store, &paths);
    let mut found = Vec::new();
    for _ in 0..10 {
        store.serve();
        let mut ids = search.ids();
        ids.reverse();
        for id in ids {
            if let Some(result) = store.take_reply(id) {
                for one in search.answer(&mut store, id, result) {
                    act(&mut search, &one, &mut keys);
                    found.push(one);
                }
            }
        }
    }
    assert!(search.ids().is_empty());
    let mut names = opened(&found);
    names.sort();
    assert_eq!(
        names,
        vec![("a".into(), 2), ("b".into(), 2), ("c".into(), 2)]
    );
}

#[test]
fn a_vchan_that_changes_between_its_event_and_its_reads_is_judged_by_what_is_read() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    let paths = publish(&mut store, "echo", 0, "8");
    publish(&mut store, "gone", 0, "9");
    search.on_watch_event(&mut store, BASE);
    // Listed with both vchans; "gone" is removed before its nodes are read.
    store.serve();
    assert!(search.take_replies(&mut store).is_empty());
    store.remove(&format!("{BASE}/gone"));
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    // The server republishes with a new ring-ref: the old session ends, a new one starts.
    store.put(&format!("{BASE}/echo/ring-ref"), "12");
    events(&mut search, &mut store, &paths[2..]);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(found[0], Found::End(1));
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    // Its nodes removed: the session ends and nothing starts.
    store.remove(&format!("{BASE}/echo"));
    events(&mut search, &mut store, &[format!("{BASE}/echo")]);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(found, vec![Found::End(2)]);
}

#[test]
fn a_reply_for_a_session_that_ended_meanwhile_ends_nothing() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    let paths = publish(&mut store, "echo", 0, "8");
    events(&mut search, &mut store, &paths[2..]);
    settle(&mut search, &mut store, &mut keys);
    // Its nodes change; the lookup is in flight when the session ends for another reason
    // (a fault): the answer must not end it again, nor restart the vchan.
    store.put(&format!("{BASE}/echo/event-channel"), "40");
    events(&mut search, &mut store, &paths[1..2]);
    assert_eq!(search.ended(1), Some("echo".into()));
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(found, vec![]);
    assert_eq!(search.live_count(), 0);
}

#[test]
fn refusals_leave_vchans_alone_and_a_later_publication_is_tried_again() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    // The listing refused: nothing is looked up until the next event.
    store.server.refuse.insert(BASE.into(), "EACCES");
    let paths = publish(&mut store, "echo", 0, "8");
    search.on_watch_event(&mut store, BASE);
    let (found, round_trips) = settle(&mut search, &mut store, &mut keys);
    assert_eq!((found, round_trips), (vec![], 1));
    // The owner's read refused: not connected.
    store.server.refuse.clear();
    let ring_path = format!("{BASE}/echo/ring-ref");
    let mut refusing = store.server.refuse.clone();
    refusing.insert(ring_path.clone(), "EACCES");
    search.on_watch_event(&mut store, BASE);
    store.serve();
    assert!(search.take_replies(&mut store).is_empty());
    store.serve();
    assert!(search.take_replies(&mut store).is_empty(), "nodes read");
    store.server.refuse = refusing;
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(found, vec![]);
    // Published again, readable now: connected.
    store.server.refuse.clear();
    events(&mut search, &mut store, &paths[2..]);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    // A node that cannot be read reads as absent: the live session ends.
    store
        .server
        .refuse
        .insert(format!("{BASE}/echo/event-channel"), "EIO");
    events(&mut search, &mut store, &paths[1..2]);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(found, vec![Found::End(1)]);
}

#[test]
fn reads_that_cannot_be_sent_read_as_absent_at_once_and_the_vchan_is_looked_up_again_later() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 4);
    let mut keys = 0;
    let paths = publish(&mut store, "echo", 0, "8");
    events(&mut search, &mut store, &paths);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    // Republished while the connection's backlog is full: nothing can be sent, so the nodes
    // read as absent now and the live session ends, with no reply to wait for.
    store.refuse_submissions = true;
    search.on_watch_event(&mut store, &paths[2]);
    assert!(search.ids().is_empty());
    assert!(search.has_replies(&store));
    let found = search.take_replies(&mut store);
    assert_eq!(found, vec![Found::End(keys)]);
    act(&mut search, &found[0], &mut keys);
    assert!(!search.has_replies(&store));
    // The lookup ended with it: the next publication is looked up and connects.
    store.refuse_submissions = false;
    search.on_watch_event(&mut store, &paths[2]);
    assert_eq!(search.ids().len(), 2);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    assert_eq!(search.live_count(), 1);
}

#[test]
fn events_for_a_vchan_in_flight_make_one_more_lookup() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 32);
    let mut keys = 0;
    let paths = publish(&mut store, "echo", 0, "8");
    for _ in 0..10 {
        events(&mut search, &mut store, &paths);
    }
    assert_eq!(search.ids().len(), 2);
    let submitted = store.submitted;
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found), vec![("echo".into(), 0)]);
    assert_eq!(
        store.submitted - submitted,
        1 + 2,
        "its owner, then one more lookup (two reads)"
    );
}

#[test]
fn bad_names_and_vchans_past_the_limit_are_refused() {
    let mut store = FakeStore::new();
    let mut search = ServerSearch::new(BASE, 2);
    let mut keys = 0;
    let mut paths = Vec::new();
    for name in ["a", "b", "c"] {
        paths.extend(publish(&mut store, name, 0, "8"));
    }
    paths.push(format!("{BASE}/bad name/ring-ref"));
    events(&mut search, &mut store, &paths);
    let (found, _) = settle(&mut search, &mut store, &mut keys);
    assert_eq!(opened(&found).len(), 2);
    assert_eq!(search.live_count(), 2);
    assert_eq!(store.in_flight(), 0);
}
