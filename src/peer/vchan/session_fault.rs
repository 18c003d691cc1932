//! What a vchan server can do wrong, and which of a session's mappings a grant operation was for; the framework's [`PeerFault`] blames the server's domain.

use super::fault::VchanFault;
use super::protocol::VchanProtocol;
use crate::peer::fault;
use crate::peer::value::{RemotePort, ValueFault};
use core::fmt;

/// Which mapping a grant operation was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapPurpose {
    /// The vchan shared page (`ring-ref`).
    SharedPage,
    /// The pages of the left ring (grantsvc writes).
    LeftRing,
    /// The pages of the right ring (grantsvc reads).
    RightRing,
}

impl fmt::Display for MapPurpose {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            MapPurpose::SharedPage => "shared page",
            MapPurpose::LeftRing => "left ring pages",
            MapPurpose::RightRing => "right ring pages",
        })
    }
}

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A node the protocol requires does not exist.
    Missing(&'static str),
    /// `ring-ref` is not a decimal number.
    BadRingRef(ValueFault),
    /// `ring-ref` is 0 (`libxenvchan_client_init` refuses it too).
    ZeroRingRef,
    /// `event-channel` is not a decimal number.
    BadEventChannel(ValueFault),
    /// `event-channel` is 0 or beyond every event-channel ABI's limit.
    EventChannelOutOfRange(u32),
    /// A `state` node holds no xenbus state.
    BadState(ValueFault),
    /// A grant ref appears twice in the session's layout (shared page and rings' refs).
    RefTwice(crate::ids::GrantRef),
    /// The shared page or rings broke the vchan protocol.
    Vchan(VchanFault),
    /// Mapping the peer's grants failed (a Xen grant status or errno, negative).
    MapFailed { purpose: MapPurpose, status: i32 },
    /// Binding to the peer's event channel failed (a negative errno).
    BindFailed {
        remote_port: RemotePort,
        status: i32,
    },
}

impl fmt::Display for FaultKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Missing(node) => write!(formatter, "node {node} is missing"),
            FaultKind::BadRingRef(fault) => write!(formatter, "ring-ref: {fault}"),
            FaultKind::ZeroRingRef => formatter.write_str("ring-ref is 0"),
            FaultKind::BadEventChannel(fault) => write!(formatter, "event-channel: {fault}"),
            FaultKind::EventChannelOutOfRange(port) => {
                write!(formatter, "event-channel {port} is not a valid port")
            }
            FaultKind::BadState(fault) => write!(formatter, "state: {fault}"),
            FaultKind::RefTwice(grant) => {
                write!(formatter, "grant ref {grant} appears twice in its layout")
            }
            FaultKind::Vchan(fault) => write!(formatter, "vchan: {fault}"),
            FaultKind::MapFailed { purpose, status } => {
                write!(
                    formatter,
                    "mapping its {purpose} failed with status {status}"
                )
            }
            FaultKind::BindFailed {
                remote_port,
                status,
            } => write!(
                formatter,
                "binding its event channel {remote_port} failed with status {status}"
            ),
        }
    }
}

/// A fault and the server domain that caused it.
pub type PeerFault = fault::PeerFault<VchanProtocol>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DomId;
    use crate::peer::protocol::NoDevice;
    use crate::peer::vchan::fault::RingSide;
    use alloc::string::ToString;

    #[test]
    fn the_log_line_names_the_peer_and_the_fault() {
        let fault = PeerFault {
            peer: DomId::new(7).unwrap(),
            device: NoDevice,
            kind: FaultKind::Vchan(VchanFault::IndexBeyondRing {
                ring: RingSide::Right,
                ours: 0,
                theirs: 9999,
                size: 2048,
            }),
        };
        assert_eq!(
            fault.to_string(),
            "peer domain 7: vchan: right (server-to-client) ring index 9999 is beyond the ring \
             (our index 0, size 2048); session ended"
        );
    }
}
