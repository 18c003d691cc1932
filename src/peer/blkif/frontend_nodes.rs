//! Decoding what a blkfront writes under `device/vbd/<devid>/` into one validated, bound-checked [`FrontendConfig`].
//!
//! Rules, from `public/io/blkif.h` and Linux `xen-blkback/xenbus.c` (`connect_ring`,
//! `read_per_ring_refs`):
//! - `protocol`: absent means the native ABI; `x86_64-abi` is served; `x86_32-abi` is refused
//!   with its own fault (grantsvc implements only the x86-64 ring layout); anything else is
//!   refused.
//! - `feature-persistent`: absent means 0; `0` or `1`.
//! - `multi-queue-num-queues`: absent means 1; `1..=multi-queue-max-queues`. With one queue the
//!   ring nodes are in the device directory, with more in `queue-<N>/` for N from 0.
//! - `ring-page-order`: absent means 0; at most `max-ring-page-order`. With order 0 the ring is
//!   `ring-ref` (Linux blkfront writes only that; `ring-ref0` is accepted when it alone is
//!   there), with order n the refs are `ring-ref0` .. `ring-ref<2^n - 1>`.
//! - `event-channel`: a port of the frontend, 1 up to the event-channel ABI's limit.
//!
//! Every value is parsed strictly ([`crate::peer::value`]); a fault names the node.

use super::request::grant_ref;
use crate::abi::blkif::{PROTOCOL_X86_32, PROTOCOL_X86_64};
use crate::ids::GrantRef;
use crate::peer::value::{parse_u32, Excerpt, RemotePort, ValueFault};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The frontend's node values, looked up by path relative to its device directory.
pub trait FrontendNodes {
    /// The value of `key` (for example `queue-1/ring-ref0`), `None` when the node is absent.
    fn read(&self, key: &str) -> Option<&[u8]>;
}

/// What grantsvc advertised before InitWait: the bounds the frontend's values are checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendOffer {
    /// `max-ring-page-order`.
    pub max_ring_page_order: u32,
    /// `multi-queue-max-queues`.
    pub max_queues: u32,
    /// `feature-max-indirect-segments`.
    pub max_indirect_segments: u16,
}

/// The ring ABI a frontend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `x86_64-abi`, grantsvc's native one.
    X86_64,
}

/// One queue: its ring pages in order and the frontend's event-channel port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    pub ring_refs: Vec<GrantRef>,
    pub event_channel: RemotePort,
}

/// Everything the frontend asked for, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    pub protocol: Protocol,
    /// The frontend advertised `feature-persistent` (grantsvc always does: used when this is set).
    pub persistent: bool,
    pub ring_page_order: u32,
    pub queues: Vec<QueueConfig>,
}

/// Why the frontend's nodes were refused (the device goes to Closing with an `error` node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrontendFault {
    /// A node that must be there is not.
    Missing { key: String },
    /// A number that does not parse.
    BadValue { key: String, fault: ValueFault },
    /// A boolean that is neither `0` nor `1`.
    BadBoolean { key: String, value: Excerpt },
    /// `x86_32-abi`: a real ABI, not served by grantsvc.
    X86_32Refused,
    /// A protocol name no Xen ABI has.
    UnknownProtocol(Excerpt),
    /// `multi-queue-num-queues` of 0 or above the offer.
    QueueCount { asked: u32, max: u32 },
    /// `ring-page-order` above the offer.
    RingOrder { asked: u32, max: u32 },
    /// An event-channel port outside `1..2^17`.
    BadPort { key: String, port: u32 },
}

impl fmt::Display for FrontendFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendFault::Missing { key } => write!(formatter, "node {key} missing"),
            FrontendFault::BadValue { key, fault } => write!(formatter, "node {key}: {fault}"),
            FrontendFault::BadBoolean { key, value } => {
                write!(formatter, "node {key}: {value} is not 0 or 1")
            }
            FrontendFault::X86_32Refused => {
                formatter.write_str("protocol x86_32-abi is not served (only x86_64-abi rings)")
            }
            FrontendFault::UnknownProtocol(value) => write!(formatter, "unknown protocol {value}"),
            FrontendFault::QueueCount { asked, max } => {
                write!(formatter, "{asked} queues asked, 1 to {max} offered")
            }
            FrontendFault::RingOrder { asked, max } => {
                write!(
                    formatter,
                    "ring page order {asked} asked, at most {max} offered"
                )
            }
            FrontendFault::BadPort { key, port } => {
                write!(formatter, "node {key}: no event channel has port {port}")
            }
        }
    }
}

fn number(nodes: &impl FrontendNodes, key: &str) -> Result<Option<u32>, FrontendFault> {
    nodes
        .read(key)
        .map(|value| {
            parse_u32(value).map_err(|fault| FrontendFault::BadValue {
                key: String::from(key),
                fault,
            })
        })
        .transpose()
}

fn required(nodes: &impl FrontendNodes, key: &str) -> Result<u32, FrontendFault> {
    number(nodes, key)?.ok_or_else(|| FrontendFault::Missing {
        key: String::from(key),
    })
}

fn boolean(nodes: &impl FrontendNodes, key: &str) -> Result<bool, FrontendFault> {
    match nodes.read(key) {
        None | Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(other) => Err(FrontendFault::BadBoolean {
            key: String::from(key),
            value: Excerpt::of(other),
        }),
    }
}

impl FrontendConfig {
    /// Reads and checks every node the connection needs.
    pub fn decode(
        nodes: &impl FrontendNodes,
        offer: &BackendOffer,
    ) -> Result<FrontendConfig, FrontendFault> {
        let protocol = match nodes.read("protocol") {
            None => Protocol::X86_64,
            Some(value) if value == PROTOCOL_X86_64.as_bytes() => Protocol::X86_64,
            Some(value) if value == PROTOCOL_X86_32.as_bytes() => {
                return Err(FrontendFault::X86_32Refused)
            }
            Some(other) => return Err(FrontendFault::UnknownProtocol(Excerpt::of(other))),
        };
        let persistent = boolean(nodes, "feature-persistent")?;
        let queue_count = number(nodes, "multi-queue-num-queues")?.unwrap_or(1);
        if queue_count == 0 || queue_count > offer.max_queues {
            return Err(FrontendFault::QueueCount {
                asked: queue_count,
                max: offer.max_queues,
            });
        }
        let ring_page_order = number(nodes, "ring-page-order")?.unwrap_or(0);
        if ring_page_order > offer.max_ring_page_order {
            return Err(FrontendFault::RingOrder {
                asked: ring_page_order,
                max: offer.max_ring_page_order,
            });
        }
        let queues = (0..queue_count)
            .map(|queue| {
                let directory = if queue_count == 1 {
                    String::new()
                } else {
                    format!("queue-{queue}/")
                };
                read_queue(nodes, &directory, ring_page_order)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FrontendConfig {
            protocol,
            persistent,
            ring_page_order,
            queues,
        })
    }
}

fn read_queue(
    nodes: &impl FrontendNodes,
    directory: &str,
    order: u32,
) -> Result<QueueConfig, FrontendFault> {
    let ring_refs = if order == 0 {
        let single = format!("{directory}ring-ref");
        let numbered = format!("{directory}ring-ref0");
        let key = if nodes.read(&single).is_none() && nodes.read(&numbered).is_some() {
            numbered
        } else {
            single
        };
        alloc::vec![grant_ref(required(nodes, &key)?)]
    } else {
        (0..1u32 << order)
            .map(|page| required(nodes, &format!("{directory}ring-ref{page}")).map(grant_ref))
            .collect::<Result<Vec<_>, _>>()?
    };
    let key = format!("{directory}event-channel");
    let port = required(nodes, &key)?;
    let event_channel = RemotePort::new(port).ok_or(FrontendFault::BadPort { key, port })?;
    Ok(QueueConfig {
        ring_refs,
        event_channel,
    })
}

#[cfg(test)]
#[path = "frontend_nodes_tests.rs"]
mod tests;
