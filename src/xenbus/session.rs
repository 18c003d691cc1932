//! One vchan peer session as a state machine: events in, actions out, regions owned by the state.
//!
//! The session follows `libxenvchan_client_init` (see [`crate::abi::vchan`]): read `ring-ref` and
//! `event-channel`, bind the event channel, map the shared page, decode it once, map the rings'
//! pages, then announce the client and serve. It owns every mapped region (type `R`, the kernel's
//! mapping handle) inside its state, so the only way a region leaves a session is an
//! [`SessionAction::Unmap`]. On close, whatever the cause, the unmaps come first, then the
//! signal to the server, the port's close and the report.

use super::fault::{FaultKind, MapPurpose, PeerFault};
use super::state::XenbusState;
use super::value::{parse_u32, RemotePort};
use crate::ids::{DomId, EvtchnPort, GrantRef};
use crate::shared_memory::SharedMemory;
use crate::vchan::channel::{ChannelRegions, ServerLiveness, VchanChannel};
use crate::vchan::layout::{RingPlacement, VchanLayout};
use crate::vchan::pump::StreamPump;
use crate::vchan::service::{Service, ServiceCounters, ServiceKind};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Something that happened that concerns this session.
#[derive(Debug)]
pub enum SessionEvent<'a, R> {
    /// The `ring-ref` and `event-channel` nodes were read (raw, untrusted bytes).
    NodesRead {
        ring_ref: &'a [u8],
        event_channel: &'a [u8],
    },
    /// The answer to [`SessionAction::BindInterdomain`]: our local port, or a negative errno.
    PortBound(Result<EvtchnPort, i32>),
    /// The answer to [`SessionAction::MapGrants`]: the mapped region, or a negative status.
    Mapped {
        purpose: MapPurpose,
        result: Result<R, i32>,
    },
    /// Our event channel was signalled.
    EventChannel,
    /// A peer's xenbus `state` node changed (for protocols that have one).
    PeerState(&'a [u8]),
    /// The vchan's xenstore nodes were removed.
    NodesRemoved,
    /// The peer domain died (`@releaseDomain`, then the domain was found gone).
    DomainDied,
    /// grantsvc is shutting down.
    Shutdown,
}

/// What the caller must do, in order.
#[derive(Debug)]
pub enum SessionAction<R> {
    /// Bind an interdomain event channel to the peer's port; answer with `PortBound`.
    BindInterdomain {
        peer: DomId,
        remote_port: RemotePort,
    },
    /// Map these grant refs of the peer, contiguously; answer with `Mapped`.
    MapGrants {
        peer: DomId,
        refs: Vec<GrantRef>,
        writable: bool,
        purpose: MapPurpose,
    },
    /// Unmap this region (`pmap_remove` of its range).
    Unmap { purpose: MapPurpose, region: R },
    /// Signal the event channel.
    Notify(EvtchnPort),
    /// Close the event channel.
    ClosePort(EvtchnPort),
    /// The session is connected and serving.
    ReportConnected,
    /// The session ended; it will take no more events.
    ReportClosed(CloseReason),
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The server cleared `srv_live` (it closed, or its process died and gntalloc cleared it).
    ServerClosed,
    /// The peer's `state` node went to Closing or Closed.
    PeerStateClosing(XenbusState),
    /// The peer removed the vchan's xenstore nodes.
    NodesRemoved,
    /// The peer domain died.
    DomainDied,
    /// grantsvc shut down.
    Shutdown,
    /// The peer broke the protocol.
    Fault(PeerFault),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ServerClosed => formatter.write_str("server closed the vchan"),
            CloseReason::PeerStateClosing(state) => write!(formatter, "peer state {state}"),
            CloseReason::NodesRemoved => formatter.write_str("xenstore nodes removed"),
            CloseReason::DomainDied => formatter.write_str("peer domain died"),
            CloseReason::Shutdown => formatter.write_str("grantsvc shutting down"),
            CloseReason::Fault(fault) => write!(formatter, "{fault}"),
        }
    }
}

/// The session's state, carrying what each step holds.
#[derive(Debug)]
pub enum SessionState<R> {
    /// Path known, waiting for its nodes to be read.
    Discovered,
    /// Waiting for the event channel to be bound.
    Binding {
        ring_ref: GrantRef,
        remote_port: RemotePort,
    },
    /// Waiting for the shared page to be mapped.
    MappingPage {
        ring_ref: GrantRef,
        port: EvtchnPort,
    },
    /// Waiting for the rings' pages to be mapped (left first, then right).
    MappingRings {
        port: EvtchnPort,
        layout: VchanLayout,
        page: R,
        left: Option<R>,
    },
    /// Serving.
    Connected {
        port: EvtchnPort,
        channel: VchanChannel<R>,
        pump: StreamPump,
        service: Service,
    },
    /// Ended; holds nothing.
    Closed(CloseReason),
}

/// A vchan session with one server.
#[derive(Debug)]
pub struct VchanSession<R> {
    peer: DomId,
    service: ServiceKind,
    state: SessionState<R>,
}

/// The regions and port a session holds, gathered for tear-down.
struct Holdings<R> {
    regions: Vec<(MapPurpose, R)>,
    port: Option<EvtchnPort>,
    /// The server may still be listening: set `cli_live = 0` (done) and signal it.
    tell_server: bool,
}

impl<R: SharedMemory> VchanSession<R> {
    /// A session with the server in domain `peer` for a vchan carrying `service`.
    pub fn new(peer: DomId, service: ServiceKind) -> Self {
        VchanSession {
            peer,
            service,
            state: SessionState::Discovered,
        }
    }

    /// The peer domain.
    pub fn peer(&self) -> DomId {
        self.peer
    }

    /// The current state.
    pub fn state(&self) -> &SessionState<R> {
        &self.state
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, SessionState::Closed(_))
    }

    /// Our local event-channel port, once bound.
    pub fn port(&self) -> Option<EvtchnPort> {
        match &self.state {
            SessionState::MappingPage { port, .. }
            | SessionState::MappingRings { port, .. }
            | SessionState::Connected { port, .. } => Some(*port),
            _ => None,
        }
    }

    fn fault(&self, kind: FaultKind) -> CloseReason {
        CloseReason::Fault(PeerFault {
            peer: self.peer,
            kind,
        })
    }

    /// Handles one event; returns the actions to carry out, in order.
    pub fn handle(
        &mut self,
        event: SessionEvent<'_, R>,
        counters: &ServiceCounters,
    ) -> Vec<SessionAction<R>> {
        let state = core::mem::replace(&mut self.state, SessionState::Discovered);
        let (state, actions) = self.step(state, event, counters);
        self.state = state;
        actions
    }

    fn step(
        &self,
        state: SessionState<R>,
        event: SessionEvent<'_, R>,
        counters: &ServiceCounters,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        match (state, event) {
            // Revocation and shutdown end the session in any live state.
            (state @ SessionState::Closed(_), event) => (state, Self::leftovers(event)),
            (state, SessionEvent::NodesRemoved) => self.close(state, CloseReason::NodesRemoved),
            (state, SessionEvent::DomainDied) => self.close(state, CloseReason::DomainDied),
            (state, SessionEvent::Shutdown) => self.close(state, CloseReason::Shutdown),
            (state, SessionEvent::PeerState(value)) => match XenbusState::parse(value) {
                Err(fault) => {
                    let reason = self.fault(FaultKind::BadState(fault));
                    self.close(state, reason)
                }
                Ok(peer_state) if peer_state.is_closing() => {
                    self.close(state, CloseReason::PeerStateClosing(peer_state))
                }
                Ok(_) => (state, Vec::new()),
            },
            (
                SessionState::Discovered,
                SessionEvent::NodesRead {
                    ring_ref,
                    event_channel,
                },
            ) => match self.decode_nodes(ring_ref, event_channel) {
                Ok((ring_ref, remote_port)) => (
                    SessionState::Binding {
                        ring_ref,
                        remote_port,
                    },
                    vec![SessionAction::BindInterdomain {
                        peer: self.peer,
                        remote_port,
                    }],
                ),
                Err(kind) => self.close(SessionState::Discovered, self.fault(kind)),
            },
            (
                SessionState::Binding {
                    ring_ref,
                    remote_port,
                },
                SessionEvent::PortBound(result),
            ) => match result {
                Ok(port) => (
                    SessionState::MappingPage { ring_ref, port },
                    vec![SessionAction::MapGrants {
                        peer: self.peer,
                        refs: vec![ring_ref],
                        writable: true,
                        purpose: MapPurpose::SharedPage,
                    }],
                ),
                Err(status) => {
                    let reason = self.fault(FaultKind::BindFailed {
                        remote_port,
                        status,
                    });
                    self.close(SessionState::Discovered, reason)
                }
            },
            (
                SessionState::MappingPage { port, .. },
                SessionEvent::Mapped {
                    purpose: MapPurpose::SharedPage,
                    result,
                },
            ) => match result {
                Ok(page) => match VchanLayout::decode(&page) {
                    Ok(layout) => self.map_next_ring(port, layout, page, None, counters),
                    Err(fault) => self.fail(
                        vec![(MapPurpose::SharedPage, page)],
                        port,
                        FaultKind::Vchan(fault),
                    ),
                },
                Err(status) => self.fail(
                    Vec::new(),
                    port,
                    FaultKind::MapFailed {
                        purpose: MapPurpose::SharedPage,
                        status,
                    },
                ),
            },
            (
                SessionState::MappingRings {
                    port,
                    layout,
                    page,
                    left,
                },
                SessionEvent::Mapped { purpose, result },
            ) => {
                let expected = Self::next_ring(&layout, &left);
                match (result, expected) {
                    (Ok(region), Some(wanted)) if wanted == purpose => {
                        let (left, right) = match purpose {
                            MapPurpose::LeftRing => (Some(region), None),
                            _ => (left, Some(region)),
                        };
                        match right {
                            Some(right) => {
                                self.connect(port, &layout, page, left, Some(right), counters)
                            }
                            None => self.map_next_ring(port, layout, page, left, counters),
                        }
                    }
                    (Ok(region), _) => {
                        // Not what we asked for: a caller bug. Give it back and carry on waiting.
                        let state = SessionState::MappingRings {
                            port,
                            layout,
                            page,
                            left,
                        };
                        (state, vec![SessionAction::Unmap { purpose, region }])
                    }
                    (Err(status), _) => {
                        let state = SessionState::MappingRings {
                            port,
                            layout,
                            page,
                            left,
                        };
                        let reason = self.fault(FaultKind::MapFailed { purpose, status });
                        self.close(state, reason)
                    }
                }
            }
            (
                SessionState::Connected {
                    port,
                    mut channel,
                    mut pump,
                    mut service,
                },
                SessionEvent::EventChannel,
            ) => {
                let outcome = match channel.server_liveness() {
                    Ok(ServerLiveness::Gone) => Err(CloseReason::ServerClosed),
                    Ok(ServerLiveness::Connected) => pump
                        .run(&mut channel, &mut service, counters)
                        .map_err(|fault| self.fault(FaultKind::Vchan(fault))),
                    Err(fault) => Err(self.fault(FaultKind::Vchan(fault))),
                };
                let state = SessionState::Connected {
                    port,
                    channel,
                    pump,
                    service,
                };
                match outcome {
                    Ok(pumped) if pumped.notify_peer => (state, vec![SessionAction::Notify(port)]),
                    Ok(_) => (state, Vec::new()),
                    Err(reason) => self.close(state, reason),
                }
            }
            // Anything else is out of order: results are given back, other events ignored.
            (state, event) => (state, Self::leftovers(event)),
        }
    }

    fn decode_nodes(
        &self,
        ring_ref: &[u8],
        event_channel: &[u8],
    ) -> Result<(GrantRef, RemotePort), FaultKind> {
        let ring_ref = parse_u32(ring_ref).map_err(FaultKind::BadRingRef)?;
        if ring_ref == 0 {
            return Err(FaultKind::ZeroRingRef);
        }
        let port = parse_u32(event_channel).map_err(FaultKind::BadEventChannel)?;
        let port = RemotePort::new(port).ok_or(FaultKind::EventChannelOutOfRange(port))?;
        Ok((GrantRef::new(ring_ref), port))
    }

    /// The ring mapping still missing, if any (left first).
    fn next_ring(layout: &VchanLayout, left: &Option<R>) -> Option<MapPurpose> {
        let granted =
            |placement: &RingPlacement| matches!(placement, RingPlacement::Granted { .. });
        if granted(&layout.left.placement) && left.is_none() {
            Some(MapPurpose::LeftRing)
        } else if granted(&layout.right.placement) {
            Some(MapPurpose::RightRing)
        } else {
            None
        }
    }

    fn map_next_ring(
        &self,
        port: EvtchnPort,
        layout: VchanLayout,
        page: R,
        left: Option<R>,
        counters: &ServiceCounters,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        let (refs, writable, purpose) = match Self::next_ring(&layout, &left) {
            Some(MapPurpose::LeftRing) => (
                layout.left.grant_refs().to_vec(),
                true,
                MapPurpose::LeftRing,
            ),
            // grantsvc only reads the right ring; map it read-only, as `init_gnt_cli` does.
            Some(_) => (
                layout.right.grant_refs().to_vec(),
                false,
                MapPurpose::RightRing,
            ),
            None => return self.connect(port, &layout, page, left, None, counters),
        };
        let action = SessionAction::MapGrants {
            peer: self.peer,
            refs,
            writable,
            purpose,
        };
        let state = SessionState::MappingRings {
            port,
            layout,
            page,
            left,
        };
        (state, vec![action])
    }

    fn connect(
        &self,
        port: EvtchnPort,
        layout: &VchanLayout,
        page: R,
        left: Option<R>,
        right: Option<R>,
        counters: &ServiceCounters,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        let regions = ChannelRegions { page, left, right };
        let channel = match VchanChannel::new(layout, regions) {
            Ok(channel) => channel,
            Err((fault, regions)) => {
                return self.fail(Self::purposed(regions), port, FaultKind::Vchan(fault));
            }
        };
        let mut state = SessionState::Connected {
            port,
            channel,
            pump: StreamPump::default(),
            service: Service::new(self.service),
        };
        if let SessionState::Connected { channel, .. } = &state {
            if let Err(fault) = channel.connect() {
                return self.close(state, self.fault(FaultKind::Vchan(fault)));
            }
        }
        let mut actions = vec![SessionAction::Notify(port), SessionAction::ReportConnected];
        // Data the server wrote before we connected is served at once.
        let (next, more) = self.step(state, SessionEvent::EventChannel, counters);
        state = next;
        actions.extend(more);
        (state, actions)
    }

    fn purposed(regions: ChannelRegions<R>) -> Vec<(MapPurpose, R)> {
        let mut list = Vec::with_capacity(3);
        if let Some(left) = regions.left {
            list.push((MapPurpose::LeftRing, left));
        }
        if let Some(right) = regions.right {
            list.push((MapPurpose::RightRing, right));
        }
        list.push((MapPurpose::SharedPage, regions.page));
        list
    }

    /// Ends the session from `state` for `reason`.
    fn close(
        &self,
        state: SessionState<R>,
        reason: CloseReason,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        // Nobody is left to tell when the domain died; otherwise mirror `libxenvchan_close`.
        let tell_server = !matches!(reason, CloseReason::DomainDied);
        let holdings = match state {
            SessionState::Discovered | SessionState::Binding { .. } | SessionState::Closed(_) => {
                Holdings {
                    regions: Vec::new(),
                    port: None,
                    tell_server: false,
                }
            }
            SessionState::MappingPage { port, .. } => Holdings {
                regions: Vec::new(),
                port: Some(port),
                tell_server: false,
            },
            SessionState::MappingRings {
                port, page, left, ..
            } => {
                let mut regions = Vec::new();
                if let Some(left) = left {
                    regions.push((MapPurpose::LeftRing, left));
                }
                regions.push((MapPurpose::SharedPage, page));
                Holdings {
                    regions,
                    port: Some(port),
                    tell_server: false,
                }
            }
            SessionState::Connected {
                port,
                channel,
                pump,
                ..
            } => {
                // What each side moved, so that a lab echo that differs can be placed: in the
                // rings (our counts agree with the sender's), in grantsvc, or beyond the server.
                log::info!(
                    "vchan: session with domain {} ending: {}; {}",
                    self.peer,
                    pump.totals(),
                    channel.indices()
                );
                Holdings {
                    regions: Self::purposed(channel.close(tell_server)),
                    port: Some(port),
                    tell_server,
                }
            }
        };
        self.finish(holdings, reason)
    }

    /// Ends a session that is not yet connected for a peer fault, releasing what it holds.
    fn fail(
        &self,
        regions: Vec<(MapPurpose, R)>,
        port: EvtchnPort,
        kind: FaultKind,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        let holdings = Holdings {
            regions,
            port: Some(port),
            tell_server: false,
        };
        self.finish(holdings, self.fault(kind))
    }

    /// Emits the tear-down actions: every unmap first, then signal, close and report.
    fn finish(
        &self,
        holdings: Holdings<R>,
        reason: CloseReason,
    ) -> (SessionState<R>, Vec<SessionAction<R>>) {
        let mut actions: Vec<SessionAction<R>> = holdings
            .regions
            .into_iter()
            .map(|(purpose, region)| SessionAction::Unmap { purpose, region })
            .collect();
        if let Some(port) = holdings.port {
            if holdings.tell_server {
                actions.push(SessionAction::Notify(port));
            }
            actions.push(SessionAction::ClosePort(port));
        }
        actions.push(SessionAction::ReportClosed(reason.clone()));
        (SessionState::Closed(reason), actions)
    }

    /// Resources carried by an event the session can no longer use, turned into their release.
    pub fn leftovers(event: SessionEvent<'_, R>) -> Vec<SessionAction<R>> {
        match event {
            SessionEvent::Mapped {
                purpose,
                result: Ok(region),
            } => vec![SessionAction::Unmap { purpose, region }],
            SessionEvent::PortBound(Ok(port)) => vec![SessionAction::ClosePort(port)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
