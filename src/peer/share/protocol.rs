//! grant-share as the framework sees it: its name, its device ids, what it maps, and the faults and endings its sessions report.

use super::fault::ShareFaultKind;
use super::session::Verification;
use crate::peer::device_id::DeviceId;
use crate::peer::protocol::Protocol;
use core::fmt;

/// The grant-share protocol (a marker type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareProtocol;

/// What a grant-share session maps: the frontend's pages, all in one region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareMapping {
    Pages,
}

impl fmt::Display for ShareMapping {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("pages")
    }
}

/// Endings particular to grant-share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareEnding {
    /// The kernel handed back a region smaller than the pages asked for (a grantsvc bug).
    RegionTooSmall { size: usize, pages: u32 },
}

impl fmt::Display for ShareEnding {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareEnding::RegionTooSmall { size, pages } => write!(
                formatter,
                "internal error: a {size}-byte region for {pages} page(s)"
            ),
        }
    }
}

impl Protocol for ShareProtocol {
    type Device = DeviceId;
    type MapPurpose = ShareMapping;
    type FaultKind = ShareFaultKind;
    type Connected = Verification;
    type Ending = ShareEnding;
    const NAME: &'static str = "grant-share";
    const PEER_WORD: &'static str = "frontend";
    const OWN_WORD: &'static str = "backend";

    fn write_device_in_key(device: &DeviceId, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "/share{device}")
    }

    fn write_device_in_fault(device: &DeviceId, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, " {} device {device}", super::nodes::DEVICE_TYPE)
    }
}
