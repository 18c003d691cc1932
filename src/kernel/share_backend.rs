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

use super::peer_executor::{PmapHandle, ProtocolGlue, Region};
use super::peer_sessions::{nothing_after_event, Sessions};
use super::peer_watches::PeerWatches;
use super::store_connection::{WatchOwner, Xenstore};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use grantsvc::addr::VirtAddr;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::ids::DomId;
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::device_id::DeviceId;
use grantsvc::peer::root_scan::{devices_to_look_up, RootScan};
use grantsvc::peer::share::nodes::{self, backend, frontend};
use grantsvc::peer::share::protocol::{ShareMapping, ShareProtocol};
use grantsvc::peer::share::registry::ShareKey;
use grantsvc::peer::share::session::{CloseReason, ShareSession, Verification};
use grantsvc::peer::store_limit::StoreRefusal;
use grantsvc::peer::store_requests::{read_value, take_arrived};
use grantsvc::peer::xenbus_state::XenbusState;
use litemap::LiteMap;
use xenstore::{Operation, RequestId, TransactionId};

/// Watch owners of this module (the service routes their events here).
pub const ROOT_OWNER: WatchOwner = 0x5348_0001;
pub const FRONTEND_OWNER: WatchOwner = 0x5348_0002;
const ROOT_TOKEN: &str = "grantsvc-share-root";
const NONE: TransactionId = TransactionId::NONE;

/// What grant-share adds when its actions are carried out: directories, watches, log lines.
struct ShareGlue {
    own: DomId,
    /// Each session's watch on its frontend's `state`.
    watches: PeerWatches<ShareKey>,
    /// Where each session's pages are mapped, for its log lines.
    mapped_at: LiteMap<ShareKey, VirtAddr>,
}

/// A request of the backend's own in flight (besides its sessions' node reads and writes).
#[derive(Clone, Copy)]
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

/// What the request was, for the log line of its failure (no derived Debug: its struct
/// printers are kernel image bytes, issue 10).
impl fmt::Display for Lookup {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lookup::BackendState { peer, device, .. } => write!(
                formatter,
                "peer domain {peer} device {device}: reading its backend state"
            ),
            Lookup::FrontendState(key) => {
                write!(formatter, "session {key}: reading its frontend state")
            }
            Lookup::FrontendWatch(key) => {
                write!(formatter, "session {key}: watching its frontend state")
            }
        }
    }
}

/// The grant-share backend, owned by the service.
pub struct ShareBackend {
    /// The scans of the backend root, in flight while the loop goes on.
    scan: RootScan<DeviceId>,
    sessions: Sessions<ShareSession<Region>, ShareGlue>,
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
        let glue = ShareGlue {
            own,
            watches: PeerWatches::new(FRONTEND_OWNER),
            mapped_at: LiteMap::new(),
        };
        Some(ShareBackend {
            scan: RootScan::new(&root, nodes::device_of_backend_path),
            sessions: Sessions::new(glue, nothing_after_event),
            lookups: LiteMap::new(),
        })
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions ended for a fault of the frontend's, since boot.
    pub fn faults(&self) -> u64 {
        self.sessions.faults()
    }

    /// Sessions with a bound port (what the liveness check looks at).
    pub fn bound_sessions(&self) -> usize {
        self.sessions.bound()
    }

    /// Handles one watch event of ours.
    pub fn on_watch_event(
        &mut self,
        store: &mut Xenstore,
        owner: WatchOwner,
        path: &str,
        token: &str,
    ) {
        match owner {
            ROOT_OWNER => self.on_root_event(store, path),
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
        self.sessions
            .on_ports(Some(store), pmap, ready, core::iter::empty(), counters);
    }

    /// The liveness check: ends the sessions whose port's remote end is no longer their
    /// frontend's (the domain died, or closed the channel).
    pub fn check_liveness(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        self.sessions.check_liveness(Some(store), pmap, counters);
    }

    /// Ends every session (grantsvc is shutting down), unmapping first; returns how many ended.
    pub fn close_all(
        &mut self,
        store: Option<&mut Xenstore>,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) -> usize {
        self.sessions.close_all(store, pmap, counters)
    }

    /// A node changed below the root: a device appeared, changed or went.
    fn on_root_event(&mut self, store: &mut Xenstore, path: &str) {
        let root = String::from(self.scan.root());
        match nodes::device_of_backend_path(&root, path) {
            Some((peer, device)) => self.consider_device(store, peer, device),
            // The root or a frontend's folder: look at every device below it (the scan's
            // answer comes in `on_replies`).
            None if path == root || path.starts_with(&format!("{root}/")) => {
                self.scan.request(store)
            }
            None => {}
        }
    }

    /// Looks up a device's backend `state` (the answer comes in [`ShareBackend::on_replies`]).
    fn consider_device(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId) {
        let directory = nodes::backend_path(self.sessions.glue.own, peer, device);
        let path = format!("{directory}/{}", backend::STATE);
        let session = self.sessions.registry().find(peer, device);
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
        match (self.sessions.registry().find(peer, device), state) {
            (Some(key), None) => {
                self.sessions
                    .deliver(Some(store), pmap, key, PeerEvent::OwnNodesRemoved, counters);
            }
            // New, or re-created by the toolstack before we saw it go: `replace` ends an
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
        let (session, actions) = ShareSession::new(peer, device);
        let Some(key) = self
            .sessions
            .replace(Some(&mut *store), pmap, session, actions, counters)
        else {
            return;
        };
        log::info!("grant-share: peer domain {peer} device {device}: new device, session {key}");
        let token = format!(
            "grantsvc-share-{}-{}-{}",
            key.peer, key.device, key.generation
        );
        let path = format!("{}/{}", nodes::frontend_path(peer, device), frontend::STATE);
        match self.sessions.glue.watches.watch(store, key, &path, token) {
            Ok(id) => {
                self.lookups.insert(id, Lookup::FrontendWatch(key));
            }
            Err(error) => {
                log::warn!("grant-share: peer domain {peer} device {device}: watching {path}: {error}; session ended");
                let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::watch(None));
                self.sessions
                    .deliver(Some(store), pmap, key, event, counters);
            }
        }
    }

    /// The frontend's `state` changed (or went): look it up.
    fn on_frontend_event(&mut self, store: &mut Xenstore, token: &str) {
        let Some(key) = self.sessions.glue.watches.session_of(token) else {
            return;
        };
        if self.sessions.registry().session(key).is_none() {
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

    /// True when a reply the backend waits for has arrived (work for the run loop).
    pub fn has_replies(&self, store: &Xenstore) -> bool {
        self.scan.has_replies(store)
            || self.lookups.keys().any(|id| store.has_reply(*id))
            || self.sessions.has_replies(store)
    }

    /// Takes the replies that arrived for the backend and its sessions, and acts on them.
    pub fn on_replies(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        for present in self.scan.take_replies(store) {
            let live = self
                .sessions
                .registry()
                .keys()
                .map(|key| (key.peer, key.device));
            for (peer, device) in devices_to_look_up(present, live) {
                self.consider_device(store, peer, device);
            }
        }
        let ids: Vec<RequestId> = self.lookups.keys().copied().collect();
        for (id, result) in take_arrived(store, &ids) {
            let Some(lookup) = self.lookups.remove(&id) else {
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
                self.sessions
                    .deliver(Some(store), pmap, key, event, counters);
                continue;
            }
            let value = match read_value(result) {
                Ok(value) => value,
                Err(error) => {
                    if !matches!(lookup, Lookup::FrontendWatch(_)) {
                        log::warn!("grant-share: {lookup}: {error}");
                    }
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
                    if self.sessions.registry().find(peer, device) == session {
                        self.backend_state_known(store, pmap, peer, device, value, counters)
                    }
                }
                Lookup::FrontendState(key) => {
                    if self.sessions.registry().session(key).is_some() {
                        let state = value.as_deref();
                        self.sessions
                            .peer_state_read(Some(store), pmap, key, state, counters);
                    }
                }
                Lookup::FrontendWatch(_) => {}
            }
        }
        self.sessions.on_replies(store, pmap, counters);
    }
}

impl ProtocolGlue<ShareProtocol> for ShareGlue {
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
        self.watches.unwatch(store, key);
    }
}
