//! Faults a grant-share frontend can commit; the framework's [`PeerFault`] blames them on its domain and device.

use super::protocol::ShareProtocol;
use crate::peer::fault::PeerFault;
use crate::peer::value::{Excerpt, RemotePort, ValueFault};
use core::fmt;

/// What a frontend did wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareFaultKind {
    /// A node the protocol requires does not exist.
    Missing(&'static str),
    /// `nr-pages` is not a decimal number.
    BadNrPages(ValueFault),
    /// `nr-pages` is 0 or above [`super::nodes::MAX_PAGES`].
    NrPagesOutOfRange(u32),
    /// A word of `refs` is not a decimal number (`index` counts from 0).
    BadRef { index: u32, fault: ValueFault },
    /// `refs` holds fewer (`more: false`) or more (`more: true`) refs than `nr-pages`.
    RefCount { expected: u32, more: bool },
    /// `event-channel` is not a decimal number.
    BadEventChannel(ValueFault),
    /// `event-channel` is 0 or beyond every event-channel ABI's limit.
    EventChannelOutOfRange(u32),
    /// `pattern-seed` is not a decimal number.
    BadPatternSeed(ValueFault),
    /// `writable` is neither `0` nor `1`.
    BadWritable(Excerpt),
    /// The `state` node holds no xenbus state.
    BadState(ValueFault),
    /// Mapping the refs failed (a Xen grant status or errno, negative).
    MapFailed { status: i32 },
    /// Binding to the frontend's event channel failed (a negative errno).
    BindFailed {
        remote_port: RemotePort,
        status: i32,
    },
}

impl fmt::Display for ShareFaultKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShareFaultKind::Missing(node) => write!(formatter, "node {node} is missing"),
            ShareFaultKind::BadNrPages(fault) => write!(formatter, "nr-pages: {fault}"),
            ShareFaultKind::NrPagesOutOfRange(pages) => write!(
                formatter,
                "nr-pages {pages} is outside 1..={}",
                super::nodes::MAX_PAGES
            ),
            ShareFaultKind::BadRef { index, fault } => write!(formatter, "refs[{index}]: {fault}"),
            ShareFaultKind::RefCount { expected, more } => write!(
                formatter,
                "refs holds {} than nr-pages ({expected}) refs",
                if *more { "more" } else { "fewer" }
            ),
            ShareFaultKind::BadEventChannel(fault) => write!(formatter, "event-channel: {fault}"),
            ShareFaultKind::EventChannelOutOfRange(port) => {
                write!(formatter, "event-channel {port} is not a valid port")
            }
            ShareFaultKind::BadPatternSeed(fault) => write!(formatter, "pattern-seed: {fault}"),
            ShareFaultKind::BadWritable(excerpt) => {
                write!(formatter, "writable {excerpt} is neither 0 nor 1")
            }
            ShareFaultKind::BadState(fault) => write!(formatter, "state: {fault}"),
            ShareFaultKind::MapFailed { status } => {
                write!(formatter, "mapping its refs failed with status {status}")
            }
            ShareFaultKind::BindFailed {
                remote_port,
                status,
            } => write!(
                formatter,
                "binding its event channel {remote_port} failed with status {status}"
            ),
        }
    }
}

/// A fault and the frontend (and device) that caused it.
pub type ShareFault = PeerFault<ShareProtocol>;
