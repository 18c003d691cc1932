//! One grant-share device as grantsvc serves it (the backend side): events in, actions out, unmap first on every close.
//!
//! The session owns its mapped region (type `R`, the kernel's mapping handle) inside its state,
//! so the only way the region leaves is a [`ShareAction::Unmap`], and on close, whatever the
//! cause, that unmap comes before the port's close and before `state` = Closed is written: the
//! frontend is never told "closed" while grantsvc still maps its pages.
//!
//! Nor is it told "connected" before its results are there: `state` = Connected is written only
//! once xenstored acknowledged every result node ([`ShareState::Announcing`]). A write refused
//! (past xenstored's node quota, say) ends the session with an `error` node naming the quota;
//! since that node needs room under the same quota, the session first removes the result nodes
//! it wrote, and it writes `mapped-pages` already with `state` = InitWait so that there is
//! always one to remove.

use super::fault::{ShareFault, ShareFaultKind};
use super::nodes::{answer, backend, FrontendNodes, RawFrontendNodes, FRONTEND_NODES};
use super::pattern::{self, Digest, ANSWER_LENGTH};
use super::protocol::{ShareEnding, ShareMapping, ShareProtocol};
use crate::addr::PAGE_SIZE;
use crate::ids::{DomId, EvtchnPort};
use crate::peer::action::{self, PeerAction, PeerEvent};
use crate::peer::counters::ServiceCounters;
use crate::peer::device_id::DeviceId;
use crate::peer::protocol::PeerSession;
use crate::peer::xenbus_state::XenbusState;
use crate::shared_memory::SharedMemory;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// Something that happened that concerns this device.
pub type ShareEvent<'a, R> = PeerEvent<'a, ShareProtocol, R>;
/// What the caller must do, in order.
pub type ShareAction<R> = PeerAction<ShareProtocol, R>;
/// Why a session ended.
pub type CloseReason = action::CloseReason<ShareProtocol>;

/// The nodes the session writes besides `state` (and `error`): its results.
const RESULT_NODES: [&str; 4] = [
    backend::MAPPED_PAGES,
    backend::PATTERN,
    backend::DIGEST,
    backend::ANSWER,
];

/// What grantsvc found in the pages and did with them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub pages: u32,
    /// The first byte that differs from the pattern: (page, byte).
    pub mismatch: Option<(u32, u32)>,
    /// CRC-32 of the pages as read.
    pub digest: u32,
    /// True when the answer was written into the pages.
    pub answered: bool,
}

impl Verification {
    /// The `pattern` node's value.
    pub fn pattern_value(&self) -> String {
        match self.mismatch {
            None => "ok".to_string(),
            Some((page, byte)) => format!("mismatch at page {page} byte {byte}"),
        }
    }
}

/// The session's state, carrying what each step holds.
#[derive(Debug)]
pub enum ShareState<R> {
    /// `state` = InitWait written; waiting for the frontend to reach Initialised.
    WaitingForFrontend,
    /// Waiting for the frontend's nodes.
    ReadingNodes,
    /// Waiting for the refs to be mapped.
    Mapping { nodes: FrontendNodes },
    /// Waiting for the event channel to be bound; the region is mapped.
    Binding { nodes: FrontendNodes, region: R },
    /// Results written, waiting for xenstored to acknowledge them before `state` = Connected.
    Announcing {
        port: EvtchnPort,
        region: R,
        verification: Verification,
    },
    /// Connected: results written, the region stays mapped until the frontend lets go.
    Connected {
        port: EvtchnPort,
        region: R,
        verification: Verification,
    },
    /// Ended; holds nothing.
    Closed(CloseReason),
}

/// One grant-share device of one frontend.
#[derive(Debug)]
pub struct ShareSession<R> {
    peer: DomId,
    device: DeviceId,
    state: ShareState<R>,
}

impl<R: SharedMemory> ShareSession<R> {
    /// A session for `device` of frontend `peer`, and its first actions (`state` = InitWait).
    pub fn new(peer: DomId, device: DeviceId) -> (Self, Vec<ShareAction<R>>) {
        let session = ShareSession {
            peer,
            device,
            state: ShareState::WaitingForFrontend,
        };
        // `mapped-pages` first: a node of the session's own to remove should xenstored's node
        // quota later refuse a result, to make room for the `error` node.
        let actions = vec![PeerAction::WriteNodes(vec![
            (backend::MAPPED_PAGES, "0".to_string()),
            (backend::STATE, XenbusState::InitWait.as_str().to_string()),
        ])];
        (session, actions)
    }

    pub fn peer(&self) -> DomId {
        self.peer
    }

    pub fn device(&self) -> DeviceId {
        self.device
    }

    pub fn state(&self) -> &ShareState<R> {
        &self.state
    }

    /// True once the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, ShareState::Closed(_))
    }

    /// Our local port, once bound.
    pub fn port(&self) -> Option<EvtchnPort> {
        match &self.state {
            ShareState::Announcing { port, .. } | ShareState::Connected { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// Pages this session holds mapped.
    pub fn mapped_pages(&self) -> u32 {
        match &self.state {
            ShareState::Binding { nodes, .. } => nodes.refs.len() as u32,
            ShareState::Announcing { verification, .. }
            | ShareState::Connected { verification, .. } => verification.pages,
            _ => 0,
        }
    }

    fn fault(&self, kind: ShareFaultKind) -> CloseReason {
        CloseReason::Fault(ShareFault {
            peer: self.peer,
            device: self.device,
            kind,
        })
    }

    fn too_small(size: usize, pages: u32) -> CloseReason {
        CloseReason::Protocol(ShareEnding::RegionTooSmall { size, pages })
    }

    /// Handles one event; returns the actions to carry out, in order.
    pub fn handle(&mut self, event: ShareEvent<'_, R>) -> Vec<ShareAction<R>> {
        let state = core::mem::replace(&mut self.state, ShareState::WaitingForFrontend);
        let (state, actions) = self.step(state, event);
        self.state = state;
        actions
    }

    fn step(
        &self,
        state: ShareState<R>,
        event: ShareEvent<'_, R>,
    ) -> (ShareState<R>, Vec<ShareAction<R>>) {
        match (state, event) {
            (state @ ShareState::Closed(_), event) => (state, action::leftovers(event)),
            (state, PeerEvent::PeerNodesRemoved) => {
                self.close(state, CloseReason::PeerNodesRemoved)
            }
            (state, PeerEvent::OwnNodesRemoved) => self.close(state, CloseReason::OwnNodesRemoved),
            (state, PeerEvent::DomainDied) => self.close(state, CloseReason::DomainDied),
            (state, PeerEvent::Shutdown) => self.close(state, CloseReason::Shutdown),
            (state, PeerEvent::OwnNodesNotWritten(refusal)) => {
                self.close(state, CloseReason::OwnNodesNotWritten(refusal))
            }
            (
                ShareState::Announcing {
                    port,
                    region,
                    verification,
                },
                PeerEvent::OwnNodesWritten,
            ) => {
                let actions = vec![
                    PeerAction::WriteNodes(vec![(
                        backend::STATE,
                        XenbusState::Connected.as_str().to_string(),
                    )]),
                    PeerAction::Notify(port),
                    PeerAction::ReportConnected(verification.clone()),
                ];
                let state = ShareState::Connected {
                    port,
                    region,
                    verification,
                };
                (state, actions)
            }
            (state, PeerEvent::PeerState(value)) => match XenbusState::parse(value) {
                Err(fault) => {
                    let reason = self.fault(ShareFaultKind::BadState(fault));
                    self.close(state, reason)
                }
                Ok(peer_state) if peer_state.is_closing() => {
                    self.close(state, CloseReason::PeerStateClosing(peer_state))
                }
                Ok(XenbusState::Initialised | XenbusState::Connected)
                    if matches!(state, ShareState::WaitingForFrontend) =>
                {
                    (
                        ShareState::ReadingNodes,
                        vec![PeerAction::ReadPeerNodes(&FRONTEND_NODES)],
                    )
                }
                Ok(_) => (state, Vec::new()),
            },
            (ShareState::ReadingNodes, PeerEvent::PeerNodesRead(read)) => {
                match FrontendNodes::decode(&RawFrontendNodes::from_peer_nodes(read)) {
                    Ok(nodes) => {
                        let action = PeerAction::MapGrants {
                            peer: self.peer,
                            refs: nodes.refs.clone(),
                            writable: nodes.writable,
                            purpose: ShareMapping::Pages,
                        };
                        (ShareState::Mapping { nodes }, vec![action])
                    }
                    Err(kind) => self.close(ShareState::ReadingNodes, self.fault(kind)),
                }
            }
            (ShareState::Mapping { nodes }, PeerEvent::Mapped { result, .. }) => match result {
                Ok(region) => {
                    let action = PeerAction::BindInterdomain {
                        peer: self.peer,
                        remote_port: nodes.event_channel,
                    };
                    (ShareState::Binding { nodes, region }, vec![action])
                }
                Err(status) => {
                    let reason = self.fault(ShareFaultKind::MapFailed { status });
                    self.close(ShareState::ReadingNodes, reason)
                }
            },
            (ShareState::Binding { nodes, region }, PeerEvent::PortBound(result)) => match result {
                Ok(port) => self.connect(nodes, region, port),
                Err(status) => {
                    let reason = self.fault(ShareFaultKind::BindFailed {
                        remote_port: nodes.event_channel,
                        status,
                    });
                    self.close(ShareState::Binding { nodes, region }, reason)
                }
            },
            // Anything else is out of order: results are given back, other events ignored.
            (state, event) => (state, action::leftovers(event)),
        }
    }

    /// Checks the pages, answers, and writes the results (`state` = Connected follows once
    /// xenstored acknowledged them).
    fn connect(
        &self,
        nodes: FrontendNodes,
        region: R,
        port: EvtchnPort,
    ) -> (ShareState<R>, Vec<ShareAction<R>>) {
        let pages = nodes.refs.len() as u32;
        let verification = match Self::verify(&region, &nodes) {
            Ok(verification) => verification,
            Err(size) => {
                let reason = Self::too_small(size, pages);
                let state = ShareState::Connected {
                    port,
                    region,
                    verification: Verification {
                        pages,
                        mismatch: None,
                        digest: 0,
                        answered: false,
                    },
                };
                return self.close(state, reason);
            }
        };
        let answer = if verification.answered {
            answer::WRITTEN
        } else if verification.mismatch.is_some() {
            answer::SKIPPED
        } else {
            answer::READ_ONLY
        };
        let results = vec![
            (backend::MAPPED_PAGES, format!("{pages}")),
            (backend::PATTERN, verification.pattern_value()),
            (backend::DIGEST, format!("{:08x}", verification.digest)),
            (backend::ANSWER, answer.to_string()),
        ];
        let state = ShareState::Announcing {
            port,
            region,
            verification,
        };
        (state, vec![PeerAction::WriteNodes(results)])
    }

    /// Reads each page once into a copy, checks the copy against the pattern, and writes the
    /// answer computed from the copy. Err: the region is smaller than the pages (its size).
    fn verify(region: &R, nodes: &FrontendNodes) -> Result<Verification, usize> {
        let pages = nodes.refs.len() as u32;
        let mut copy = vec![0u8; PAGE_SIZE];
        let mut digest = Digest::new();
        let mut mismatch = None;
        for page in 0..pages {
            let offset = page as usize * PAGE_SIZE;
            region
                .read_bytes(offset, &mut copy)
                .map_err(|_| region.size())?;
            digest.update(&copy);
            if mismatch.is_none() {
                mismatch = pattern::first_mismatch(nodes.pattern_seed, page, &copy)
                    .map(|byte| (page, byte as u32));
            }
        }
        let answered = nodes.writable && mismatch.is_none();
        if answered {
            for page in 0..pages {
                // The answer depends only on the pattern, which the copy was checked against.
                let mut start = [0u8; ANSWER_LENGTH];
                pattern::fill_page(nodes.pattern_seed, page, &mut start);
                pattern::apply_answer(&mut start);
                region
                    .write_bytes(page as usize * PAGE_SIZE, &start)
                    .map_err(|_| region.size())?;
            }
        }
        Ok(Verification {
            pages,
            mismatch,
            digest: digest.value(),
            answered,
        })
    }

    /// Ends the session from `state`: unmap, close the port, then tell the frontend.
    fn close(
        &self,
        state: ShareState<R>,
        reason: CloseReason,
    ) -> (ShareState<R>, Vec<ShareAction<R>>) {
        let (region, port) = match state {
            ShareState::Binding { region, .. } => (Some(region), None),
            ShareState::Announcing { port, region, .. }
            | ShareState::Connected { port, region, .. } => (Some(region), Some(port)),
            _ => (None, None),
        };
        let mut actions = Vec::new();
        if let Some(region) = region {
            actions.push(PeerAction::Unmap {
                purpose: ShareMapping::Pages,
                region,
            });
        }
        if let Some(port) = port {
            actions.push(PeerAction::ClosePort(port));
        }
        // A dead frontend or a removed backend directory has nobody to tell; writing would
        // only recreate nodes the toolstack removed.
        if !reason.nobody_to_tell() {
            let mut nodes = Vec::new();
            if reason.needs_room_for_error_node() {
                // Past the node quota the `error` node fits only in room the session makes:
                // its results go (an absent `mapped-pages` maps nothing either).
                actions.push(PeerAction::RemoveNodes(RESULT_NODES.to_vec()));
            } else {
                nodes.push((backend::MAPPED_PAGES, "0".to_string()));
            }
            if reason.writes_error_node() {
                nodes.push((backend::ERROR, reason.to_string()));
            }
            nodes.push((backend::STATE, XenbusState::Closed.as_str().to_string()));
            actions.push(PeerAction::WriteNodes(nodes));
        }
        actions.push(PeerAction::ReportClosed(reason.clone()));
        (ShareState::Closed(reason), actions)
    }
}

impl<R: SharedMemory> PeerSession for ShareSession<R> {
    type Protocol = ShareProtocol;
    type Region = R;

    fn peer(&self) -> DomId {
        self.peer
    }

    fn device(&self) -> DeviceId {
        self.device
    }

    fn port(&self) -> Option<EvtchnPort> {
        ShareSession::port(self)
    }

    fn is_closed(&self) -> bool {
        ShareSession::is_closed(self)
    }

    fn mapped_pages(&self) -> u32 {
        ShareSession::mapped_pages(self)
    }

    fn handle(
        &mut self,
        event: ShareEvent<'_, R>,
        _counters: &ServiceCounters,
    ) -> Vec<ShareAction<R>> {
        ShareSession::handle(self, event)
    }
}

#[cfg(test)]
mod tests;
