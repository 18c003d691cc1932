//! One vchan peer session as a state machine: events in, actions out, regions owned by the state.
//!
//! The session follows `libxenvchan_client_init` (see [`crate::abi::vchan`]): read `ring-ref` and
//! `event-channel`, bind the event channel, map the shared page, decode it once, map the rings'
//! pages, then announce the client and serve. It owns every mapped region (type `R`, the kernel's
//! mapping handle) inside its state, so the only way a region leaves a session is an
//! [`PeerAction::Unmap`]. On close, whatever the cause, the unmaps come first, then the
//! signal to the server, the port's close and the report.

use super::channel::{ChannelRegions, ServerLiveness, VchanChannel};
use super::layout::{RingPlacement, VchanLayout};
use super::protocol::{VchanEnding, VchanProtocol};
use super::pump::StreamPump;
use super::service::{Service, ServiceKind};
use super::session_fault::{FaultKind, MapPurpose, PeerFault};
use crate::ids::{DomId, EvtchnPort, GrantRef};
use crate::peer::action::{self, node_value, PeerAction, PeerEvent};
use crate::peer::counters::ServiceCounters;
use crate::peer::protocol::{NoDevice, PeerSession};
use crate::peer::value::{parse_u32, RemotePort};
use crate::peer::xenbus_state::XenbusState;
use crate::shared_memory::SharedMemory;
use alloc::vec;
use alloc::vec::Vec;

/// The server's nodes a session starts from (read by discovery, delivered as `PeerNodesRead`).
pub const RING_REF: &str = "ring-ref";
pub const EVENT_CHANNEL: &str = "event-channel";

/// Something that happened that concerns this session.
pub type SessionEvent<'a, R> = PeerEvent<'a, VchanProtocol, R>;
/// What the caller must do, in order.
pub type SessionAction<R> = PeerAction<VchanProtocol, R>;
/// Why a session ended.
pub type CloseReason = action::CloseReason<VchanProtocol>;

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

    /// Pages this session holds mapped.
    pub fn mapped_pages(&self) -> u32 {
        let bytes = match &self.state {
            SessionState::MappingRings { page, left, .. } => {
                page.size() + left.as_ref().map_or(0, SharedMemory::size)
            }
            SessionState::Connected { channel, .. } => channel.mapped_bytes(),
            _ => 0,
        };
        u32::try_from(bytes / crate::addr::PAGE_SIZE).unwrap_or(u32::MAX)
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
            device: NoDevice,
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
            (state @ SessionState::Closed(_), event) => (state, action::leftovers(event)),
            (state, PeerEvent::PeerNodesRemoved | PeerEvent::OwnNodesRemoved) => {
                self.close(state, CloseReason::PeerNodesRemoved)
            }
            (state, PeerEvent::DomainDied) => self.close(state, CloseReason::DomainDied),
            (state, PeerEvent::Shutdown) => self.close(state, CloseReason::Shutdown),
            (state, PeerEvent::OwnNodesNotWritten(refusal)) => {
                self.close(state, CloseReason::OwnNodesNotWritten(refusal))
            }
            (state, PeerEvent::PeerState(value)) => match XenbusState::parse(value) {
                Err(fault) => {
                    let reason = self.fault(FaultKind::BadState(fault));
                    self.close(state, reason)
                }
                Ok(peer_state) if peer_state.is_closing() => {
                    self.close(state, CloseReason::PeerStateClosing(peer_state))
                }
                Ok(_) => (state, Vec::new()),
            },
            (SessionState::Discovered, PeerEvent::PeerNodesRead(read)) => {
                match self.decode_nodes(read) {
                    Ok((ring_ref, remote_port)) => (
                        SessionState::Binding {
                            ring_ref,
                            remote_port,
                        },
                        vec![PeerAction::BindInterdomain {
                            peer: self.peer,
                            remote_port,
                        }],
                    ),
                    Err(kind) => self.close(SessionState::Discovered, self.fault(kind)),
                }
            }
            (
                SessionState::Binding {
                    ring_ref,
                    remote_port,
                },
                PeerEvent::PortBound(result),
            ) => match result {
                Ok(port) => (
                    SessionState::MappingPage { ring_ref, port },
                    vec![PeerAction::MapGrants {
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
                SessionState::MappingPage { ring_ref, port },
                PeerEvent::Mapped {
                    purpose: MapPurpose::SharedPage,
                    result,
                },
            ) => match result {
                Ok(page) => match VchanLayout::decode(&page) {
                    // A ref granted twice would be mapped twice, and our writes through one
                    // mapping would garble what the other holds: refused before mapping.
                    Ok(layout) => match Self::repeated_ref(ring_ref, &layout) {
                        Some(repeated) => self.fail(
                            vec![(MapPurpose::SharedPage, page)],
                            port,
                            FaultKind::RefTwice(repeated),
                        ),
                        None => self.map_next_ring(port, layout, page, None, counters),
                    },
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
                PeerEvent::Mapped { purpose, result },
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
                        (state, vec![PeerAction::Unmap { purpose, region }])
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
                PeerEvent::EventChannel,
            ) => {
                let outcome = match channel.server_liveness() {
                    Ok(ServerLiveness::Gone) => {
                        Err(CloseReason::Protocol(VchanEnding::ServerClosed))
                    }
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
                    Ok(pumped) if pumped.notify_peer => (state, vec![PeerAction::Notify(port)]),
                    Ok(_) => (state, Vec::new()),
                    Err(reason) => self.close(state, reason),
                }
            }
            // Anything else is out of order: results are given back, other events ignored.
            (state, event) => (state, action::leftovers(event)),
        }
    }

    fn decode_nodes(
        &self,
        read: &crate::peer::action::PeerNodes<'_>,
    ) -> Result<(GrantRef, RemotePort), FaultKind> {
        let ring_ref = node_value(read, RING_REF).ok_or(FaultKind::Missing(RING_REF))?;
        let event_channel =
            node_value(read, EVENT_CHANNEL).ok_or(FaultKind::Missing(EVENT_CHANNEL))?;
        let ring_ref = parse_u32(ring_ref).map_err(FaultKind::BadRingRef)?;
        if ring_ref == 0 {
            return Err(FaultKind::ZeroRingRef);
        }
        let port = parse_u32(event_channel).map_err(FaultKind::BadEventChannel)?;
        let port = RemotePort::new(port).ok_or(FaultKind::EventChannelOutOfRange(port))?;
        Ok((GrantRef::new(ring_ref), port))
    }

    /// A ref that appears twice among the shared page's and both rings' refs, if any.
    fn repeated_ref(ring_ref: GrantRef, layout: &VchanLayout) -> Option<GrantRef> {
        // A sorted set (litemap's, as the framework's maps): at most a few hundred refs.
        let mut seen = litemap::LiteMap::new_vec();
        seen.insert(ring_ref, ());
        layout
            .left
            .grant_refs()
            .iter()
            .chain(layout.right.grant_refs())
            .find(|grant| seen.insert(**grant, ()).is_some())
            .copied()
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
        let action = PeerAction::MapGrants {
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
        let mut actions = vec![PeerAction::Notify(port), PeerAction::ReportConnected(())];
        // Data the server wrote before we connected is served at once.
        let (next, more) = self.step(state, PeerEvent::EventChannel, counters);
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
            .map(|(purpose, region)| PeerAction::Unmap { purpose, region })
            .collect();
        if let Some(port) = holdings.port {
            if holdings.tell_server {
                actions.push(PeerAction::Notify(port));
            }
            actions.push(PeerAction::ClosePort(port));
        }
        actions.push(PeerAction::ReportClosed(reason.clone()));
        (SessionState::Closed(reason), actions)
    }
}

impl<R: SharedMemory> PeerSession for VchanSession<R> {
    type Protocol = VchanProtocol;
    type Region = R;

    fn peer(&self) -> DomId {
        self.peer
    }

    fn device(&self) -> NoDevice {
        NoDevice
    }

    fn port(&self) -> Option<EvtchnPort> {
        VchanSession::port(self)
    }

    fn is_closed(&self) -> bool {
        VchanSession::is_closed(self)
    }

    fn mapped_pages(&self) -> u32 {
        VchanSession::mapped_pages(self)
    }

    fn handle(
        &mut self,
        event: SessionEvent<'_, R>,
        counters: &ServiceCounters,
    ) -> Vec<SessionAction<R>> {
        VchanSession::handle(self, event, counters)
    }
}

#[cfg(test)]
mod tests;
