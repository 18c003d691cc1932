//! vchan as the framework sees it: its name, what it maps, and the faults and endings its sessions report.

use super::session_fault::{FaultKind, MapPurpose};
use crate::peer::protocol::{NoDevice, Protocol};
use core::fmt;

/// The vchan client protocol (a marker type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VchanProtocol;

/// Endings particular to vchan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VchanEnding {
    /// The server cleared `srv_live` (it closed, or its process died and gntalloc cleared it).
    ServerClosed,
}

impl fmt::Display for VchanEnding {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VchanEnding::ServerClosed => formatter.write_str("server closed the vchan"),
        }
    }
}

impl Protocol for VchanProtocol {
    /// A server may publish several vchans for grantsvc: the generation tells them apart.
    type Device = NoDevice;
    type MapPurpose = MapPurpose;
    type FaultKind = FaultKind;
    type Connected = ();
    type Ending = VchanEnding;
    const NAME: &'static str = "vchan";
    const PEER_WORD: &'static str = "peer";
    const OWN_WORD: &'static str = "own";

    fn write_device_in_key(_: &NoDevice, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }

    fn write_device_in_fault(_: &NoDevice, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}
