//! grant-share served in the kernel: the backend-root watch, one framework session per device, and the protocol's own directories and log lines.
//!
//! The protocol and its validation live host-side in `grantsvc::peer::share`, the executor
//! loop in `grantsvc::peer::driver`, and the grant and event-channel work in
//! [`super::peer_executor`]; this module only finds devices and routes their events:
//! - a new device is one whose backend `state` the toolstack left at Initialising (1): after
//!   grantsvc's own writes it never is again, so our writes re-firing the root watch open
//!   nothing;
//! - each session watches its frontend's `state` node; a node gone or unreadable is the
//!   frontend removing its nodes, or, when the frontend's end of our event channel is gone
//!   too, its death;
//! - a dead frontend whose nodes stay is found by the service's liveness check (the status of
//!   our port, whose remote end Xen closes when the domain dies), with or without
//!   `@releaseDomain`.
//!
//! Every peer-driven failure ends that session with a log line naming the peer; nothing here
//! panics, and a grant region leaves only through an unmap whose result is checked.
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::peer_executor::{port_state, Executor, PmapHandle, ProtocolGlue, Region};
use super::store_connection::{WatchOwner, Xenstore};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::VirtAddr;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::ids::DomId;
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::device_id::DeviceId;
use grantsvc::peer::driver;
use grantsvc::peer::liveness::peer_lost;
use grantsvc::peer::pending::{Answered, PendingRequests};
use grantsvc::peer::share::nodes::{self, backend, frontend};
use grantsvc::peer::share::protocol::{ShareMapping, ShareProtocol};
use grantsvc::peer::share::registry::{open_device, ShareKey, ShareRegistry};
use grantsvc::peer::share::session::{CloseReason, ShareEvent, Verification};
use grantsvc::peer::store_limit::StoreRefusal;
use grantsvc::peer::xenbus_state::XenbusState;
use litemap::LiteMap;
use xenstore::{Operation, Reply, ReplyError, RequestId, TransactionId, XsError};

/// Watch owners of this module (the service routes their events here).
pub const ROOT_OWNER: WatchOwner = 0x5348_0001;
pub const FRONTEND_OWNER: WatchOwner = 0x5348_0002;
const ROOT_TOKEN: &str = "grantsvc-share-root";
const NONE: TransactionId = TransactionId::NONE;

/// What grant-share adds when its actions are carried out: directories, watches, log lines.
struct ShareGlue {
    own: DomId,
    /// Frontend `state` watch tokens, and the session each belongs to.
    watches: LiteMap<String, ShareKey>,
    /// The sessions' node reads and writes in flight.
    pending: PendingRequests<ShareKey>,
    /// Where each session's pages are mapped, for its log lines.
    mapped_at: LiteMap<ShareKey, VirtAddr>,
}

/// A request of the backend's own in flight (besides its sessions' node reads and writes).
#[derive(Clone, Copy, Debug)]
enum Lookup {
    /// A device's backend `state`: is it new, or gone? `session` is the device's session
    /// when the read was sent: xenstored answers in order, so a read sent before a newer
    /// session was opened predates that session's own writes and says nothing about it.
    BackendState {
        peer: DomId,
        device: DeviceId,
        session: Option<ShareKey>,
    },
    /// A session's frontend `state`, after its watch fired.
    FrontendState(ShareKey),
    /// The acknowledgement of a session's frontend watch.
    FrontendWatch(ShareKey),
}

/// The grant-share backend, owned by the service.
pub struct ShareBackend {
    root: String,
    registry: ShareRegistry<Region>,
    glue: ShareGlue,
    /// Lookups in flight, by request id: nothing waits for them.
    lookups: LiteMap<RequestId, Lookup>,
}

/// True for the watch owners whose events [`ShareBackend::on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    matches!(owner, ROOT_OWNER | FRONTEND_OWNER)
}

impl ShareBackend {
    /// Starts serving: watches `<home>/backend/grantsvc-share`. Devices that already exist
    /// are found when the root watch first fires.
    pub fn start(store: &mut Xenstore, own: DomId, home: &str) -> Option<ShareBackend> {
        let root = nodes::backend_root(home);
        if let Err(error) = store.watch(&root, ROOT_TOKEN, ROOT_OWNER) {
            log::error!("grant-share: watching {root}: {error}; grant-share is not served");
            return None;
        }
        log::info!("grant-share: serving devices under {root}");
        Some(ShareBackend {
            root,
            registry: ShareRegistry::default(),
            glue: ShareGlue {
                own,
                watches: LiteMap::new(),
                pending: PendingRequests::default(),
                mapped_at: LiteMap::new(),
            },
            lookups: LiteMap::new(),
        })
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.registry.len()
    }

    /// Sessions ended for a fault of the frontend's, since boot.
    pub fn faults(&self) -> u64 {
        self.registry.faults()
    }

    /// Sessions with a bound port (what the liveness check looks at).
    pub fn bound_sessions(&self) -> usize {
        self.registry.ports().count()
    }

    /// Hands `event` to session `key` and carries out what it asks.
    fn deliver(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        key: ShareKey,
        event: ShareEvent<'_, Region>,
        counters: &ServiceCounters,
    ) {
        let mut executor = Executor {
            pmap,
            store,
            glue: &mut self.glue,
        };
        driver::deliver(&mut self.registry, key, event, &mut executor, counters);
    }

    /// Handles one watch event of ours.
    pub fn on_watch_event(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        owner: WatchOwner,
        path: &str,
        token: &str,
        counters: &ServiceCounters,
    ) {
        match owner {
            ROOT_OWNER => self.on_root_event(store, pmap, path, counters),
            FRONTEND_OWNER => self.on_frontend_event(store, token),
            _ => {}
        }
    }

    /// Hands fired ports to their sessions.
    pub fn on_ports(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        ready: &ReadySnapshot,
        counters: &ServiceCounters,
    ) {
        for port in ready.ports() {
            if let Some(key) = self.registry.key_for_port(port) {
                self.deliver(Some(store), pmap, key, PeerEvent::EventChannel, counters);
            }
        }
    }

    /// The liveness check: ends the sessions whose port's remote end is no longer their
    /// frontend's (the domain died, or closed the channel).
    pub fn check_liveness(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        let lost: Vec<ShareKey> = self
            .registry
            .ports()
            .filter(|(key, port)| peer_lost(key.peer, port_state(*port)))
            .map(|(key, _)| key)
            .collect();
        for key in lost {
            log::info!(
                "grant-share: peer domain {} device {}: its end of our event channel is gone",
                key.peer,
                key.device
            );
            self.deliver(Some(store), pmap, key, PeerEvent::DomainDied, counters);
        }
    }

    /// Ends every session (grantsvc is shutting down), unmapping first; returns how many ended.
    pub fn close_all(
        &mut self,
        mut store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) -> usize {
        let all = self.registry.shutdown(counters);
        let closed = all.len();
        for (key, actions) in all {
            let mut executor = Executor {
                pmap,
                store: store.as_deref_mut(),
                glue: &mut self.glue,
            };
            driver::drive(&mut self.registry, key, actions, &mut executor, counters);
        }
        closed
    }

    /// A node changed below the root: a device appeared, changed or went.
    fn on_root_event(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        path: &str,
        counters: &ServiceCounters,
    ) {
        match nodes::device_of_backend_path(&self.root, path) {
            Some((peer, device)) => self.consider_device(store, peer, device),
            // The root or a frontend's folder: look at every device below it.
            None if path == self.root || path.starts_with(&format!("{}/", self.root)) => {
                self.scan(store, pmap, counters)
            }
            None => {}
        }
    }

    /// Looks at every device under the root.
    fn scan(&mut self, store: &mut Xenstore, pmap: PmapHandle, counters: &ServiceCounters) {
        let frontends = match store.directory(NONE, &self.root) {
            Ok(names) => names,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => {
                log::warn!("grant-share: listing {}: {error}", self.root);
                return;
            }
        };
        let mut present = LiteMap::new_vec();
        for frontend_name in frontends {
            let folder = format!("{}/{frontend_name}", self.root);
            let Ok(devices) = store.directory(NONE, &folder) else {
                continue;
            };
            for device_name in devices {
                let path = format!("{folder}/{device_name}");
                if let Some(device) = nodes::device_of_backend_path(&self.root, &path) {
                    present.insert(device, ());
                }
            }
        }
        // Sessions whose backend directory went with a whole frontend folder.
        let gone: Vec<ShareKey> = self
            .registry
            .keys()
            .filter(|key| !present.contains_key(&(key.peer, key.device)))
            .collect();
        for key in gone {
            self.deliver(Some(store), pmap, key, PeerEvent::OwnNodesRemoved, counters);
        }
        for ((peer, device), ()) in present {
            self.consider_device(store, peer, device);
        }
    }

    /// Looks up a device's backend `state` (the answer comes in [`ShareBackend::on_replies`]).
    fn consider_device(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId) {
        let directory = nodes::backend_path(self.glue.own, peer, device);
        let path = format!("{directory}/{}", backend::STATE);
        let session = self.registry.find(peer, device);
        match store.submit(NONE, &Operation::Read { path: &path }) {
            Ok(id) => {
                let lookup = Lookup::BackendState {
                    peer,
                    device,
                    session,
                };
                self.lookups.insert(id, lookup);
            }
            Err(error) => log::warn!("grant-share: reading {path}: {error}"),
        }
    }

    /// Opens a session for a device the toolstack just created, or ends one whose backend
    /// directory is gone (`state` is the backend's `state` node, `None` if it is gone).
    fn backend_state_known(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        peer: DomId,
        device: DeviceId,
        state: Option<Vec<u8>>,
        counters: &ServiceCounters,
    ) {
        match (self.registry.find(peer, device), state) {
            (Some(key), None) => {
                self.deliver(Some(store), pmap, key, PeerEvent::OwnNodesRemoved, counters);
            }
            // New, or re-created by the toolstack before we saw it go: `open_device` ends an
            // old session of the device first.
            (_, Some(state))
                if state.as_slice() == XenbusState::Initialising.as_str().as_bytes() =>
            {
                self.open(store, pmap, peer, device, counters)
            }
            _ => {}
        }
    }

    fn open(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        peer: DomId,
        device: DeviceId,
        counters: &ServiceCounters,
    ) {
        let opened = open_device(&mut self.registry, peer, device);
        let mut new_key = None;
        for (key, actions) in opened {
            new_key = Some(key);
            let mut executor = Executor {
                pmap,
                store: Some(&mut *store),
                glue: &mut self.glue,
            };
            driver::drive(&mut self.registry, key, actions, &mut executor, counters);
        }
        let Some(key) = new_key else {
            return;
        };
        log::info!("grant-share: peer domain {peer} device {device}: new device, session {key}");
        let token = format!(
            "grantsvc-share-{}-{}-{}",
            key.peer, key.device, key.generation
        );
        let path = format!("{}/{}", nodes::frontend_path(peer, device), frontend::STATE);
        match store.submit_watch(&path, &token, FRONTEND_OWNER) {
            Ok(id) => {
                self.glue.watches.insert(token, key);
                self.lookups.insert(id, Lookup::FrontendWatch(key));
            }
            Err(error) => {
                log::warn!("grant-share: peer domain {peer} device {device}: watching {path}: {error}; session ended");
                let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::watch(None));
                self.deliver(Some(store), pmap, key, event, counters);
            }
        }
    }

    /// The frontend's `state` changed (or went): look it up.
    fn on_frontend_event(&mut self, store: &mut Xenstore, token: &str) {
        let Some(&key) = self.glue.watches.get(token) else {
            return;
        };
        if self.registry.session(key).is_none() {
            return;
        }
        let path = format!(
            "{}/{}",
            nodes::frontend_path(key.peer, key.device),
            frontend::STATE
        );
        match store.submit(NONE, &Operation::Read { path: &path }) {
            Ok(id) => {
                self.lookups.insert(id, Lookup::FrontendState(key));
            }
            Err(error) => log::warn!("grant-share: session {key}: reading {path}: {error}"),
        }
    }

    /// The frontend's `state` as read (`None`: gone or unreadable).
    fn frontend_state_known(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        key: ShareKey,
        state: Option<Vec<u8>>,
        counters: &ServiceCounters,
    ) {
        match state {
            Some(value) => self.deliver(
                Some(store),
                pmap,
                key,
                PeerEvent::PeerState(&value),
                counters,
            ),
            None => {
                let lost = self
                    .registry
                    .ports()
                    .any(|(live, port)| live == key && peer_lost(key.peer, port_state(port)));
                let event = if lost {
                    PeerEvent::DomainDied
                } else {
                    PeerEvent::PeerNodesRemoved
                };
                self.deliver(Some(store), pmap, key, event, counters);
            }
        }
    }

    /// True when a reply the backend waits for has arrived (work for the run loop).
    pub fn has_replies(&self, store: &Xenstore) -> bool {
        self.lookups.keys().any(|id| store.has_reply(*id))
            || self
                .glue
                .pending
                .ids()
                .into_iter()
                .any(|id| store.has_reply(id))
    }

    /// Takes the replies that arrived for the backend and its sessions, and acts on them.
    pub fn on_replies(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        let lookups: Vec<(RequestId, Lookup)> = self
            .lookups
            .iter()
            .filter(|(id, _)| store.has_reply(**id))
            .map(|(id, lookup)| (*id, *lookup))
            .collect();
        for (id, lookup) in lookups {
            self.lookups.remove(&id);
            let Some(result) = store.take_reply(id) else {
                continue;
            };
            if let (Lookup::FrontendWatch(key), Err(error)) = (lookup, &result) {
                log::warn!(
                    "grant-share: peer domain {} device {}: watching its frontend state: {error}; session ended",
                    key.peer,
                    key.device
                );
                // Past xenstored's watch quota (E2BIG): refused with a reason the frontend reads.
                let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::watch(Some(*error)));
                self.deliver(Some(store), pmap, key, event, counters);
                continue;
            }
            let value = match result {
                Ok(Reply::Value(value)) => Some(value),
                Ok(_) => None,
                Err(ReplyError::Xenstore(XsError::NotFound)) => None,
                Err(error) => {
                    log::warn!("grant-share: {lookup:?}: {error}");
                    None
                }
            };
            match lookup {
                Lookup::BackendState {
                    peer,
                    device,
                    session,
                } => {
                    // Stale when a session was opened for the device after the read was sent.
                    if self.registry.find(peer, device) == session {
                        self.backend_state_known(store, pmap, peer, device, value, counters)
                    }
                }
                Lookup::FrontendState(key) => {
                    if self.registry.session(key).is_some() {
                        self.frontend_state_known(store, pmap, key, value, counters);
                    }
                }
                Lookup::FrontendWatch(_) => {}
            }
        }
        for id in self.glue.pending.ids() {
            if !store.has_reply(id) {
                continue;
            }
            let Some(result) = store.take_reply(id) else {
                continue;
            };
            match self.glue.pending.answer(id, result) {
                Answered::NodesRead { key, nodes } => {
                    let read: Vec<(&'static str, Option<&[u8]>)> = nodes
                        .iter()
                        .map(|(name, value)| (*name, value.as_deref()))
                        .collect();
                    self.deliver(
                        Some(store),
                        pmap,
                        key,
                        PeerEvent::PeerNodesRead(&read),
                        counters,
                    );
                }
                Answered::WriteFailed { key, node, error } => {
                    log::warn!(
                        "grant-share: peer domain {} device {}: writing {node} failed: {error}",
                        key.peer,
                        key.device
                    );
                    let refusal = StoreRefusal::write(node, error);
                    let event = PeerEvent::OwnNodesNotWritten(refusal);
                    self.deliver(Some(store), pmap, key, event, counters);
                }
                Answered::WritesAcknowledged { key } => {
                    let event = PeerEvent::OwnNodesWritten;
                    self.deliver(Some(store), pmap, key, event, counters);
                }
                Answered::Nothing => {}
            }
        }
    }
}

impl ProtocolGlue<ShareProtocol> for ShareGlue {
    fn pending(&mut self) -> &mut PendingRequests<ShareKey> {
        &mut self.pending
    }

    fn own_directory(&self, key: ShareKey) -> Option<String> {
        Some(nodes::backend_path(self.own, key.peer, key.device))
    }

    fn peer_directory(&self, key: ShareKey) -> String {
        nodes::frontend_path(key.peer, key.device)
    }

    fn mapped(&mut self, key: ShareKey, _: ShareMapping, _: usize, start: VirtAddr) {
        self.mapped_at.insert(key, start);
    }

    fn unmapped(&mut self, key: ShareKey, _: ShareMapping, pages: usize, start: VirtAddr) {
        log::info!(
            "grant-share: peer domain {} device {}: unmapped {pages} page(s) at {start}, every unmap status okay",
            key.peer,
            key.device
        );
    }

    fn connected(&mut self, key: ShareKey, verification: &Verification) {
        let start = self
            .mapped_at
            .get(&key)
            .map_or_else(|| String::from("?"), |start| format!("{start}"));
        log::info!(
            "grant-share: peer domain {} device {} connected: {} page(s) mapped at {start}, pattern {}, digest {:08x}, {}",
            key.peer,
            key.device,
            verification.pages,
            verification.pattern_value(),
            verification.digest,
            if verification.answered {
                "answer written"
            } else {
                "no answer written"
            }
        );
    }

    fn closed(
        &mut self,
        store: Option<&mut Xenstore>,
        key: ShareKey,
        reason: &CloseReason,
        _unmapped_pages: usize,
    ) {
        self.mapped_at.remove(&key);
        match reason {
            CloseReason::Fault(fault) => log::warn!("grant-share: fault: {fault}"),
            CloseReason::Protocol(_) => {
                log::error!("grant-share: {key}: {reason}; session ended");
            }
            _ => log::info!(
                "grant-share: peer domain {} device {} closed: {reason}; nothing of it stays mapped",
                key.peer,
                key.device
            ),
        }
        let token = self
            .watches
            .iter()
            .find(|(_, watched)| **watched == key)
            .map(|(token, _)| token.clone());
        if let Some(token) = token {
            self.watches.remove(&token);
            if let Some(store) = store {
                if let Err(error) = store.unwatch_later(&token) {
                    log::debug!("grant-share: {key}: removing watch {token}: {error}");
                }
            }
        }
    }
}
