//! The one fault type: what a peer did wrong (its protocol's kind), and which peer and device it was, for the session-ending log line and `error` node.

use super::protocol::Protocol;
use crate::ids::DomId;
use core::fmt;

/// A fault and the peer that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFault<P: Protocol> {
    /// The domain blamed.
    pub peer: DomId,
    /// Its device.
    pub device: P::Device,
    /// What it did.
    pub kind: P::FaultKind,
}

impl<P: Protocol> fmt::Display for PeerFault<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "peer domain {}", self.peer)?;
        P::write_device_in_fault(&self.device, formatter)?;
        write!(formatter, ": {}; session ended", self.kind)
    }
}
