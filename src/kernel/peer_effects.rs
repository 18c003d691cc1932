//! The protocol-free halves of the executor's effects (grant maps and unmaps, event channels, node requests): one copy in the image for all protocols, where the executor's generic methods made three (issue 10).
//!
//! `peer_executor::Executor` is instantiated once per protocol; what it does needs nothing of
//! the protocol but the words of its log lines, so it passes those ([`SessionName`], the map's
//! purpose as `dyn Display`) and keeps only the protocol's own steps (its glue, its request
//! bookkeeping keyed by its session keys).
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::address_space::PmapHandle;
use super::store_connection::Xenstore;
use super::xen::event_channel;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Display};
use grantsvc::addr::{VirtAddr, PAGE_SIZE};
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::peer::value::RemotePort;
use grantsvc::pmap::{GrantMapError, GrantMapping};
use grantsvc::shared_memory::SharedMemory;
use xenstore::{Operation, RequestId, TransactionId};

/// A peer's pages as sessions hold them.
pub type Region = GrantMapping<PmapHandle>;

/// The status reported for a failure Xen gave no status for (`GNTST_general_error`).
const GENERAL_ERROR: i32 = -1;
const NONE: TransactionId = TransactionId::NONE;

/// A session as log lines name it: `<protocol>: session <key>`.
#[derive(Clone, Copy)]
pub struct SessionName<'a> {
    pub protocol: &'static str,
    pub key: &'a dyn Display,
}

impl Display for SessionName<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: session {}", self.protocol, self.key)
    }
}

/// The status a session is told for a refused mapping: Xen's own where there is one.
fn map_status(error: &GrantMapError) -> i32 {
    match error {
        GrantMapError::Grant { status, .. } => i32::from(status.to_raw()),
        GrantMapError::Hypercall { error, .. } => i32::try_from(error.0).unwrap_or(GENERAL_ERROR),
        _ => GENERAL_ERROR,
    }
}

/// Maps `refs` of `peer` contiguously, in one batch; a refusal is logged and becomes the
/// status the session is told.
pub fn map(
    pmap: PmapHandle,
    session: SessionName<'_>,
    peer: DomId,
    refs: &[GrantRef],
    writable: bool,
    purpose: &dyn Display,
) -> Result<Region, i32> {
    GrantMapping::map(pmap, peer, refs, !writable).map_err(|error| {
        log::warn!(
            "{session}: mapping the {purpose} ({} ref(s)) of domain {peer}: {error}",
            refs.len()
        );
        map_status(&error)
    })
}

/// Unmaps `region`: the pages unmapped and where they were, or `None` when the unmap failed
/// (logged).
pub fn unmap(
    session: SessionName<'_>,
    purpose: &dyn Display,
    region: Region,
) -> Option<(usize, VirtAddr)> {
    let pages = region.size() / PAGE_SIZE;
    let start = region.start();
    match region.unmap() {
        Ok(()) => Some((pages, start)),
        Err(error) => {
            log::error!(
                "{session}: unmapping the {purpose} ({pages} page(s) at {start}) failed: {error}"
            );
            None
        }
    }
}

/// Binds an interdomain channel to `remote_port` of `peer`, unmasked.
pub fn bind(
    session: SessionName<'_>,
    peer: DomId,
    remote_port: RemotePort,
) -> Result<EvtchnPort, i32> {
    // The decoder checked the port's range; Xen would refuse one beyond it the same way.
    let port = EvtchnPort::new(remote_port.0)
        .ok_or(XenError::EINVAL)
        .and_then(|remote_port| event_channel::bind_interdomain(peer, remote_port))
        .map_err(|error| {
            log::warn!("{session}: binding port {remote_port} of domain {peer}: {error}");
            i32::try_from(error.0).unwrap_or(GENERAL_ERROR)
        })?;
    // A fresh port may keep the mask of an earlier one with its number.
    if let Err(error) = event_channel::unmask(port) {
        log::warn!("{session}: unmasking port {port}: {error}");
    }
    Ok(port)
}

/// Signals `port`.
pub fn notify(session: SessionName<'_>, port: EvtchnPort) {
    if let Err(error) = event_channel::send(port) {
        log::debug!("{session}: notifying port {port}: {error}");
    }
}

/// Closes `port`.
pub fn close_port(session: SessionName<'_>, port: EvtchnPort) {
    if let Err(error) = event_channel::close(port) {
        log::warn!("{session}: closing port {port}: {error}");
    }
}

/// Sends one read per node of `names` under `directory`, all in flight together; the id of
/// each (`None` for one that could not be sent, logged: it reads as absent).
pub fn submit_reads(
    store: &mut Xenstore,
    session: SessionName<'_>,
    directory: &str,
    names: &[&str],
) -> Vec<Option<RequestId>> {
    names
        .iter()
        .map(|name| {
            let path = alloc::format!("{directory}/{name}");
            store
                .submit(NONE, &Operation::Read { path: &path })
                .inspect_err(|error| log::warn!("{session}: reading {path}: {error}"))
                .ok()
        })
        .collect()
}

/// Sends the writes of `nodes` under `directory`, in flight together (xenstored applies one
/// connection's requests in order); the id of each sent, with its node.
pub fn submit_writes(
    store: &mut Xenstore,
    session: SessionName<'_>,
    directory: &str,
    nodes: Vec<(&'static str, String)>,
) -> Vec<(RequestId, &'static str)> {
    let mut sent = Vec::with_capacity(nodes.len());
    for (name, value) in nodes {
        let path = alloc::format!("{directory}/{name}");
        let operation = Operation::Write {
            path: &path,
            value: value.as_bytes(),
        };
        match store.submit(NONE, &operation) {
            Ok(id) => sent.push((id, name)),
            Err(error) => log::warn!("{session}: writing {path}: {error}"),
        }
    }
    sent
}

/// Removes `names` under `directory`; nobody waits for the answers (a node that is not there
/// is as good as removed).
pub fn remove(
    store: &mut Xenstore,
    session: SessionName<'_>,
    directory: &str,
    names: Vec<&'static str>,
) {
    for name in names {
        let path = alloc::format!("{directory}/{name}");
        match store.submit(NONE, &Operation::Remove { path: &path }) {
            Ok(id) => store.abandon(id),
            Err(error) => log::warn!("{session}: removing {path}: {error}"),
        }
    }
}

/// Logs that `count` node(s) cannot be written: xenstore is unusable (at shutdown without it).
pub fn no_store(session: SessionName<'_>, count: usize) {
    log::warn!("{session}: no xenstore to write {count} node(s)");
}

/// `nodes` as (path under `directory`, value), for a transaction's writes.
pub fn paths(directory: &str, nodes: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    nodes
        .into_iter()
        .map(|(name, value)| (alloc::format!("{directory}/{name}"), value))
        .collect()
}
