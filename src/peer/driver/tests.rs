//! Tests of the executor loop over a fake world: results fed back in order, unmaps counted, late answers released.

use super::*;
use crate::peer::pending::{Answered, PendingRequests};
use crate::peer::share::nodes::{RawFrontendNodes, FRONTEND_NODES};
use crate::peer::share::protocol::{ShareMapping, ShareProtocol};
use crate::peer::share::registry::{open_device, ShareKey, ShareRegistry};
use crate::peer::store_limit::StoreRefusal;
use crate::peer::vchan::testing::FakeMemory;
use crate::shared_memory::SharedMemory;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use xenstore::{Reply, ReplyError, RequestId, XsError};

/// A fake world that logs what was done.
#[derive(Default)]
struct World {
    log: Vec<String>,
    /// Answer reads later instead of at once.
    defer_reads: bool,
    /// Fail every transaction, as xenstored does past a quota or when it does not answer.
    fail_transactions: bool,
    /// Writes in flight as the kernel records them (request ids from 1).
    pending: PendingRequests<ShareKey>,
    next_request: u32,
    /// The node whose writes xenstored refuses, and the ids of those writes.
    refuse: Option<&'static str>,
    refused_ids: Vec<RequestId>,
    /// Keep transactions in flight (their follow-up actions here) instead of writing at once.
    defer_transactions: bool,
    kept: Option<Vec<PeerAction<ShareProtocol, FakeMemory>>>,
}

const NODES: RawFrontendNodes<'static> = RawFrontendNodes {
    nr_pages: Some(b"1"),
    refs: Some(b"8"),
    event_channel: Some(b"3"),
    pattern_seed: Some(b"0"),
    writable: Some(b"0"),
};

impl Effects<ShareProtocol, FakeMemory> for World {
    fn map(
        &mut self,
        _: ShareKey,
        peer: DomId,
        refs: &[GrantRef],
        writable: bool,
        _: ShareMapping,
    ) -> Result<FakeMemory, i32> {
        self.log.push(format!(
            "map d{peer} {} ref(s) writable={writable}",
            refs.len()
        ));
        let memory = FakeMemory::new(4096);
        memory
            .write_bytes(0, &crate::peer::share::pattern::page(0, 0))
            .map_err(|_| -1)?;
        Ok(memory)
    }
    fn unmap(&mut self, _: ShareKey, _: ShareMapping, _: FakeMemory) -> usize {
        self.log.push("unmap".to_string());
        1
    }
    fn bind(&mut self, _: ShareKey, _: DomId, remote: RemotePort) -> Result<EvtchnPort, i32> {
        self.log.push(format!("bind {remote}"));
        Ok(EvtchnPort::new(40).unwrap())
    }
    fn notify(&mut self, _: ShareKey, port: EvtchnPort) {
        self.log.push(format!("notify {port}"));
    }
    fn close_port(&mut self, _: ShareKey, port: EvtchnPort) {
        self.log.push(format!("close {port}"));
    }
    fn read_peer_nodes(
        &mut self,
        _: ShareKey,
        names: &'static [&'static str],
    ) -> Option<OwnedNodes> {
        self.log.push(format!("read {}", names.len()));
        if self.defer_reads {
            return None;
        }
        Some(
            NODES
                .to_peer_nodes()
                .iter()
                .map(|(name, value)| (*name, value.map(<[u8]>::to_vec)))
                .collect(),
        )
    }
    fn write_nodes(&mut self, key: ShareKey, nodes: Vec<(&'static str, String)>) {
        let names: Vec<&str> = nodes.iter().map(|(name, _)| *name).collect();
        self.log.push(format!("write {}", names.join(",")));
        for (name, _) in nodes {
            self.next_request += 1;
            let id = RequestId::new(self.next_request);
            self.pending.track_write(id, key, name);
            if self.refuse == Some(name) {
                self.refused_ids.push(id);
            }
        }
    }
    fn remove_nodes(&mut self, _: ShareKey, names: Vec<&'static str>) {
        self.log.push(format!("remove {}", names.join(",")));
    }
    fn write_nodes_in_transaction(
        &mut self,
        _: ShareKey,
        nodes: Vec<(&'static str, String)>,
        then: Vec<PeerAction<ShareProtocol, FakeMemory>>,
    ) -> InTransaction<Vec<PeerAction<ShareProtocol, FakeMemory>>> {
        let names: Vec<&str> = nodes.iter().map(|(name, _)| *name).collect();
        if self.fail_transactions {
            self.log
                .push(format!("transaction failed {}", names.join(",")));
            return InTransaction::Failed;
        }
        if self.defer_transactions {
            self.log
                .push(format!("transaction sent {}", names.join(",")));
            self.kept = Some(then);
            return InTransaction::InFlight;
        }
        self.log.push(format!("transaction {}", names.join(",")));
        InTransaction::Written(then)
    }
    fn connected(&mut self, key: ShareKey, _: &crate::peer::share::session::Verification) {
        self.log.push(format!("connected {key}"));
    }
    fn closed(&mut self, key: ShareKey, reason: &CloseReason<ShareProtocol>, pages: usize) {
        self.log
            .push(format!("closed {key}: {reason}; {pages} page(s)"));
    }
}

fn opened(registry: &mut ShareRegistry<FakeMemory>, world: &mut World) -> ShareKey {
    let counters = ServiceCounters::new();
    let mut last = None;
    for (key, actions) in open_device(
        registry,
        DomId::new(4).unwrap(),
        crate::peer::device_id::DeviceId(0),
    ) {
        drive(registry, key, actions, world, &counters);
        last = Some(key);
    }
    last.unwrap()
}

#[test]
fn one_event_runs_the_whole_chain_of_results_in_order() {
    let counters = ServiceCounters::new();
    let mut registry = ShareRegistry::default();
    let mut world = World::default();
    let key = opened(&mut registry, &mut world);
    deliver(
        &mut registry,
        key,
        PeerEvent::PeerState(b"3"),
        &mut world,
        &counters,
    );
    assert_eq!(
        world.log,
        [
            "write mapped-pages,state",
            "read 5",
            "map d4 1 ref(s) writable=false",
            "bind 3",
            "write mapped-pages,pattern,digest,answer",
        ]
    );
    world.log.clear();
    // Connected once xenstored acknowledged the results.
    deliver(
        &mut registry,
        key,
        PeerEvent::OwnNodesWritten,
        &mut world,
        &counters,
    );
    assert_eq!(
        world.log,
        ["write state", "notify 40", "connected d4/share0#1"]
    );
    world.log.clear();
    deliver(
        &mut registry,
        key,
        PeerEvent::PeerState(b"5"),
        &mut world,
        &counters,
    );
    assert_eq!(
        world.log,
        [
            "unmap",
            "close 40",
            "write mapped-pages,state",
            "closed d4/share0#1: frontend state Closing (5); 1 page(s)",
        ]
    );
    assert!(registry.is_empty());
}

#[test]
fn a_deferred_read_is_answered_later_and_a_late_answer_for_a_gone_session_releases() {
    let counters = ServiceCounters::new();
    let mut registry = ShareRegistry::default();
    let mut world = World {
        defer_reads: true,
        ..World::default()
    };
    let key = opened(&mut registry, &mut world);
    deliver(
        &mut registry,
        key,
        PeerEvent::PeerState(b"3"),
        &mut world,
        &counters,
    );
    assert_eq!(world.log, ["write mapped-pages,state", "read 5"]);
    let nodes = NODES.to_peer_nodes();
    deliver(
        &mut registry,
        key,
        PeerEvent::PeerNodesRead(&nodes),
        &mut world,
        &counters,
    );
    deliver(
        &mut registry,
        key,
        PeerEvent::OwnNodesWritten,
        &mut world,
        &counters,
    );
    assert!(world.log.iter().any(|line| line.starts_with("connected")));
    deliver(
        &mut registry,
        key,
        PeerEvent::DomainDied,
        &mut world,
        &counters,
    );
    assert!(registry.is_empty());
    world.log.clear();
    // A map finishing for the ended session is released, not delivered.
    let late = PeerEvent::Mapped {
        purpose: ShareMapping::Pages,
        result: Ok(FakeMemory::new(4096)),
    };
    deliver(&mut registry, key, late, &mut world, &counters);
    assert_eq!(world.log, ["unmap"]);
    let _ = FRONTEND_NODES;
    let _ = vec![0u8];
}

#[test]
fn a_failed_transaction_drops_what_was_queued_after_it_and_ends_the_session_with_an_error() {
    let counters = ServiceCounters::new();
    let mut registry = ShareRegistry::default();
    let mut world = World {
        fail_transactions: true,
        ..World::default()
    };
    let key = opened(&mut registry, &mut world);
    world.log.clear();
    // What a session asks at connect: its nodes in one transaction, then `state`.
    let actions = vec![
        PeerAction::WriteNodesInTransaction(vec![("sectors", "128".to_string())]),
        PeerAction::WriteNodes(vec![("state", "4".to_string())]),
    ];
    drive(&mut registry, key, actions, &mut world, &counters);
    assert_eq!(
        world.log.first().map(String::as_str),
        Some("transaction failed sectors")
    );
    assert!(
        !world.log.iter().any(|line| line == "write state"),
        "state written after a failed transaction: {:?}",
        world.log
    );
    assert!(
        world
            .log
            .iter()
            .any(|line| line.starts_with("write ") && line.contains("error")),
        "no error node: {:?}",
        world.log
    );
    assert!(
        world.log.last().is_some_and(
            |line| line.contains("nodes not written: the transaction refused or not answered")
        ),
        "not closed for the failed write: {:?}",
        world.log
    );
}

/// As the kernel's service does when replies arrive: answers every write in flight in the
/// order sent (those of `World::refuse` with ENOSPC) and delivers what each answer means.
fn answer_writes(registry: &mut ShareRegistry<FakeMemory>, world: &mut World) {
    let counters = ServiceCounters::new();
    for id in world.pending.ids() {
        let result = match world.refused_ids.contains(&id) {
            true => Err(ReplyError::Xenstore(XsError::NoSpace)),
            false => Ok(Reply::Acknowledged),
        };
        match world.pending.answer(id, result) {
            Answered::WriteFailed { key, node, error } => {
                let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::write(node, error));
                deliver(registry, key, event, world, &counters);
            }
            Answered::WritesAcknowledged { key } => {
                deliver(registry, key, PeerEvent::OwnNodesWritten, world, &counters);
            }
            Answered::NodesRead { .. } | Answered::Nothing => {}
        }
    }
}

#[test]
fn results_acknowledged_by_xenstored_connect_and_a_refused_one_ends_the_session_with_its_quota() {
    for refuse in [None, Some("digest")] {
        let counters = ServiceCounters::new();
        let mut registry = ShareRegistry::default();
        let mut world = World {
            refuse,
            ..World::default()
        };
        let key = opened(&mut registry, &mut world);
        answer_writes(&mut registry, &mut world);
        deliver(
            &mut registry,
            key,
            PeerEvent::PeerState(b"3"),
            &mut world,
            &counters,
        );
        assert_eq!(
            world.log.last().map(String::as_str),
            Some("write mapped-pages,pattern,digest,answer")
        );
        world.log.clear();
        answer_writes(&mut registry, &mut world);
        match refuse {
            None => assert_eq!(
                world.log,
                ["write state", "notify 40", "connected d4/share0#1"]
            ),
            Some(_) => {
                assert_eq!(
                    world.log,
                    [
                        "unmap",
                        "close 40",
                        "remove mapped-pages,pattern,digest,answer",
                        "write error,state",
                        "closed d4/share0#1: backend nodes not written: digest refused with \
                         ENOSPC: xenstored's quota of nodes per domain is exhausted (xenstored \
                         --entry-nb; or a node reached --entry-size); 1 page(s)",
                    ]
                );
                assert!(registry.is_empty());
            }
        }
    }
}

#[test]
fn a_transaction_in_flight_holds_back_what_follows_until_it_commits() {
    let counters = ServiceCounters::new();
    let mut registry = ShareRegistry::default();
    let mut world = World {
        defer_transactions: true,
        ..World::default()
    };
    let key = opened(&mut registry, &mut world);
    world.log.clear();
    let actions = vec![
        PeerAction::WriteNodesInTransaction(vec![("sectors", "128".to_string())]),
        PeerAction::WriteNodes(vec![("state", "4".to_string())]),
    ];
    drive(&mut registry, key, actions, &mut world, &counters);
    assert_eq!(
        world.log,
        ["transaction sent sectors"],
        "state waits for the commit"
    );
    let then = world.kept.take().unwrap();
    resume(&mut registry, key, Ok(then), &mut world, &counters);
    assert_eq!(world.log, ["transaction sent sectors", "write state"]);
    // Another transaction that fails once in flight: the session ends with an error node.
    world.log.clear();
    let actions = vec![
        PeerAction::WriteNodesInTransaction(vec![("sectors", "128".to_string())]),
        PeerAction::WriteNodes(vec![("state", "4".to_string())]),
    ];
    drive(&mut registry, key, actions, &mut world, &counters);
    world.kept = None;
    resume(&mut registry, key, Err(()), &mut world, &counters);
    assert!(
        !world.log.iter().any(|line| line == "write state"),
        "{:?}",
        world.log
    );
    assert!(
        world.log.last().is_some_and(|line| line
            .contains("backend nodes not written: the transaction refused or not answered")),
        "{:?}",
        world.log
    );
}
