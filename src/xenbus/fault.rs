//! Faults blamed on a peer: what it did wrong, and which domain it was, for the session-ending log line.

use super::value::{RemotePort, ValueFault};
use crate::ids::DomId;
use crate::vchan::fault::VchanFault;
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
            FaultKind::BadRingRef(fault) => write!(formatter, "ring-ref: {fault}"),
            FaultKind::ZeroRingRef => formatter.write_str("ring-ref is 0"),
            FaultKind::BadEventChannel(fault) => write!(formatter, "event-channel: {fault}"),
            FaultKind::EventChannelOutOfRange(port) => {
                write!(formatter, "event-channel {port} is not a valid port")
            }
            FaultKind::BadState(fault) => write!(formatter, "state: {fault}"),
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

/// A fault and the peer that caused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerFault {
    /// The domain blamed.
    pub peer: DomId,
    /// What it did.
    pub kind: FaultKind,
}

impl fmt::Display for PeerFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "peer domain {}: {}; session ended",
            self.peer, self.kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vchan::fault::RingSide;
    use alloc::string::ToString;

    #[test]
    fn the_log_line_names_the_peer_and_the_fault() {
        let fault = PeerFault {
            peer: DomId::new(7).unwrap(),
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
