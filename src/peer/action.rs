//! The events a session takes and the actions it returns, the same for every protocol, and why a session ends.

use super::fault::PeerFault;
use super::protocol::Protocol;
use super::store_limit::{RefusedRequest, StoreRefusal};
use super::value::RemotePort;
use super::xenbus_state::XenbusState;
use crate::ids::{DomId, EvtchnPort, GrantRef};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Nodes of the peer's directory as read once, raw and untrusted: (name, value), `None` for a
/// node that does not exist, in the order they were asked for.
pub type PeerNodes<'a> = [(&'static str, Option<&'a [u8]>)];

/// The value of `name` in `nodes`, if it was read and exists.
pub fn node_value<'a>(nodes: &PeerNodes<'a>, name: &str) -> Option<&'a [u8]> {
    nodes
        .iter()
        .find(|(node, _)| *node == name)
        .and_then(|(_, value)| *value)
}

/// Something that happened that concerns one session.
#[derive(Debug)]
pub enum PeerEvent<'a, P: Protocol, R> {
    /// The answer to [`PeerAction::ReadPeerNodes`] (or, for a protocol whose discovery reads
    /// them, the nodes that made the session): raw, untrusted bytes.
    PeerNodesRead(&'a PeerNodes<'a>),
    /// The peer's xenbus `state` node was read (its watch fired); raw, untrusted bytes.
    PeerState(&'a [u8]),
    /// The answer to [`PeerAction::MapGrants`]: the region, or a negative status.
    Mapped {
        purpose: P::MapPurpose,
        result: Result<R, i32>,
    },
    /// The answer to [`PeerAction::BindInterdomain`]: our local port, or a negative errno.
    PortBound(Result<EvtchnPort, i32>),
    /// Our port was signalled, or a periodic look is due.
    EventChannel,
    /// The peer removed its nodes.
    PeerNodesRemoved,
    /// grantsvc's own nodes for the session were removed (the toolstack detached it).
    OwnNodesRemoved,
    /// The toolstack wrote `online` = 0 in grantsvc's own directory: end the session once the
    /// peer has let go (a protocol that has no such node never gets this).
    ToolstackOffline,
    /// The peer domain died, or its end of our event channel is gone.
    DomainDied,
    /// grantsvc is shutting down.
    Shutdown,
    /// Nodes grantsvc had to write for the session were not written: xenstored refused one
    /// (past a quota, say) or a [`PeerAction::WriteNodesInTransaction`] failed; or the watch
    /// the session needs on the peer's nodes was refused. The session must not go on as if
    /// the peer could read them (or as if it would hear the peer).
    OwnNodesNotWritten(StoreRefusal),
    /// Every node write the session asked for so far was acknowledged by xenstored (what a
    /// session waits for before it announces Connected).
    OwnNodesWritten,
}

/// What the caller must do for a session, in order.
#[derive(Debug)]
pub enum PeerAction<P: Protocol, R> {
    /// Read these nodes of the peer's directory once; answer with `PeerNodesRead`.
    ReadPeerNodes(&'static [&'static str]),
    /// Write these nodes (name relative to the session's own directory, value), in order.
    WriteNodes(Vec<(&'static str, String)>),
    /// Write these nodes in one xenstore transaction, so that a reader sees all or none.
    WriteNodesInTransaction(Vec<(&'static str, String)>),
    /// Remove these nodes of the session's own directory (nodes it wrote, to make room for its
    /// `error` node after xenstored's node quota refused a write).
    RemoveNodes(Vec<&'static str>),
    /// Map these refs of `peer` contiguously, in one batch; answer with `Mapped`.
    MapGrants {
        peer: DomId,
        refs: Vec<GrantRef>,
        writable: bool,
        purpose: P::MapPurpose,
    },
    /// Bind an interdomain event channel to the peer's port; answer with `PortBound`.
    BindInterdomain {
        peer: DomId,
        remote_port: RemotePort,
    },
    /// Unmap this region (`pmap_remove` of its range).
    Unmap { purpose: P::MapPurpose, region: R },
    /// Signal the event channel.
    Notify(EvtchnPort),
    /// Close the event channel.
    ClosePort(EvtchnPort),
    /// The session is connected: what it found and did.
    ReportConnected(P::Connected),
    /// The session ended; it takes no more events.
    ReportClosed(CloseReason<P>),
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason<P: Protocol> {
    /// The peer's `state` went to Closing or Closed.
    PeerStateClosing(XenbusState),
    /// The peer removed its nodes.
    PeerNodesRemoved,
    /// grantsvc's own nodes were removed (the toolstack detached the device).
    OwnNodesRemoved,
    /// The peer domain died.
    DomainDied,
    /// grantsvc shut down.
    Shutdown,
    /// grantsvc could not write nodes the peer needs, or set the watch it needs (xenstore
    /// refused, past one of its quotas say, or did not answer).
    OwnNodesNotWritten(StoreRefusal),
    /// An ending particular to the protocol.
    Protocol(P::Ending),
    /// The peer broke the protocol.
    Fault(PeerFault<P>),
}

impl<P: Protocol> CloseReason<P> {
    /// True when nobody is left to tell (the peer died, or the toolstack removed our nodes,
    /// which writing would only recreate).
    pub fn nobody_to_tell(&self) -> bool {
        matches!(self, CloseReason::DomainDied | CloseReason::OwnNodesRemoved)
    }

    /// True when the ending is grantsvc's refusal, which the peer reads in an `error` node (the
    /// xenbus convention), rather than an ordinary close.
    pub fn writes_error_node(&self) -> bool {
        matches!(
            self,
            CloseReason::Fault(_) | CloseReason::Protocol(_) | CloseReason::OwnNodesNotWritten(_)
        )
    }

    /// True when xenstored's node quota ended the session: the `error` node then fits only
    /// where the session first removes nodes it wrote.
    pub fn needs_room_for_error_node(&self) -> bool {
        matches!(self, CloseReason::OwnNodesNotWritten(refusal) if refusal.is_node_quota())
    }
}

impl<P: Protocol> fmt::Display for CloseReason<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let common = match self {
            CloseReason::PeerStateClosing(state) => CommonReason::PeerStateClosing(*state),
            CloseReason::PeerNodesRemoved => CommonReason::PeerNodesRemoved,
            CloseReason::OwnNodesRemoved => CommonReason::OwnNodesRemoved,
            CloseReason::DomainDied => CommonReason::DomainDied,
            CloseReason::Shutdown => CommonReason::Shutdown,
            CloseReason::OwnNodesNotWritten(refusal) => CommonReason::OwnNodesNotWritten(refusal),
            CloseReason::Protocol(ending) => return write!(formatter, "{ending}"),
            CloseReason::Fault(fault) => return write!(formatter, "{fault}"),
        };
        common.write(P::PEER_WORD, P::OWN_WORD, formatter)
    }
}

/// The endings every protocol shares, without the protocol: their text is written by one
/// function rather than once per protocol (issue 10's image size).
enum CommonReason<'a> {
    PeerStateClosing(XenbusState),
    PeerNodesRemoved,
    OwnNodesRemoved,
    DomainDied,
    Shutdown,
    OwnNodesNotWritten(&'a StoreRefusal),
}

impl CommonReason<'_> {
    fn write(
        &self,
        peer_word: &str,
        own_word: &str,
        formatter: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        match self {
            CommonReason::PeerStateClosing(state) => write!(formatter, "{peer_word} state {state}"),
            CommonReason::PeerNodesRemoved => write!(formatter, "{peer_word} nodes removed"),
            CommonReason::OwnNodesRemoved => write!(formatter, "{own_word} nodes removed"),
            CommonReason::DomainDied => write!(formatter, "{peer_word} domain died"),
            CommonReason::Shutdown => formatter.write_str("grantsvc shutting down"),
            CommonReason::OwnNodesNotWritten(refusal) => match refusal.request() {
                RefusedRequest::Watch => write!(
                    formatter,
                    "grantsvc cannot watch the {peer_word} nodes: {refusal}"
                ),
                _ => write!(formatter, "{own_word} nodes not written: {refusal}"),
            },
        }
    }
}

/// Resources carried by an event a session can no longer use, turned into their release.
pub fn leftovers<P: Protocol, R>(event: PeerEvent<'_, P, R>) -> Vec<PeerAction<P, R>> {
    match event {
        PeerEvent::Mapped {
            purpose,
            result: Ok(region),
        } => vec![PeerAction::Unmap { purpose, region }],
        PeerEvent::PortBound(Ok(port)) => vec![PeerAction::ClosePort(port)],
        _ => Vec::new(),
    }
}
