//! Tests of the vchan session: connection, service, every form of revocation, and hostile peers.

use super::*;
use crate::abi::vchan as abi;
use crate::peer::vchan::testing::{nodes_read, FakeMemory, FakeServer};
use alloc::collections::VecDeque;
use alloc::string::ToString;

const PEER: DomId = DomId::new(5).unwrap();
const PORT: EvtchnPort = EvtchnPort::new(33).unwrap();

/// One action as carried out, for asserting order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Bind(RemotePort),
    Map(MapPurpose, usize, bool),
    Unmap(MapPurpose),
    Notify,
    ClosePort,
    Connected,
    Closed(CloseReason),
}

/// A fake kernel: carries out actions against a fake server and feeds results back.
struct FakeKernel {
    server: FakeServer,
    session: VchanSession<FakeMemory>,
    live_mappings: usize,
    steps: Vec<Step>,
    fail_map: Option<MapPurpose>,
}

impl FakeKernel {
    fn new(left_order: u16, right_order: u16, service: ServiceKind) -> FakeKernel {
        FakeKernel {
            server: FakeServer::new(left_order, right_order),
            session: VchanSession::new(PEER, service),
            live_mappings: 0,
            steps: Vec::new(),
            fail_map: None,
        }
    }

    fn deliver(&mut self, event: SessionEvent<'_, FakeMemory>) {
        let mut queue: VecDeque<SessionAction<FakeMemory>> = self
            .session
            .handle(event, &ServiceCounters::default())
            .into();
        while let Some(action) = queue.pop_front() {
            let result = match action {
                SessionAction::BindInterdomain { peer, remote_port } => {
                    assert_eq!(peer, PEER);
                    self.steps.push(Step::Bind(remote_port));
                    Some(SessionEvent::PortBound(Ok(PORT)))
                }
                SessionAction::MapGrants {
                    peer,
                    refs,
                    writable,
                    purpose,
                } => {
                    assert_eq!(peer, PEER);
                    self.steps.push(Step::Map(purpose, refs.len(), writable));
                    let region = match purpose {
                        MapPurpose::SharedPage => Some(self.server.page.clone()),
                        MapPurpose::LeftRing => self.server.left_region(),
                        MapPurpose::RightRing => self.server.right_region(),
                    };
                    let result = match region {
                        Some(region) if self.fail_map != Some(purpose) => {
                            self.live_mappings += 1;
                            Ok(region)
                        }
                        _ => Err(-3),
                    };
                    Some(SessionEvent::Mapped { purpose, result })
                }
                SessionAction::Unmap { purpose, .. } => {
                    self.live_mappings -= 1;
                    self.steps.push(Step::Unmap(purpose));
                    None
                }
                SessionAction::Notify(port) => {
                    assert_eq!(port, PORT);
                    self.steps.push(Step::Notify);
                    None
                }
                SessionAction::ClosePort(port) => {
                    assert_eq!(port, PORT);
                    self.steps.push(Step::ClosePort);
                    None
                }
                SessionAction::ReportConnected(()) => {
                    self.steps.push(Step::Connected);
                    None
                }
                SessionAction::ReportClosed(reason) => {
                    self.steps.push(Step::Closed(reason));
                    None
                }
                SessionAction::ReadPeerNodes(_)
                | SessionAction::WriteNodes(_)
                | SessionAction::WriteNodesInTransaction(_)
                | SessionAction::RemoveNodes(_) => {
                    panic!("a vchan session neither reads nor writes nodes: {action:?}")
                }
            };
            if let Some(event) = result {
                queue.extend(self.session.handle(event, &ServiceCounters::default()));
            }
        }
    }

    fn connect(&mut self) {
        self.deliver(SessionEvent::PeerNodesRead(&nodes_read(b"77", b"12")));
    }

    /// The steps from the last close: asserts every unmap comes before anything else.
    fn close_steps(&self) -> &[Step] {
        let start = self
            .steps
            .iter()
            .rposition(|step| matches!(step, Step::Connected | Step::Map(..) | Step::Bind(_)))
            .map_or(0, |index| index + 1);
        let tail = &self.steps[start..];
        let first_other = tail
            .iter()
            .position(|step| !matches!(step, Step::Unmap(_)))
            .unwrap_or(tail.len());
        assert!(
            tail[first_other..]
                .iter()
                .all(|step| !matches!(step, Step::Unmap(_))),
            "an unmap came after another action: {tail:?}"
        );
        tail
    }

    fn closed_reason(&self) -> CloseReason {
        match self.steps.last() {
            Some(Step::Closed(reason)) => reason.clone(),
            other => panic!("session not closed: {other:?}"),
        }
    }
}

#[test]
fn connects_like_libxenvchan_and_echoes() {
    let mut kernel = FakeKernel::new(13, 12, ServiceKind::Echo);
    kernel.connect();
    assert_eq!(
        kernel.steps,
        vec![
            Step::Bind(RemotePort(12)),
            Step::Map(MapPurpose::SharedPage, 1, true),
            Step::Map(MapPurpose::LeftRing, 2, true),
            Step::Map(MapPurpose::RightRing, 1, false),
            Step::Notify,
            Step::Connected,
        ]
    );
    assert_eq!(kernel.server.cli_live(), abi::LIVE_CONNECTED);
    assert_eq!(kernel.live_mappings, 3);
    kernel.server.write(b"hello vchan");
    kernel.deliver(SessionEvent::EventChannel);
    assert_eq!(kernel.server.read(), b"hello vchan");
}

#[test]
fn in_page_rings_need_only_the_shared_page() {
    let mut kernel = FakeKernel::new(10, 11, ServiceKind::Command);
    kernel.server.write(b"help\n");
    kernel.connect();
    assert_eq!(kernel.live_mappings, 1);
    // Data written before the client connected is answered during the connection.
    assert_eq!(
        kernel.server.read(),
        b"help stats | checksum <length> | help\n"
    );
}

#[test]
fn server_exit_unmaps_everything_first() {
    let mut kernel = FakeKernel::new(12, 14, ServiceKind::Echo);
    kernel.connect();
    kernel.server.exit();
    kernel.deliver(SessionEvent::EventChannel);
    assert_eq!(
        kernel.close_steps(),
        &[
            Step::Unmap(MapPurpose::LeftRing),
            Step::Unmap(MapPurpose::RightRing),
            Step::Unmap(MapPurpose::SharedPage),
            Step::Notify,
            Step::ClosePort,
            Step::Closed(CloseReason::Protocol(VchanEnding::ServerClosed)),
        ]
    );
    assert_eq!(kernel.live_mappings, 0);
    assert_eq!(kernel.server.cli_live(), abi::LIVE_GONE);
    assert!(kernel.session.is_closed());
}

#[test]
fn domain_death_unmaps_without_signalling_the_dead() {
    let mut kernel = FakeKernel::new(10, 12, ServiceKind::Echo);
    kernel.connect();
    kernel.deliver(SessionEvent::DomainDied);
    assert_eq!(
        kernel.close_steps(),
        &[
            Step::Unmap(MapPurpose::RightRing),
            Step::Unmap(MapPurpose::SharedPage),
            Step::ClosePort,
            Step::Closed(CloseReason::DomainDied),
        ]
    );
    assert_eq!(kernel.live_mappings, 0);
}

#[test]
fn removed_nodes_and_closing_states_revoke() {
    for event in [
        SessionEvent::PeerNodesRemoved,
        SessionEvent::PeerState(b"5"),
        SessionEvent::PeerState(b"6"),
        SessionEvent::Shutdown,
    ] {
        let mut kernel = FakeKernel::new(11, 13, ServiceKind::Echo);
        kernel.connect();
        kernel.deliver(event);
        assert!(matches!(kernel.close_steps()[0], Step::Unmap(_)));
        assert_eq!(kernel.live_mappings, 0);
        assert!(kernel.session.is_closed());
    }
    let mut kernel = FakeKernel::new(11, 13, ServiceKind::Echo);
    kernel.connect();
    kernel.deliver(SessionEvent::PeerState(b"4"));
    assert!(!kernel.session.is_closed());
}

#[test]
fn revocation_while_mapping_releases_what_was_mapped() {
    // Map the left ring's pages, then have the nodes removed before the right ring is asked for.
    let mut session = VchanSession::new(PEER, ServiceKind::Echo);
    let server = FakeServer::new(12, 13);
    let counters = ServiceCounters::default();
    session.handle(
        SessionEvent::PeerNodesRead(&nodes_read(b"77", b"12")),
        &counters,
    );
    session.handle(SessionEvent::PortBound(Ok(PORT)), &counters);
    let actions = session.handle(
        SessionEvent::Mapped {
            purpose: MapPurpose::SharedPage,
            result: Ok(server.page.clone()),
        },
        &counters,
    );
    assert!(matches!(
        actions[0],
        SessionAction::MapGrants {
            purpose: MapPurpose::LeftRing,
            ..
        }
    ));
    session.handle(
        SessionEvent::Mapped {
            purpose: MapPurpose::LeftRing,
            result: Ok(server.left_region().unwrap()),
        },
        &counters,
    );
    let actions = session.handle(SessionEvent::PeerNodesRemoved, &counters);
    let kinds: Vec<String> = actions
        .iter()
        .map(|action| alloc::format!("{action:?}"))
        .collect();
    assert!(
        matches!(
            actions[0],
            SessionAction::Unmap {
                purpose: MapPurpose::LeftRing,
                ..
            }
        ),
        "{kinds:?}"
    );
    assert!(matches!(
        actions[1],
        SessionAction::Unmap {
            purpose: MapPurpose::SharedPage,
            ..
        }
    ));
    assert!(matches!(actions[2], SessionAction::ClosePort(PORT)));
    // The right ring's mapping, arriving late, is handed straight back.
    let late = session.handle(
        SessionEvent::Mapped {
            purpose: MapPurpose::RightRing,
            result: Ok(server.right_region().unwrap()),
        },
        &counters,
    );
    assert!(matches!(
        late[..],
        [SessionAction::Unmap {
            purpose: MapPurpose::RightRing,
            ..
        }]
    ));
}

#[test]
fn garbage_nodes_end_the_session_before_anything_is_mapped() {
    let cases: [(&[u8], &[u8], &str); 6] = [
        (
            b"ring",
            b"12",
            "peer domain 5: ring-ref: non-numeric value \"ring\"",
        ),
        (b"0", b"12", "peer domain 5: ring-ref is 0"),
        (
            b"-7",
            b"12",
            "peer domain 5: ring-ref: non-numeric value \"-7\"",
        ),
        (b"77", b"", "peer domain 5: event-channel: empty value"),
        (
            b"77",
            b"0",
            "peer domain 5: event-channel 0 is not a valid port",
        ),
        (
            b"77",
            b"131072",
            "peer domain 5: event-channel 131072 is not a valid port",
        ),
    ];
    for (ring_ref, event_channel, message) in cases {
        let mut kernel = FakeKernel::new(10, 11, ServiceKind::Echo);
        kernel.deliver(SessionEvent::PeerNodesRead(&nodes_read(
            ring_ref,
            event_channel,
        )));
        assert_eq!(kernel.steps.len(), 1, "{:?}", kernel.steps);
        assert!(kernel.closed_reason().to_string().starts_with(message));
        assert_eq!(kernel.live_mappings, 0);
    }
}

#[test]
fn an_out_of_range_order_unmaps_the_page_and_names_the_peer() {
    let mut kernel = FakeKernel::new(10, 25, ServiceKind::Echo);
    kernel.connect();
    assert_eq!(
        kernel.close_steps(),
        &[
            Step::Unmap(MapPurpose::SharedPage),
            Step::ClosePort,
            Step::Closed(kernel.closed_reason()),
        ]
    );
    assert_eq!(
        kernel.closed_reason().to_string(),
        "peer domain 5: vchan: right (server-to-client) ring has order 25, outside 10..=20; \
         session ended"
    );
    assert_eq!(kernel.live_mappings, 0);
    assert_eq!(kernel.server.cli_live(), abi::LIVE_NOT_YET_CONNECTED);
}

#[test]
fn hostile_ring_indices_end_a_connected_session() {
    let mut kernel = FakeKernel::new(10, 11, ServiceKind::Echo);
    kernel.connect();
    kernel
        .server
        .page
        .store_u32(abi::RIGHT_PROD_OFFSET, 0x8000_0000)
        .unwrap();
    kernel.deliver(SessionEvent::EventChannel);
    assert!(matches!(
        kernel.closed_reason(),
        CloseReason::Fault(PeerFault {
            peer: PEER,
            kind: FaultKind::Vchan(_),
            ..
        })
    ));
    assert_eq!(kernel.close_steps()[0], Step::Unmap(MapPurpose::SharedPage));
    assert_eq!(kernel.live_mappings, 0);
    assert_eq!(kernel.server.cli_live(), abi::LIVE_GONE);
}

#[test]
fn a_failed_ring_map_releases_the_page() {
    let mut kernel = FakeKernel::new(12, 13, ServiceKind::Echo);
    kernel.fail_map = Some(MapPurpose::RightRing);
    kernel.connect();
    assert_eq!(
        &kernel.close_steps()[..3],
        &[
            Step::Unmap(MapPurpose::LeftRing),
            Step::Unmap(MapPurpose::SharedPage),
            Step::ClosePort
        ]
    );
    assert_eq!(kernel.live_mappings, 0);
}

#[test]
fn a_failed_bind_is_a_fault_with_nothing_to_release() {
    let mut session: VchanSession<FakeMemory> = VchanSession::new(PEER, ServiceKind::Echo);
    let counters = ServiceCounters::default();
    session.handle(
        SessionEvent::PeerNodesRead(&nodes_read(b"77", b"4000")),
        &counters,
    );
    let actions = session.handle(SessionEvent::PortBound(Err(-22)), &counters);
    assert_eq!(actions.len(), 1);
    let SessionAction::ReportClosed(reason) = &actions[0] else {
        panic!("{actions:?}");
    };
    assert_eq!(
        reason.to_string(),
        "peer domain 5: binding its event channel 4000 failed with status -22; session ended"
    );
}

#[test]
fn a_ref_granted_twice_in_one_layout_is_refused_before_any_ring_is_mapped() {
    // The shared page's own ref (77) is also the left ring's first page; the right ring's two
    // pages repeat one ref too.
    for (grants, repeated) in [
        (&[77u32, 1001, 1002][..], 77u32),
        (&[1000, 1001, 1001][..], 1001),
    ] {
        let page = crate::peer::vchan::testing::ServerPage::new(13, 12, grants).into_memory();
        let mut session: VchanSession<FakeMemory> = VchanSession::new(PEER, ServiceKind::Echo);
        let counters = ServiceCounters::default();
        session.handle(
            SessionEvent::PeerNodesRead(&nodes_read(b"77", b"12")),
            &counters,
        );
        session.handle(SessionEvent::PortBound(Ok(PORT)), &counters);
        let actions = session.handle(
            SessionEvent::Mapped {
                purpose: MapPurpose::SharedPage,
                result: Ok(page),
            },
            &counters,
        );
        assert!(
            matches!(
                actions[..],
                [
                    SessionAction::Unmap {
                        purpose: MapPurpose::SharedPage,
                        ..
                    },
                    SessionAction::ClosePort(PORT),
                    SessionAction::ReportClosed(_)
                ]
            ),
            "{actions:?}"
        );
        let SessionAction::ReportClosed(reason) = &actions[2] else {
            unreachable!()
        };
        assert_eq!(
            reason.to_string(),
            alloc::format!(
                "peer domain 5: grant ref {repeated} appears twice in its layout; session ended"
            )
        );
    }
}
