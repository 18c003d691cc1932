//! Tests of transactional writes over the fake xenstored: committed only once every write is acknowledged, run again on EAGAIN, refused writes never committed, sessions independent of each other, forgotten sessions' transactions ended.

use super::*;
use crate::peer::fake_store::FakeStore;
use crate::peer::store_requests::take_arrived;
use alloc::vec;

const DIRECTORY: &str = "/local/domain/4/backend/vbd/5/768";

fn nodes(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| (format!("{DIRECTORY}/{name}"), format!("value of {name}")))
        .collect()
}

fn written(store: &FakeStore, name: &str) -> bool {
    store
        .server
        .values
        .contains_key(&format!("{DIRECTORY}/{name}"))
}

/// Serves and takes replies until nothing is in flight; the outcomes and the round trips.
fn settle(
    writes: &mut TransactionWrites<u32, &'static str>,
    store: &mut FakeStore,
) -> (Vec<Outcome<u32, &'static str>>, usize) {
    let mut outcomes = Vec::new();
    let mut round_trips = 0;
    while !writes.ids().is_empty() {
        round_trips += 1;
        assert!(round_trips < 30, "the writes do not settle");
        store.serve();
        outcomes.extend(writes.take_replies(store));
    }
    (outcomes, round_trips)
}

#[test]
fn nodes_appear_together_when_the_commit_is_answered() {
    let mut store = FakeStore::new();
    let mut writes = TransactionWrites::default();
    writes
        .start(
            &mut store,
            1,
            nodes(&["sectors", "info", "sector-size"]),
            "then",
        )
        .unwrap();
    store.serve();
    assert!(writes.take_replies(&mut store).is_empty());
    assert_eq!(writes.ids().len(), 3, "the three writes in flight together");
    store.serve();
    assert!(writes.take_replies(&mut store).is_empty());
    assert!(
        !written(&store, "sectors"),
        "nothing visible before the commit"
    );
    store.serve();
    assert_eq!(
        writes.take_replies(&mut store),
        vec![Outcome::Committed {
            key: 1,
            then: "then",
            attempts: 1
        }]
    );
    assert!(["sectors", "info", "sector-size"]
        .iter()
        .all(|name| written(&store, name)));
    assert_eq!(store.in_flight(), 0);
}

#[test]
fn a_commit_answered_with_eagain_runs_again_up_to_the_limit() {
    let mut store = FakeStore::new();
    let mut writes = TransactionWrites::default();
    store.server.conflicting_commits = 2;
    writes
        .start(&mut store, 1, nodes(&["sectors"]), "then")
        .unwrap();
    let (outcomes, round_trips) = settle(&mut writes, &mut store);
    assert_eq!(
        outcomes,
        vec![Outcome::Committed {
            key: 1,
            then: "then",
            attempts: 3
        }]
    );
    assert_eq!(round_trips, 9, "three runs of start, write, commit");
    store.server.conflicting_commits = 100;
    writes
        .start(&mut store, 2, nodes(&["info"]), "then")
        .unwrap();
    let (outcomes, _) = settle(&mut writes, &mut store);
    assert!(
        matches!(&outcomes[..], [Outcome::Failed { key: 2, reason, .. }] if reason.contains("run 5 of at most 5")),
        "{outcomes:?}"
    );
    assert!(!written(&store, "info"));
}

#[test]
fn a_refused_write_is_never_committed() {
    let mut store = FakeStore::new();
    let mut writes = TransactionWrites::default();
    store
        .server
        .refuse
        .insert(format!("{DIRECTORY}/info"), "ENOSPC");
    writes
        .start(&mut store, 1, nodes(&["sectors", "info"]), "then")
        .unwrap();
    let (outcomes, _) = settle(&mut writes, &mut store);
    assert!(
        matches!(&outcomes[..], [Outcome::Failed { key: 1, then: "then", reason }] if reason.contains("ENOSPC")),
        "{outcomes:?}"
    );
    assert!(
        !written(&store, "sectors"),
        "the acknowledged write was not committed"
    );
    store.serve();
    assert_eq!(store.in_flight(), 0, "the transaction was ended");
    // A start refused is a failure too.
    store.server.refuse.insert(String::new(), "EQUOTA");
    writes
        .start(&mut store, 2, nodes(&["sectors"]), "then")
        .unwrap();
    let (outcomes, _) = settle(&mut writes, &mut store);
    assert!(matches!(&outcomes[..], [Outcome::Failed { key: 2, .. }]));
}

#[test]
fn one_session_s_slow_transaction_holds_up_no_other() {
    let mut store = FakeStore::new();
    let mut writes = TransactionWrites::default();
    writes.start(&mut store, 1, nodes(&["a"]), "first").unwrap();
    writes
        .start(&mut store, 2, nodes(&["b"]), "second")
        .unwrap();
    let first_start = writes.ids()[0];
    let mut outcomes = Vec::new();
    // The first session's start is never handed over; the second goes all the way.
    for _ in 0..5 {
        store.serve();
        let mut ids = writes.ids();
        ids.retain(|id| *id != first_start);
        ids.reverse();
        for (id, result) in take_arrived(&mut store, &ids) {
            outcomes.extend(writes.answer(&mut store, id, result));
        }
    }
    assert_eq!(
        outcomes,
        vec![Outcome::Committed {
            key: 2,
            then: "second",
            attempts: 1
        }]
    );
    assert_eq!(writes.ids(), vec![first_start]);
    let (outcomes, _) = settle(&mut writes, &mut store);
    assert_eq!(outcomes.len(), 1);
}

#[test]
fn a_forgotten_session_s_transaction_is_ended_without_commit_at_every_stage() {
    let mut store = FakeStore::new();
    let mut writes: TransactionWrites<u32, &'static str> = TransactionWrites::default();
    // Forgotten before its start is answered, while writing, and while committing.
    for (key, serves) in [(1, 0), (2, 1), (3, 2)] {
        let name = format!("n{key}");
        writes
            .start(&mut store, key, nodes(&[name.as_str()]), "then")
            .unwrap();
        for _ in 0..serves {
            store.serve();
            assert!(writes.take_replies(&mut store).is_empty());
        }
        assert_eq!(writes.forget(&mut store, key), Some("then"));
        assert_eq!(writes.forget(&mut store, key), None);
        let (outcomes, _) = settle(&mut writes, &mut store);
        assert!(outcomes.is_empty(), "key {key}: {outcomes:?}");
        store.serve();
        assert_eq!(store.in_flight(), 0, "key {key}: a request left waiting");
    }
    assert!(!written(&store, "n1") && !written(&store, "n2"));
}

#[test]
fn at_most_max_open_transactions_are_open_and_the_rest_wait_their_turn() {
    let mut store = FakeStore::new();
    let mut writes = TransactionWrites::default();
    let sessions = MAX_OPEN as u32 + 3;
    for key in 0..sessions {
        let name = format!("n{key}");
        writes
            .start(&mut store, key, nodes(&[name.as_str()]), "then")
            .unwrap();
    }
    assert_eq!(store.submitted, MAX_OPEN, "only MAX_OPEN starts sent");
    // One queued session ends before its turn: nothing is ever sent for it.
    assert_eq!(writes.forget(&mut store, sessions - 1), Some("then"));
    let mut committed = Vec::new();
    let mut most_open = 0;
    for _ in 0..30 {
        most_open = most_open.max(writes.open());
        store.serve();
        for outcome in writes.take_replies(&mut store) {
            match outcome {
                Outcome::Committed { key, .. } => committed.push(key),
                other => panic!("{other:?}"),
            }
        }
    }
    committed.sort();
    assert_eq!(committed, (0..sessions - 1).collect::<Vec<_>>());
    assert!(most_open <= MAX_OPEN, "{most_open} open at once");
    assert!(!written(&store, &format!("n{}", sessions - 1)));
    // Forgotten before its start is answered, a write keeps its place until then (its
    // transaction is open in xenstored until it is ended); forgotten later, it frees its place
    // at once, without any reply.
    for key in 0..MAX_OPEN as u32 + 2 {
        let name = format!("m{key}");
        writes
            .start(&mut store, 100 + key, nodes(&[name.as_str()]), "then")
            .unwrap();
    }
    writes.forget(&mut store, 100);
    assert!(!writes.has_replies(&store));
    store.serve();
    assert!(writes.take_replies(&mut store).is_empty());
    assert_eq!(
        writes.open(),
        MAX_OPEN,
        "the orphan's place went to a queued write"
    );
    writes.forget(&mut store, 101);
    assert!(
        writes.has_replies(&store),
        "the last queued write may start now"
    );
    let (outcomes, _) = settle(&mut writes, &mut store);
    assert_eq!(outcomes.len(), MAX_OPEN);
    assert!(!written(&store, "m0") && !written(&store, "m1"));
}
