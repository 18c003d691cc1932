//! One grant-share device as grantsvc serves it (the backend side): events in, actions out, unmap first on every close.
//!
//! The session owns its mapped region (type `R`, the kernel's mapping handle) inside its state,
//! so the only way the region leaves is a [`ShareAction::Unmap`], and on close, whatever the
//! cause, that unmap comes before the port's close and before `state` = Closed is written: the
//! frontend is never told "closed" while grantsvc still maps its pages.

use super::device_id::DeviceId;
use super::fault::{ShareFault, ShareFaultKind};
use super::nodes::{answer, backend, FrontendNodes, RawFrontendNodes};
use super::pattern::{self, Digest, ANSWER_LENGTH};
use crate::addr::PAGE_SIZE;
use crate::ids::{DomId, EvtchnPort, GrantRef};
use crate::shared_memory::SharedMemory;
use crate::xenbus::state::XenbusState;
use crate::xenbus::value::RemotePort;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Something that happened that concerns this device.
#[derive(Debug)]
pub enum ShareEvent<'a, R> {
    /// The frontend's `state` node was read (its watch fired); raw, untrusted bytes.
    PeerState(&'a [u8]),
    /// The answer to [`ShareAction::ReadFrontendNodes`].
    FrontendNodesRead(RawFrontendNodes<'a>),
    /// The answer to [`ShareAction::MapGrants`]: the region, or a negative status.
    Mapped(Result<R, i32>),
    /// The answer to [`ShareAction::BindInterdomain`]: our local port, or a negative errno.
    PortBound(Result<EvtchnPort, i32>),
    /// Our port was signalled (nothing to do: the protocol moves on `state` changes).
    EventChannel,
    /// The frontend's directory (or its `state` node) was removed.
    FrontendRemoved,
    /// The backend directory was removed (the toolstack detached the device): write nothing.
    BackendRemoved,
    /// The frontend domain died.
    DomainDied,
    /// grantsvc is shutting down.
    Shutdown,
}

/// What the caller must do, in order.
#[derive(Debug)]
pub enum ShareAction<R> {
    /// Write these nodes (name relative to the backend directory, value), in order.
    WriteNodes(Vec<(&'static str, String)>),
    /// Read every frontend node of [`RawFrontendNodes`] once; answer with `FrontendNodesRead`.
    ReadFrontendNodes,
    /// Map these refs of `peer` contiguously, in one batch; answer with `Mapped`.
    MapGrants {
        peer: DomId,
        refs: Vec<GrantRef>,
        writable: bool,
    },
    /// Bind an interdomain event channel to the frontend's port; answer with `PortBound`.
    BindInterdomain {
        peer: DomId,
        remote_port: RemotePort,
    },
    /// Unmap this region (`pmap_remove` of its range).
    Unmap(R),
    /// Signal the event channel.
    Notify(EvtchnPort),
    /// Close the event channel.
    ClosePort(EvtchnPort),
    /// The device is connected: what grantsvc found and did.
    ReportConnected(Verification),
    /// The session ended; it takes no more events.
    ReportClosed(CloseReason),
}

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

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The frontend's `state` went to Closing or Closed.
    PeerStateClosing(XenbusState),
    /// The frontend removed its nodes.
    FrontendRemoved,
    /// The toolstack removed the backend directory.
    BackendRemoved,
    /// The frontend domain died.
    DomainDied,
    /// grantsvc shut down.
    Shutdown,
    /// The kernel handed back a region smaller than the pages asked for (a grantsvc bug).
    RegionTooSmall { size: usize, pages: u32 },
    /// The frontend broke the protocol.
    Fault(ShareFault),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerStateClosing(state) => write!(formatter, "frontend state {state}"),
            CloseReason::FrontendRemoved => formatter.write_str("frontend nodes removed"),
            CloseReason::BackendRemoved => formatter.write_str("backend nodes removed"),
            CloseReason::DomainDied => formatter.write_str("frontend domain died"),
            CloseReason::Shutdown => formatter.write_str("grantsvc shutting down"),
            CloseReason::RegionTooSmall { size, pages } => write!(
                formatter,
                "internal error: a {size}-byte region for {pages} page(s)"
            ),
            CloseReason::Fault(fault) => write!(formatter, "{fault}"),
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
        let actions = vec![ShareAction::WriteNodes(vec![(
            backend::STATE,
            XenbusState::InitWait.as_str().to_string(),
        )])];
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
            ShareState::Connected { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// Pages this session holds mapped.
    pub fn mapped_pages(&self) -> u32 {
        match &self.state {
            ShareState::Binding { nodes, .. } => nodes.refs.len() as u32,
            ShareState::Connected { verification, .. } => verification.pages,
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
            (state @ ShareState::Closed(_), event) => (state, Self::leftovers(event)),
            (state, ShareEvent::FrontendRemoved) => self.close(state, CloseReason::FrontendRemoved),
            (state, ShareEvent::BackendRemoved) => self.close(state, CloseReason::BackendRemoved),
            (state, ShareEvent::DomainDied) => self.close(state, CloseReason::DomainDied),
            (state, ShareEvent::Shutdown) => self.close(state, CloseReason::Shutdown),
            (state, ShareEvent::PeerState(value)) => match XenbusState::parse(value) {
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
                        vec![ShareAction::ReadFrontendNodes],
                    )
                }
                Ok(_) => (state, Vec::new()),
            },
            (ShareState::ReadingNodes, ShareEvent::FrontendNodesRead(raw)) => {
                match FrontendNodes::decode(&raw) {
                    Ok(nodes) => {
                        let action = ShareAction::MapGrants {
                            peer: self.peer,
                            refs: nodes.refs.clone(),
                            writable: nodes.writable,
                        };
                        (ShareState::Mapping { nodes }, vec![action])
                    }
                    Err(kind) => self.close(ShareState::ReadingNodes, self.fault(kind)),
                }
            }
            (ShareState::Mapping { nodes }, ShareEvent::Mapped(result)) => match result {
                Ok(region) => {
                    let action = ShareAction::BindInterdomain {
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
            (ShareState::Binding { nodes, region }, ShareEvent::PortBound(result)) => {
                match result {
                    Ok(port) => self.connect(nodes, region, port),
                    Err(status) => {
                        let reason = self.fault(ShareFaultKind::BindFailed {
                            remote_port: nodes.event_channel,
                            status,
                        });
                        self.close(ShareState::Binding { nodes, region }, reason)
                    }
                }
            }
            // Anything else is out of order: results are given back, other events ignored.
            (state, event) => (state, Self::leftovers(event)),
        }
    }

    /// Checks the pages, answers, and publishes the results.
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
                let reason = CloseReason::RegionTooSmall { size, pages };
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
            (backend::STATE, XenbusState::Connected.as_str().to_string()),
        ];
        let actions = vec![
            ShareAction::WriteNodes(results),
            ShareAction::Notify(port),
            ShareAction::ReportConnected(verification.clone()),
        ];
        let state = ShareState::Connected {
            port,
            region,
            verification,
        };
        (state, actions)
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
            ShareState::Connected { port, region, .. } => (Some(region), Some(port)),
            _ => (None, None),
        };
        let mut actions = Vec::new();
        if let Some(region) = region {
            actions.push(ShareAction::Unmap(region));
        }
        if let Some(port) = port {
            actions.push(ShareAction::ClosePort(port));
        }
        // A dead frontend or a removed backend directory has nobody to tell; writing would
        // only recreate nodes the toolstack removed.
        if !matches!(
            reason,
            CloseReason::DomainDied | CloseReason::BackendRemoved
        ) {
            let mut nodes = vec![(backend::MAPPED_PAGES, "0".to_string())];
            if let CloseReason::Fault(_) | CloseReason::RegionTooSmall { .. } = &reason {
                nodes.push((backend::ERROR, reason.to_string()));
            }
            nodes.push((backend::STATE, XenbusState::Closed.as_str().to_string()));
            actions.push(ShareAction::WriteNodes(nodes));
        }
        actions.push(ShareAction::ReportClosed(reason.clone()));
        (ShareState::Closed(reason), actions)
    }

    /// Resources carried by an event the session can no longer use, turned into their release.
    pub fn leftovers(event: ShareEvent<'_, R>) -> Vec<ShareAction<R>> {
        match event {
            ShareEvent::Mapped(Ok(region)) => vec![ShareAction::Unmap(region)],
            ShareEvent::PortBound(Ok(port)) => vec![ShareAction::ClosePort(port)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
