//! The one place where peer sessions' actions meet Xen and xenstore: grant maps and unmaps through the service's pmap handle, event channels, node reads and writes, for every protocol.
//!
//! The framework's executor loop (`grantsvc::peer::driver`) calls [`Executor`] through
//! `Effects`; a protocol adds only what differs (its directories and its report lines) through
//! [`ProtocolGlue`]. What needs nothing of the protocol is in `peer_effects`, once for all
//! protocols. Nothing here takes a lock but the pmap's, for the length of one map or unmap,
//! and nothing calls back up into the service.
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::peer_effects::{self, SessionName};
use super::store_connection::Xenstore;
use super::xen::event_channel::{self, PortStatus};
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::peer::action::{CloseReason, PeerAction};
use grantsvc::peer::driver::{Effects, InTransaction, OwnedNodes};
use grantsvc::peer::key::SessionKey;
use grantsvc::peer::liveness::PortState;
use grantsvc::peer::pending::PendingRequests;
use grantsvc::peer::protocol::Protocol;
use grantsvc::peer::transaction_write::TransactionWrites;
use grantsvc::peer::value::RemotePort;
use grantsvc::shared_memory::SharedMemory;

/// The pmap handle the service owns and lends to the executor.
pub use super::address_space::PmapHandle;
/// A peer's pages as sessions hold them.
pub use super::peer_effects::Region;

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

impl<P: Protocol, G: ProtocolGlue<P>> Executor<'_, P, G> {
    /// The session's name for log lines.
    fn name<'k>(key: &'k SessionKey<P>) -> SessionName<'k> {
        SessionName {
            protocol: P::NAME,
            key,
        }
    }
}

// Thin: each method hands plain data to `peer_effects`, whose code the protocols share.
impl<P: Protocol, G: ProtocolGlue<P>> Effects<P, Region> for Executor<'_, P, G> {
    fn map(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        refs: &[GrantRef],
        writable: bool,
        purpose: P::MapPurpose,
    ) -> Result<Region, i32> {
        let region =
            peer_effects::map(self.pmap, Self::name(&key), peer, refs, writable, &purpose)?;
        self.glue
            .mapped(key, purpose, region.size() / PAGE_SIZE, region.start());
        Ok(region)
    }

    fn unmap(&mut self, key: SessionKey<P>, purpose: P::MapPurpose, region: Region) -> usize {
        match peer_effects::unmap(Self::name(&key), &purpose, region) {
            Some((pages, start)) => {
                self.glue.unmapped(key, purpose, pages, start);
                pages
            }
            None => 0,
        }
    }

    fn bind(
        &mut self,
        key: SessionKey<P>,
        peer: DomId,
        remote_port: RemotePort,
    ) -> Result<EvtchnPort, i32> {
        peer_effects::bind(Self::name(&key), peer, remote_port)
    }

    fn notify(&mut self, key: SessionKey<P>, port: EvtchnPort) {
        peer_effects::notify(Self::name(&key), port);
    }

    fn close_port(&mut self, key: SessionKey<P>, port: EvtchnPort) {
        peer_effects::close_port(Self::name(&key), port);
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
        let ids = peer_effects::submit_reads(store, Self::name(&key), &directory, names);
        self.pending.start_read(key, names, &ids)
    }

    fn write_nodes(&mut self, key: SessionKey<P>, nodes: Vec<(&'static str, String)>) {
        let Some(directory) = self.glue.own_directory(key) else {
            return;
        };
        let Some(store) = self.store.as_deref_mut() else {
            peer_effects::no_store(Self::name(&key), nodes.len());
            return;
        };
        for (id, name) in peer_effects::submit_writes(store, Self::name(&key), &directory, nodes) {
            self.pending.track_write(id, key, name);
        }
    }

    fn remove_nodes(&mut self, key: SessionKey<P>, names: Vec<&'static str>) {
        let (Some(directory), Some(store)) =
            (self.glue.own_directory(key), self.store.as_deref_mut())
        else {
            return;
        };
        // Before the writes queued after them.
        peer_effects::remove(store, Self::name(&key), &directory, names);
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
            peer_effects::no_store(Self::name(&key), nodes.len());
            return InTransaction::Failed;
        };
        let count = nodes.len();
        let paths = peer_effects::paths(&directory, nodes);
        // In flight: the session waits, others are served; `Sessions::on_replies` resumes it.
        match self.transactions.start(store, key, paths, then) {
            Ok(()) => InTransaction::InFlight,
            Err((_, reason)) => {
                log::warn!(
                    "{}: writing {count} node(s) in a transaction: {reason}",
                    Self::name(&key)
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
