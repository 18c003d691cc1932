//! What a peer protocol tells the framework about itself: its name, how its sessions are told apart, and the types its events and actions carry.

use crate::ids::{DomId, EvtchnPort};
use alloc::vec::Vec;
use core::fmt;
use core::fmt::{Debug, Display};

use super::action::{PeerAction, PeerEvent};
use super::counters::ServiceCounters;

/// A peer protocol, as a marker type (`ShareProtocol`, `VchanProtocol`).
pub trait Protocol: Sized + 'static {
    /// What tells one peer's sessions apart besides the generation: a device id, or
    /// [`NoDevice`] where the generation alone does.
    type Device: Copy + Ord + Debug;
    /// Which mapping a grant operation is for (a protocol may map several regions).
    type MapPurpose: Copy + Eq + Debug + Display;
    /// What a peer of this protocol can do wrong.
    type FaultKind: Clone + Eq + Debug + Display;
    /// What a session reports when it connects.
    type Connected: Clone + Eq + Debug;
    /// Why a session of this protocol can end besides the framework's common reasons.
    type Ending: Clone + Eq + Debug + Display;

    /// The protocol's name in log lines.
    const NAME: &'static str;
    /// What the protocol calls its peer in a close reason (`frontend`, `peer`).
    const PEER_WORD: &'static str;
    /// What the protocol calls grantsvc's own side (`backend`, `own`).
    const OWN_WORD: &'static str;

    /// Writes the device into a session key (`d4/share0#3`: `/share0`; nothing for none).
    fn write_device_in_key(
        device: &Self::Device,
        formatter: &mut fmt::Formatter<'_>,
    ) -> fmt::Result;

    /// Writes the device into a fault's log line (` grantsvc-share device 0`; nothing for none).
    fn write_device_in_fault(
        device: &Self::Device,
        formatter: &mut fmt::Formatter<'_>,
    ) -> fmt::Result;
}

/// The device of a protocol whose sessions are told apart by their generation alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoDevice;

/// One session of a protocol, as the framework drives it.
pub trait PeerSession {
    type Protocol: Protocol;
    /// The kernel's handle of a mapped region.
    type Region;

    /// The peer domain.
    fn peer(&self) -> DomId;
    /// The session's device.
    fn device(&self) -> <Self::Protocol as Protocol>::Device;
    /// Our local port, once bound (the liveness check looks at its remote end).
    fn port(&self) -> Option<EvtchnPort>;
    /// True once the session has ended.
    fn is_closed(&self) -> bool;
    /// Pages the session holds mapped.
    fn mapped_pages(&self) -> u32;
    /// Handles one event; returns the actions to carry out, in order. `counters` are the
    /// service's figures, for a protocol that reports them to its peer.
    fn handle(
        &mut self,
        event: PeerEvent<'_, Self::Protocol, Self::Region>,
        counters: &ServiceCounters,
    ) -> Vec<PeerAction<Self::Protocol, Self::Region>>;
}
