//! blkif as the session framework sees it: its name, its device ids (the vbd's `<devid>`), what it maps, and the faults and endings its sessions report.

use super::frontend_nodes::FrontendFault;
use super::ring::RingFault;
use crate::peer::device_id::DeviceId;
use crate::peer::protocol::Protocol;
use crate::peer::value::ValueFault;
use core::fmt;

/// The blkif protocol (a marker type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkProtocol;

/// What a blkif session maps through the framework: the shared ring of a queue. (Data grants
/// are mapped by the session itself, per batch or into the persistent-grant cache.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkMapping {
    Ring { queue: u32 },
}

impl fmt::Display for BlkMapping {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkMapping::Ring { queue } => write!(formatter, "ring of queue {queue}"),
        }
    }
}

/// What a blkfront can do wrong that ends its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkFaultKind {
    /// Its `state` node is not a xenbus state.
    BadState(ValueFault),
    /// Its connection nodes were refused.
    Nodes(FrontendFault),
    /// A ring page did not map (Xen's status).
    RingMapFailed { queue: u32, status: i32 },
    /// Its event channel could not be bound.
    BindFailed { queue: u32, status: i32 },
    /// The ring broke the protocol (a `req_prod` jump, an access outside the ring).
    Ring { queue: u32, fault: RingFault },
}

impl fmt::Display for BlkFaultKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkFaultKind::BadState(fault) => write!(formatter, "frontend state: {fault}"),
            BlkFaultKind::Nodes(fault) => write!(formatter, "frontend nodes: {fault}"),
            BlkFaultKind::RingMapFailed { queue, status } => {
                write!(
                    formatter,
                    "ring of queue {queue} did not map (status {status})"
                )
            }
            BlkFaultKind::BindFailed { queue, status } => write!(
                formatter,
                "event channel of queue {queue} could not be bound (status {status})"
            ),
            BlkFaultKind::Ring { queue, fault } => write!(formatter, "queue {queue}: {fault}"),
        }
    }
}

/// What a session reports when it connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlkConnected {
    pub sectors: u64,
    pub writable: bool,
    pub queues: u32,
    pub ring_page_order: u32,
    /// Both ends offered `feature-persistent`.
    pub persistent: bool,
}

/// Endings particular to blkif.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkEnding {
    /// The toolstack set `online` to 0 and the frontend closed: the device is detached.
    Detached,
    /// The kernel handed back a ring mapping smaller than asked (a grantsvc bug).
    RingTooSmall { queue: u32, fault: RingFault },
}

impl fmt::Display for BlkEnding {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlkEnding::Detached => formatter.write_str("detached by the toolstack"),
            BlkEnding::RingTooSmall { queue, fault } => {
                write!(formatter, "internal error: queue {queue}: {fault}")
            }
        }
    }
}

impl Protocol for BlkProtocol {
    type Device = DeviceId;
    type MapPurpose = BlkMapping;
    type FaultKind = BlkFaultKind;
    type Connected = BlkConnected;
    type Ending = BlkEnding;
    const NAME: &'static str = "blkif";
    const PEER_WORD: &'static str = "frontend";
    const OWN_WORD: &'static str = "backend";

    fn write_device_in_key(device: &DeviceId, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "/vbd{device}")
    }

    fn write_device_in_fault(device: &DeviceId, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, " vbd {device}")
    }
}
