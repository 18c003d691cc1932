//! The one place where peer sessions' actions meet Xen and xenstore: grant maps and unmaps through the service's pmap handle, event channels, node reads and writes, for every protocol.
//!
//! The framework's executor loop (`grantsvc::peer::driver`) calls [`Executor`] through
//! `Effects`; a protocol adds only what differs (its directories and its report lines) through
//! [`ProtocolGlue`]. Nothing here takes a lock but the pmap's, for the length of one map or
//! unmap, and nothing calls back up into the service.
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::store_connection::Xenstore;
use super::xen::event_channel::{self, PortStatus};
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::peer::action::{CloseReason, PeerAction};
use grantsvc::peer::driver::{Effects, InTransaction, OwnedNodes};
use grantsvc::peer::key::SessionKey;
use grantsvc::peer::liveness::PortState;
use grantsvc::peer::pending::PendingRequests;
use grantsvc::peer::protocol::Protocol;
use grantsvc::peer::transaction_write::TransactionWrites;
use grantsvc::peer::value::RemotePort;
use grantsvc::pmap::{GrantMapError, GrantMapping};
use grantsvc::shared_memory::SharedMemory;
use xenstore::{Operation, TransactionId};

/// The pmap handle the service owns and lends to the executor.
pub use super::address_space::PmapHandle;
/// A peer's pages as sessions hold them.
pub type Region = GrantMapping<PmapHandle>;

/// The status reported for a failure Xen gave no status for (`GNTST_general_error`).
const GENERAL_ERROR: i32 = -1;
const NONE: TransactionId = TransactionId::NONE;

/// The sessions' transactional writes in flight, each with the actions its session queued
/// after it.
pub type Transactions<P> = TransactionWrites<SessionKey<P>, Vec<PeerAction<P, Region>>>;

/// What differs between protocols when their actions are carried out.
pub trait ProtocolGlue<P: Protocol> {
    /// The session's own directory (node writes are relative to it), if it has one.
    fn own_directory(&self, key: SessionKey<P>) -> Option<String>;
    /// The peer's directory (node reads are relative to it).
    fn peer_directory(&self, key: SessionKey<P>) -> String;
    /// Notes a map that succeeded (`pages` pages at `start`).
    fn mapped(
        &mut self,
        key: SessionKey<P>,
        purpose: P::MapPurpose,
        pages: usize,
        start: grantsvc::addr::VirtAddr,
    );
    /// Logs an unmap that succeeded (`pages` pages at `start`).
    fn unmapped(
        &mut self,
        key: SessionKey<P>,
        purpose: P::MapPurpose,
        pages: usize,
        start: grantsvc::addr::VirtAddr,
    );
    /// Logs the connection.
    fn connected(&mut self, key: SessionKey<P>, report: &P::Connected);
    /// Logs the end and forgets the session (its watches, its name).
    fn closed(
        &mut self,
        store: Option<&mut Xenstore>,
        key: SessionKey<P>,
        reason: &CloseReason<P>,
        unmapped_pages: usize,
    );
}

/// Carries out actions for protocol glue `G`.
pub struct Executor<'a, P: Protocol, G> {
    pub pmap: PmapHandle,
    /// `None` while xenstore is unusable (at shutdown without it): writes are skipped.
    pub store: Option<&'a mut Xenstore>,
    /// The sessions' node reads and writes in flight (recorded here; their replies are handed
    /// back as they arrive).
    pub pending: &'a mut PendingRequests<SessionKey<P>>,
    /// The sessions' transactional writes in flight.
    pub transactions: &'a mut Transactions<P>,
    pub glue: &'a mut G,
}

/// The status a session is told for a refused mapping: Xen's own where there is one.
fn map_status(error: &GrantMapError) -> i32 {
    match error {
        GrantMapError::Grant { status, .. } => i32::from(status.to_raw()),
        GrantMapError::Hypercall { error, .. } => i32::try_from(error.0).unwrap_or(GENERAL_ERROR),
        _ => GENERAL_ERROR,
    }
}

/// The liveness check's view of our port's status (`EVTCHNOP_status`, no privilege needed).
pub fn port_state(port: EvtchnPort) -> PortState {
    match event_channel::port_status(port) {
        Ok(PortStatus::Interdomain { remote, .. }) => PortState::Interdomain { remote },
        Ok(_) => PortState::NotInterdomain,
        Err(error) => {
            log::warn!("liveness: status of port {port}: {error}");
            PortState::Unknown
        }
    }
}

impl<P: Protocol, G: ProtocolGlue<P>> Effects<P, Region> for Executor<'_, P, G> {
    fn map(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        refs: &[GrantRef],
        writable: bool,
        purpose: P::MapPurpose,
    ) -> Result<Region, i32> {
        let region = GrantMapping::map(self.pmap, peer, refs, !writable).map_err(|error| {
            log::warn!(
                "{}: session {key}: mapping the {purpose} ({} ref(s)) of domain {peer}: {error}",
                P::NAME,
                refs.len()
            );
            map_status(&error)
        })?;
        self.glue
            .mapped(key, purpose, region.size() / PAGE_SIZE, region.start());
        Ok(region)
    }

    fn unmap(&mut self, key: SessionKey<P>, purpose: P::MapPurpose, region: Region) -> usize {
        let pages = region.size() / PAGE_SIZE;
        let start = region.start();
        match region.unmap() {
            Ok(()) => {
                self.glue.unmapped(key, purpose, pages, start);
                pages
            }
            Err(error) => {
                log::error!(
                    "{}: session {key}: unmapping the {purpose} ({pages} page(s) at {start}) failed: {error}",
                    P::NAME
                );
                0
            }
        }
    }

    fn bind(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        remote_port: RemotePort,
    ) -> Result<EvtchnPort, i32> {
        // The decoder checked the port's range; Xen would refuse one beyond it the same way.
        let port = EvtchnPort::new(remote_port.0)
            .ok_or(XenError::EINVAL)
            .and_then(|remote_port| event_channel::bind_interdomain(peer, remote_port))
            .map_err(|error| {
                log::warn!(
                    "{}: session {key}: binding port {remote_port} of domain {peer}: {error}",
                    P::NAME
                );
                i32::try_from(error.0).unwrap_or(GENERAL_ERROR)
            })?;
        // A fresh port may keep the mask of an earlier one with its number.
        if let Err(error) = event_channel::unmask(port) {
            log::warn!("{}: session {key}: unmasking port {port}: {error}", P::NAME);
        }
        Ok(port)
    }

    fn notify(&mut self, key: SessionKey<P>, port: EvtchnPort) {
        if let Err(error) = event_channel::send(port) {
            log::debug!("{}: session {key}: notifying port {port}: {error}", P::NAME);
        }
    }

    fn close_port(&mut self, key: SessionKey<P>, port: EvtchnPort) {
        if let Err(error) = event_channel::close(port) {
            log::warn!("{}: session {key}: closing port {port}: {error}", P::NAME);
        }
    }

    fn read_peer_nodes(
        &mut self,
        key: SessionKey<P>,
        names: &'static [&'static str],
    ) -> Option<OwnedNodes> {
        let directory = self.glue.peer_directory(key);
        let Some(store) = self.store.as_deref_mut() else {
            return Some(names.iter().map(|name| (*name, None)).collect());
        };
        // One request per node, all in flight together; the answer comes when the last
        // reply does (a node that cannot be read reads as absent).
        let ids: Vec<_> = names
            .iter()
            .map(|name| {
                let path = alloc::format!("{directory}/{name}");
                store
                    .submit(NONE, &Operation::Read { path: &path })
                    .inspect_err(|error| {
                        log::warn!("{}: session {key}: reading {path}: {error}", P::NAME);
                    })
                    .ok()
            })
            .collect();
        self.pending.start_read(key, names, &ids)
    }

    fn write_nodes(&mut self, key: SessionKey<P>, nodes: Vec<(&'static str, String)>) {
        let Some(directory) = self.glue.own_directory(key) else {
            return;
        };
        let Some(store) = self.store.as_deref_mut() else {
            log::warn!(
                "{}: session {key}: no xenstore to write {} node(s)",
                P::NAME,
                nodes.len()
            );
            return;
        };
        // In flight together; xenstored applies one connection's requests in order.
        for (name, value) in nodes {
            let path = alloc::format!("{directory}/{name}");
            let operation = Operation::Write {
                path: &path,
                value: value.as_bytes(),
            };
            match store.submit(NONE, &operation) {
                Ok(id) => self.pending.track_write(id, key, name),
                Err(error) => log::warn!("{}: session {key}: writing {path}: {error}", P::NAME),
            }
        }
    }

    fn remove_nodes(&mut self, key: SessionKey<P>, names: Vec<&'static str>) {
        let (Some(directory), Some(store)) =
            (self.glue.own_directory(key), self.store.as_deref_mut())
        else {
            return;
        };
        // Before the writes queued after them; nobody waits for the answers (a node that is
        // not there is as good as removed).
        for name in names {
            let path = alloc::format!("{directory}/{name}");
            match store.submit(NONE, &Operation::Remove { path: &path }) {
                Ok(id) => store.abandon(id),
                Err(error) => log::warn!("{}: session {key}: removing {path}: {error}", P::NAME),
            }
        }
    }

    fn write_nodes_in_transaction(
        &mut self,
        key: SessionKey<P>,
        nodes: Vec<(&'static str, String)>,
        then: Vec<PeerAction<P, Region>>,
    ) -> InTransaction<Vec<PeerAction<P, Region>>> {
        let Some(directory) = self.glue.own_directory(key) else {
            return InTransaction::Failed;
        };
        let Some(store) = self.store.as_deref_mut() else {
            log::warn!(
                "{}: session {key}: no xenstore to write {} node(s)",
                P::NAME,
                nodes.len()
            );
            return InTransaction::Failed;
        };
        let count = nodes.len();
        let paths = nodes
            .into_iter()
            .map(|(name, value)| (alloc::format!("{directory}/{name}"), value))
            .collect();
        // In flight: the session waits, others are served; `Sessions::on_replies` resumes it.
        match self.transactions.start(store, key, paths, then) {
            Ok(()) => InTransaction::InFlight,
            Err((_, reason)) => {
                log::warn!(
                    "{}: session {key}: writing {count} node(s) in a transaction: {reason}",
                    P::NAME
                );
                InTransaction::Failed
            }
        }
    }

    fn connected(&mut self, key: SessionKey<P>, report: &P::Connected) {
        self.glue.connected(key, report);
    }

    fn closed(&mut self, key: SessionKey<P>, reason: &CloseReason<P>, unmapped_pages: usize) {
        // Replies still to come for the ended session mean nothing now.
        let ids = self.pending.forget(key);
        if let Some(store) = self.store.as_deref_mut() {
            for id in ids {
                store.abandon(id);
            }
            // What it kept for after its transaction goes with it (regions unmap on drop).
            drop(self.transactions.forget(store, key));
        }
        self.glue
            .closed(self.store.as_deref_mut(), key, reason, unmapped_pages);
    }
}
