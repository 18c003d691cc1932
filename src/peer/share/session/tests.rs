//! Tests of the grant-share backend session: the connect flow, the answer, every form of revocation and hostile frontends.

use super::*;
use crate::peer::share::nodes::RawFrontendNodes;
use crate::peer::store_limit::StoreRefusal;
use crate::peer::value::RemotePort;
use crate::peer::vchan::testing::FakeMemory;
use xenstore::{ReplyError, XsError};

fn mapped(result: Result<FakeMemory, i32>) -> ShareEvent<'static, FakeMemory> {
    ShareEvent::Mapped {
        purpose: ShareMapping::Pages,
        result,
    }
}

const PEER: DomId = DomId::new(4).unwrap();
const DEVICE: DeviceId = DeviceId(0);
const PORT: EvtchnPort = EvtchnPort::new(21).unwrap();
const SEED: u32 = 0xdead_beef;

/// One action as carried out, for asserting order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Write(Vec<(&'static str, String)>),
    Remove(Vec<&'static str>),
    ReadNodes,
    Map(usize, bool),
    Bind(RemotePort),
    Unmap,
    Notify,
    ClosePort,
    Connected(Verification),
    Closed(CloseReason),
}

/// A frontend's pages and a fake kernel carrying out the session's actions.
struct Harness {
    session: ShareSession<FakeMemory>,
    pages: FakeMemory,
    steps: Vec<Step>,
    live_mappings: usize,
    map_status: Option<i32>,
    bind_status: Option<i32>,
    /// As xenstored: after each batch of actions, its writes are acknowledged (false: the
    /// answer is left for the test to deliver)...
    acknowledge_writes: bool,
    /// ... or this node's write is refused with this error.
    refuse: Option<(&'static str, XsError)>,
}

impl Harness {
    fn new(pages: u32) -> Harness {
        let memory = FakeMemory::new(pages as usize * PAGE_SIZE);
        for page in 0..pages {
            memory
                .write_bytes(page as usize * PAGE_SIZE, &pattern::page(SEED, page))
                .unwrap();
        }
        let (session, actions) = ShareSession::new(PEER, DEVICE);
        let mut harness = Harness {
            session,
            pages: memory,
            steps: Vec::new(),
            live_mappings: 0,
            map_status: None,
            bind_status: None,
            acknowledge_writes: true,
            refuse: None,
        };
        harness.carry_out(actions);
        harness
    }

    fn deliver(&mut self, event: ShareEvent<'_, FakeMemory>) {
        let actions = self.session.handle(event);
        self.carry_out(actions);
    }

    fn carry_out(&mut self, actions: Vec<ShareAction<FakeMemory>>) {
        let mut answer = None;
        for action in actions {
            let follow_up = match action {
                ShareAction::WriteNodes(nodes) | ShareAction::WriteNodesInTransaction(nodes) => {
                    let refused = self
                        .refuse
                        .filter(|(name, _)| nodes.iter().any(|(node, _)| node == name));
                    answer = match (refused, answer) {
                        (Some((node, error)), _) => {
                            let error = ReplyError::Xenstore(error);
                            Some(ShareEvent::OwnNodesNotWritten(StoreRefusal::write(
                                node, error,
                            )))
                        }
                        (None, Some(refusal @ ShareEvent::OwnNodesNotWritten(_))) => Some(refusal),
                        (None, _) => Some(ShareEvent::OwnNodesWritten),
                    };
                    self.steps.push(Step::Write(nodes));
                    None
                }
                ShareAction::RemoveNodes(names) => {
                    self.steps.push(Step::Remove(names));
                    None
                }
                ShareAction::ReadPeerNodes(names) => {
                    assert_eq!(names, &FRONTEND_NODES);
                    self.steps.push(Step::ReadNodes);
                    None
                }
                ShareAction::MapGrants {
                    peer,
                    refs,
                    writable,
                    purpose,
                } => {
                    assert_eq!(peer, PEER);
                    assert_eq!(purpose, ShareMapping::Pages);
                    self.steps.push(Step::Map(refs.len(), writable));
                    Some(match self.map_status {
                        Some(status) => mapped(Err(status)),
                        None => {
                            self.live_mappings += 1;
                            mapped(Ok(self.pages.clone()))
                        }
                    })
                }
                ShareAction::BindInterdomain { peer, remote_port } => {
                    assert_eq!(peer, PEER);
                    self.steps.push(Step::Bind(remote_port));
                    Some(ShareEvent::PortBound(match self.bind_status {
                        Some(status) => Err(status),
                        None => Ok(PORT),
                    }))
                }
                ShareAction::Unmap { region, .. } => {
                    assert!(region.same_as(&self.pages));
                    self.live_mappings -= 1;
                    self.steps.push(Step::Unmap);
                    None
                }
                ShareAction::Notify(port) => {
                    assert_eq!(port, PORT);
                    self.steps.push(Step::Notify);
                    None
                }
                ShareAction::ClosePort(port) => {
                    assert_eq!(port, PORT);
                    self.steps.push(Step::ClosePort);
                    None
                }
                ShareAction::ReportConnected(verification) => {
                    self.steps.push(Step::Connected(verification));
                    None
                }
                ShareAction::ReportClosed(reason) => {
                    self.steps.push(Step::Closed(reason));
                    None
                }
            };
            if let Some(event) = follow_up {
                self.deliver(event);
            }
        }
        if let (true, Some(event)) = (self.acknowledge_writes, answer) {
            self.deliver(event);
        }
    }

    /// The frontend publishes `nodes` and goes Initialised.
    fn publish(&mut self, nodes: RawFrontendNodes<'_>) {
        self.deliver(ShareEvent::PeerState(b"3"));
        assert_eq!(self.steps.last(), Some(&Step::ReadNodes));
        self.deliver(ShareEvent::PeerNodesRead(&nodes.to_peer_nodes()));
    }

    fn connect(&mut self, pages: &[u8], refs: &[u8], writable: bool) {
        let seed = SEED.to_string();
        self.publish(RawFrontendNodes {
            nr_pages: Some(pages),
            refs: Some(refs),
            event_channel: Some(b"9"),
            pattern_seed: Some(seed.as_bytes()),
            writable: Some(if writable { b"1" } else { b"0" }),
        });
    }

    fn page(&self, number: u32) -> Vec<u8> {
        let mut bytes = vec![0; PAGE_SIZE];
        self.pages
            .read_bytes(number as usize * PAGE_SIZE, &mut bytes)
            .unwrap();
        bytes
    }

    fn take_steps(&mut self) -> Vec<Step> {
        core::mem::take(&mut self.steps)
    }
}

fn node(name: &'static str, value: &str) -> (&'static str, String) {
    (name, value.to_string())
}

fn closed_writes(error: Option<String>) -> Step {
    let mut nodes = vec![node("mapped-pages", "0")];
    if let Some(error) = error {
        nodes.push(("error", error));
    }
    nodes.push(node("state", "6"));
    Step::Write(nodes)
}

#[test]
fn a_writable_share_is_mapped_checked_answered_and_released_unmap_first() {
    let mut harness = Harness::new(3);
    assert_eq!(
        harness.take_steps(),
        [Step::Write(vec![
            node("mapped-pages", "0"),
            node("state", "2")
        ])]
    );
    // Initialising is not yet a reason to read anything.
    harness.deliver(ShareEvent::PeerState(b"1"));
    assert!(harness.take_steps().is_empty());
    harness.connect(b"3", b"100 101 102", true);
    let digest = pattern::expected_digest(SEED, 3);
    let verification = Verification {
        pages: 3,
        mismatch: None,
        digest,
        answered: true,
    };
    assert_eq!(
        harness.take_steps(),
        [
            Step::ReadNodes,
            Step::Map(3, true),
            Step::Bind(RemotePort(9)),
            Step::Write(vec![
                node("mapped-pages", "3"),
                node("pattern", "ok"),
                node("digest", &format!("{digest:08x}")),
                node("answer", "written"),
            ]),
            // Only once xenstored acknowledged every result.
            Step::Write(vec![node("state", "4")]),
            Step::Notify,
            Step::Connected(verification),
        ]
    );
    assert_eq!(harness.session.mapped_pages(), 3);
    assert_eq!(harness.session.port(), Some(PORT));
    for number in 0..3 {
        let mut expected = pattern::page(SEED, number).to_vec();
        pattern::apply_answer(&mut expected);
        assert_eq!(harness.page(number), expected, "page {number}");
    }
    // Further signals and repeated states change nothing.
    harness.deliver(ShareEvent::EventChannel);
    harness.deliver(ShareEvent::PeerState(b"4"));
    assert!(harness.take_steps().is_empty());
    harness.deliver(ShareEvent::PeerState(b"5"));
    assert_eq!(
        harness.take_steps(),
        [
            Step::Unmap,
            Step::ClosePort,
            closed_writes(None),
            Step::Closed(CloseReason::PeerStateClosing(XenbusState::Closing)),
        ]
    );
    assert_eq!(harness.live_mappings, 0);
    assert!(harness.session.is_closed());
    assert_eq!(harness.session.mapped_pages(), 0);
}

#[test]
fn read_only_pages_are_digested_but_never_written() {
    let mut harness = Harness::new(2);
    harness.connect(b"2", b"7 8", false);
    let steps = harness.take_steps();
    assert!(steps.contains(&Step::Map(2, false)));
    assert!(steps.contains(&Step::Write(vec![
        node("mapped-pages", "2"),
        node("pattern", "ok"),
        node(
            "digest",
            &format!("{:08x}", pattern::expected_digest(SEED, 2))
        ),
        node("answer", "none read-only"),
    ])));
    assert_eq!(harness.page(0), pattern::page(SEED, 0));
    assert_eq!(harness.page(1), pattern::page(SEED, 1));
}

#[test]
fn a_pattern_mismatch_is_reported_and_nothing_is_written() {
    let mut harness = Harness::new(2);
    harness
        .pages
        .store_u8(PAGE_SIZE + 77, 0x5a ^ harness.page(1)[77])
        .unwrap();
    let corrupted = (harness.page(0), harness.page(1));
    harness.connect(b"2", b"7 8", true);
    let steps = harness.take_steps();
    let Some(Step::Connected(verification)) = steps.last() else {
        panic!("{steps:?}");
    };
    assert_eq!(verification.mismatch, Some((1, 77)));
    assert_eq!(verification.pattern_value(), "mismatch at page 1 byte 77");
    assert!(!verification.answered);
    assert!(steps.iter().any(|step| matches!(step,
        Step::Write(nodes) if nodes.contains(&node("answer", "none pattern-mismatch")))));
    assert_eq!((harness.page(0), harness.page(1)), corrupted);
}

#[test]
fn garbage_nodes_end_the_session_before_anything_is_mapped() {
    let cases: [(&[u8], &[u8], &str); 4] = [
        (b"2", b"7 x", "refs[1]: non-numeric value \"x\""),
        (b"0", b"", "nr-pages 0 is outside 1..=256"),
        (b"300", b"1", "nr-pages 300 is outside 1..=256"),
        (b"3", b"1 2", "refs holds fewer than nr-pages (3) refs"),
    ];
    for (pages, refs, message) in cases {
        let mut harness = Harness::new(2);
        harness.take_steps();
        harness.connect(pages, refs, true);
        let error = format!("peer domain 4 grantsvc-share device 0: {message}; session ended");
        let steps = harness.take_steps();
        assert_eq!(steps.len(), 3, "{steps:?}");
        assert_eq!(steps[1], closed_writes(Some(error.clone())));
        assert!(matches!(&steps[2], Step::Closed(reason) if reason.to_string() == error));
        assert!(harness.session.is_closed());
        // A late result still gets released.
        harness.live_mappings += 1;
        harness.deliver(mapped(Ok(harness.pages.clone())));
        assert_eq!(harness.take_steps(), [Step::Unmap]);
        assert_eq!(harness.live_mappings, 0);
    }
}

#[test]
fn a_bad_port_is_refused_before_mapping_and_a_failed_bind_unmaps_first() {
    let mut harness = Harness::new(1);
    harness.take_steps();
    harness.publish(RawFrontendNodes {
        nr_pages: Some(b"1"),
        refs: Some(b"5"),
        event_channel: Some(b"0"),
        pattern_seed: Some(b"1"),
        writable: Some(b"1"),
    });
    assert!(!harness
        .steps
        .iter()
        .any(|step| matches!(step, Step::Map(..))));
    assert!(harness.session.is_closed());

    let mut harness = Harness::new(1);
    harness.bind_status = Some(-22);
    harness.take_steps();
    harness.connect(b"1", b"5", true);
    let steps = harness.take_steps();
    assert_eq!(
        steps[..3],
        [
            Step::ReadNodes,
            Step::Map(1, true),
            Step::Bind(RemotePort(9))
        ]
    );
    assert_eq!(steps[3], Step::Unmap);
    assert!(matches!(&steps[4], Step::Write(nodes) if nodes.last() == Some(&node("state", "6"))));
    assert!(matches!(&steps[5], Step::Closed(CloseReason::Fault(fault))
        if fault.kind == ShareFaultKind::BindFailed { remote_port: RemotePort(9), status: -22 }));
    assert_eq!(harness.live_mappings, 0);
}

#[test]
fn a_failed_map_closes_with_the_status_and_nothing_to_unmap() {
    let mut harness = Harness::new(1);
    harness.map_status = Some(-3);
    harness.take_steps();
    harness.connect(b"1", b"5", true);
    let steps = harness.take_steps();
    assert!(!steps.contains(&Step::Unmap) && !steps.contains(&Step::ClosePort));
    assert!(
        matches!(steps.last(), Some(Step::Closed(CloseReason::Fault(fault)))
        if fault.kind == ShareFaultKind::MapFailed { status: -3 })
    );
}

#[test]
fn every_revocation_unmaps_first_and_only_live_peers_are_told() {
    let cases = [
        (
            ShareEvent::PeerNodesRemoved,
            CloseReason::PeerNodesRemoved,
            true,
        ),
        (ShareEvent::Shutdown, CloseReason::Shutdown, true),
        (
            ShareEvent::PeerState(b"6"),
            CloseReason::PeerStateClosing(XenbusState::Closed),
            true,
        ),
        (ShareEvent::DomainDied, CloseReason::DomainDied, false),
        (
            ShareEvent::OwnNodesRemoved,
            CloseReason::OwnNodesRemoved,
            false,
        ),
    ];
    for (event, reason, told) in cases {
        let mut harness = Harness::new(2);
        harness.connect(b"2", b"1 2", true);
        harness.take_steps();
        harness.deliver(event);
        let mut expected = vec![Step::Unmap, Step::ClosePort];
        if told {
            expected.push(closed_writes(None));
        }
        expected.push(Step::Closed(reason));
        assert_eq!(harness.take_steps(), expected);
        assert_eq!(harness.live_mappings, 0);
    }
}

#[test]
fn a_garbage_state_while_connected_is_a_fault_that_still_unmaps_first() {
    let mut harness = Harness::new(1);
    harness.connect(b"1", b"1", true);
    harness.take_steps();
    harness.deliver(ShareEvent::PeerState(b"Closing"));
    let steps = harness.take_steps();
    assert_eq!(steps[..2], [Step::Unmap, Step::ClosePort]);
    assert!(matches!(&steps[3], Step::Closed(CloseReason::Fault(fault))
        if matches!(fault.kind, ShareFaultKind::BadState(_))));
}

#[test]
fn a_death_while_binding_releases_the_mapping_and_the_late_port() {
    let mut harness = Harness::new(1);
    harness.take_steps();
    harness.deliver(ShareEvent::PeerState(b"3"));
    let nodes = RawFrontendNodes {
        nr_pages: Some(b"1"),
        refs: Some(b"5"),
        event_channel: Some(b"9"),
        pattern_seed: Some(b"1"),
        writable: Some(b"1"),
    };
    // Carry the map out by hand so that the bind is still outstanding when the peer dies.
    let actions = harness
        .session
        .handle(ShareEvent::PeerNodesRead(&nodes.to_peer_nodes()));
    assert!(matches!(actions[..], [ShareAction::MapGrants { .. }]));
    let actions = harness.session.handle(mapped(Ok(harness.pages.clone())));
    assert!(matches!(actions[..], [ShareAction::BindInterdomain { .. }]));
    harness.live_mappings += 1;
    assert_eq!(harness.session.mapped_pages(), 1);
    harness.deliver(ShareEvent::DomainDied);
    harness.deliver(ShareEvent::PortBound(Ok(PORT)));
    assert_eq!(
        harness.take_steps(),
        [
            Step::ReadNodes,
            Step::Unmap,
            Step::Closed(CloseReason::DomainDied),
            Step::ClosePort
        ]
    );
    assert_eq!(harness.live_mappings, 0);
}

#[test]
fn a_region_smaller_than_the_pages_is_released_not_read_past() {
    let mut harness = Harness::new(1);
    harness.take_steps();
    // Two refs but the kernel's region (the harness's pages) holds one page.
    harness.connect(b"2", b"1 2", true);
    let steps = harness.take_steps();
    assert_eq!(steps[3..5], [Step::Unmap, Step::ClosePort]);
    assert!(matches!(
        steps.last(),
        Some(Step::Closed(CloseReason::Protocol(
            ShareEnding::RegionTooSmall {
                size: 4096,
                pages: 2
            }
        )))
    ));
}

fn results(pages: u32, digest: u32, answer: &str) -> Step {
    Step::Write(vec![
        node("mapped-pages", &pages.to_string()),
        node("pattern", "ok"),
        node("digest", &format!("{digest:08x}")),
        node("answer", answer),
    ])
}

#[test]
fn connected_is_written_only_once_xenstored_acknowledged_every_result() {
    let mut harness = Harness::new(2);
    harness.acknowledge_writes = false;
    harness.take_steps();
    harness.connect(b"2", b"1 2", true);
    let digest = pattern::expected_digest(SEED, 2);
    assert_eq!(
        harness.take_steps(),
        [
            Step::ReadNodes,
            Step::Map(2, true),
            Step::Bind(RemotePort(9)),
            results(2, digest, "written"),
        ],
        "no state, no notification, no report before the acknowledgement"
    );
    assert_eq!(harness.session.mapped_pages(), 2);
    // Signals and states meanwhile change nothing.
    harness.deliver(ShareEvent::EventChannel);
    harness.deliver(ShareEvent::PeerState(b"3"));
    assert!(harness.take_steps().is_empty());
    harness.deliver(ShareEvent::OwnNodesWritten);
    let steps = harness.take_steps();
    assert_eq!(
        steps[..2],
        [Step::Write(vec![node("state", "4")]), Step::Notify]
    );
    assert!(matches!(steps[2], Step::Connected(_)));
    // A second acknowledgement (of the state write) changes nothing.
    harness.deliver(ShareEvent::OwnNodesWritten);
    assert!(harness.take_steps().is_empty());
}

#[test]
fn a_revocation_before_the_acknowledgement_unmaps_first_and_never_announces_connected() {
    let mut harness = Harness::new(1);
    harness.acknowledge_writes = false;
    harness.connect(b"1", b"1", true);
    harness.take_steps();
    harness.deliver(ShareEvent::PeerState(b"5"));
    harness.deliver(ShareEvent::OwnNodesWritten);
    let steps = harness.take_steps();
    assert_eq!(
        steps,
        [
            Step::Unmap,
            Step::ClosePort,
            closed_writes(None),
            Step::Closed(CloseReason::PeerStateClosing(XenbusState::Closing)),
        ]
    );
    assert_eq!(harness.live_mappings, 0);
}

#[test]
fn a_result_refused_past_the_node_quota_ends_the_session_with_room_made_for_the_error() {
    for refused in ["mapped-pages", "pattern", "digest", "answer"] {
        let mut harness = Harness::new(1);
        harness.take_steps();
        harness.refuse = Some((refused, XsError::NoSpace));
        harness.connect(b"1", b"1", true);
        let steps = harness.take_steps();
        let refusal = StoreRefusal::write(refused, ReplyError::Xenstore(XsError::NoSpace));
        let reason = CloseReason::OwnNodesNotWritten(refusal);
        let error = format!(
            "backend nodes not written: {refused} refused with ENOSPC: xenstored's quota of \
             nodes per domain is exhausted (xenstored --entry-nb; or a node reached \
             --entry-size)"
        );
        assert_eq!(reason.to_string(), error);
        assert_eq!(
            steps[4..],
            [
                Step::Unmap,
                Step::ClosePort,
                // The results go first, then the error fits where they were.
                Step::Remove(vec!["mapped-pages", "pattern", "digest", "answer"]),
                Step::Write(vec![("error", error), node("state", "6")]),
                Step::Closed(reason),
            ],
            "{refused}: {steps:?}"
        );
        assert!(
            !steps.iter().any(|step| matches!(step,
                Step::Write(nodes) if nodes.contains(&node("state", "4")))),
            "Connected written after a refused write: {steps:?}"
        );
        assert!(!steps.contains(&Step::Notify));
        assert_eq!(harness.live_mappings, 0);
        assert!(harness.session.is_closed());
    }
}

#[test]
fn other_refusals_name_their_cause_and_remove_nothing() {
    for (error, cause) in [
        (
            XsError::AccessDenied,
            "EACCES: no quota: the node's permissions refuse grantsvc",
        ),
        (
            XsError::OutOfMemory,
            "ENOMEM: xenstored's memory quota for the domain is exhausted (xenstored -Q memory=)",
        ),
        (
            XsError::Quota,
            "EQUOTA: xenstored's quota of nodes per domain",
        ),
    ] {
        let mut harness = Harness::new(1);
        harness.take_steps();
        harness.refuse = Some(("digest", error));
        harness.connect(b"1", b"1", true);
        let steps = harness.take_steps();
        let Some(Step::Closed(reason)) = steps.last() else {
            panic!("{steps:?}");
        };
        assert!(
            reason
                .to_string()
                .contains(&format!("digest refused with {cause}")),
            "{reason}"
        );
        let removes = steps.iter().any(|step| matches!(step, Step::Remove(_)));
        assert_eq!(removes, error == XsError::Quota, "{steps:?}");
        assert!(steps.iter().any(|step| matches!(step,
            Step::Write(nodes) if nodes.iter().any(|(name, _)| *name == "error"))));
    }
}

#[test]
fn a_refused_first_write_ends_the_session_before_anything_is_mapped() {
    let (mut session, actions) = ShareSession::<FakeMemory>::new(PEER, DEVICE);
    assert!(matches!(&actions[..], [ShareAction::WriteNodes(nodes)]
        if nodes.first().map(|(name, _)| *name) == Some("mapped-pages")));
    // The refusal came back for the InitWait write: the session ends at once.
    let refusal = StoreRefusal::write("mapped-pages", ReplyError::Xenstore(XsError::NoSpace));
    let actions = session.handle(ShareEvent::OwnNodesNotWritten(refusal));
    assert!(session.is_closed());
    assert!(matches!(
        &actions[..],
        [
            ShareAction::RemoveNodes(_),
            ShareAction::WriteNodes(_),
            ShareAction::ReportClosed(CloseReason::OwnNodesNotWritten(_)),
        ]
    ));
    // The frontend's readiness then reads nothing and maps nothing.
    assert!(session.handle(ShareEvent::PeerState(b"3")).is_empty());
}

#[test]
fn a_watch_refused_past_the_watch_quota_ends_the_session_with_the_quota_in_its_error_node() {
    let mut harness = Harness::new(1);
    harness.take_steps();
    let refusal = StoreRefusal::watch(Some(ReplyError::Xenstore(XsError::TooBig)));
    harness.deliver(ShareEvent::OwnNodesNotWritten(refusal));
    let error = "grantsvc cannot watch the frontend nodes: the watch refused with E2BIG: \
                 xenstored's quota of watches per domain is exhausted (xenstored --watch-nb)";
    assert_eq!(
        harness.take_steps(),
        [
            closed_writes(Some(error.to_string())),
            Step::Closed(CloseReason::OwnNodesNotWritten(refusal)),
        ]
    );
}
