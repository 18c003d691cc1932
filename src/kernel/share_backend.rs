//! grant-share served in the kernel: the backend-root and `@releaseDomain` watches, one `ShareRegistry` session per device, and its actions carried out against Xen and xenstore.
//!
//! The protocol and its validation live host-side in `grantsvc::share`; this module only does
//! what a session asks, in order, and feeds the results back:
//! - a new device is one whose backend `state` the toolstack left at Initialising (1): after
//!   grantsvc's own writes it never is again, so our writes re-firing the root watch open
//!   nothing;
//! - each session watches its frontend's `state` node; a node gone or unreadable is the
//!   frontend removing its nodes, or, when the frontend's end of our event channel is gone
//!   too, its death;
//! - `@releaseDomain` fires after a domain died; Xen closed every port of the dead domain
//!   before it (`evtchn_destroy` runs in `domain_kill` before `VIRQ_DOM_EXC` reaches
//!   xenstored), so a session whose port is no longer bound to its frontend has lost it. This
//!   needs no privilege, unlike asking Xen for the domain, and stays true while Xen keeps the
//!   dying domain's pages for our mappings.
//!
//! Every peer-driven failure ends that session with a log line naming the peer; nothing here
//! panics, and a grant region leaves only through an unmap whose result is checked.

use super::address_space::{self, KernelPmap};
use super::xen::event_channel::{self, PortStatus};
use super::xenstore::{WatchOwner, Xenstore};
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::events::ReadySnapshot;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::pmap::{GrantMapError, GrantMapping};
use grantsvc::share::device_id::DeviceId;
use grantsvc::share::nodes::{self, backend, frontend, RawFrontendNodes};
use grantsvc::share::registry::{ShareKey, ShareRegistry};
use grantsvc::share::session::{CloseReason, ShareAction, ShareEvent, ShareState, Verification};
use grantsvc::xenbus::state::XenbusState;
use xenstore::{TransactionId, WatchEvent};

/// A peer's pages as grantsvc maps them.
pub type ShareRegion = GrantMapping<&'static spin::Mutex<KernelPmap>>;

/// Watch owners of this module (the service routes their events here).
const ROOT_OWNER: WatchOwner = 0x5348_0001;
const FRONTEND_OWNER: WatchOwner = 0x5348_0002;
const RELEASE_OWNER: WatchOwner = 0x5348_0003;
const ROOT_TOKEN: &str = "grantsvc-share-root";
const RELEASE_TOKEN: &str = "grantsvc-share-release";
const NONE: TransactionId = TransactionId::NONE;
/// The status reported for a mapping refused before Xen saw it (`GNTST_general_error`).
const GENERAL_ERROR: i32 = -1;

/// The grant-share backend's state.
struct ShareBackend {
    own: DomId,
    root: String,
    registry: ShareRegistry<ShareRegion>,
    /// Frontend `state` watch tokens, and the session each belongs to.
    watches: BTreeMap<String, ShareKey>,
    faults: u64,
}

static BACKEND: spin::Mutex<Option<ShareBackend>> = spin::Mutex::new(None);

/// True for the watch owners whose events [`on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    matches!(owner, ROOT_OWNER | FRONTEND_OWNER | RELEASE_OWNER)
}

/// Starts serving: watches `<home>/backend/grantsvc-share` and `@releaseDomain`. Devices
/// that already exist are found when the root watch first fires.
pub fn start(store: &mut Xenstore, own: DomId, home: &str) {
    let root = nodes::backend_root(home);
    for (path, token, owner) in [
        (root.as_str(), ROOT_TOKEN, ROOT_OWNER),
        ("@releaseDomain", RELEASE_TOKEN, RELEASE_OWNER),
    ] {
        if let Err(error) = store.watch(path, token, owner) {
            log::error!("grant-share: watching {path}: {error}; grant-share is not served");
            return;
        }
    }
    log::info!("grant-share: serving devices under {root}");
    *BACKEND.lock() = Some(ShareBackend {
        own,
        root,
        registry: ShareRegistry::default(),
        watches: BTreeMap::new(),
        faults: 0,
    });
}

/// Handles one watch event of ours.
pub fn on_watch_event(store: &mut Xenstore, owner: WatchOwner, event: &WatchEvent) {
    let mut guard = BACKEND.lock();
    let Some(backend) = guard.as_mut() else {
        return;
    };
    match owner {
        ROOT_OWNER => backend.on_root_event(store, &event.path),
        FRONTEND_OWNER => backend.on_frontend_event(store, &event.token),
        RELEASE_OWNER => backend.on_release_domain(store),
        _ => {}
    }
}

/// Hands fired ports to their sessions.
pub fn on_ports(ready: &ReadySnapshot) {
    let mut guard = BACKEND.lock();
    let Some(backend) = guard.as_mut() else {
        return;
    };
    for port in ready.ports() {
        if let Some(key) = backend.registry.key_for_port(port) {
            let actions = backend.registry.handle(key, ShareEvent::EventChannel);
            backend.carry_out(None, key, actions);
        }
    }
}

/// Ends every session (grantsvc is shutting down), unmapping first; returns how many ended.
pub fn close_all(store: Option<&mut Xenstore>) -> usize {
    let mut guard = BACKEND.lock();
    let Some(backend) = guard.as_mut() else {
        return 0;
    };
    let mut store = store;
    let all = backend.registry.shutdown();
    let closed = all.len();
    for (key, actions) in all {
        backend.carry_out(store.as_deref_mut(), key, actions);
    }
    closed
}

/// (live sessions, sessions ended for a fault of the peer's) since boot.
pub fn counters() -> (u64, u64) {
    BACKEND.lock().as_ref().map_or((0, 0), |backend| {
        (backend.registry.len() as u64, backend.faults)
    })
}

/// A read whose absence is an answer, not an error (other errors are logged, then treated
/// as absence: a node we cannot read is one we cannot use).
fn read_optional(store: &mut Xenstore, path: &str) -> Option<Vec<u8>> {
    match store.read(NONE, path) {
        Ok(value) => Some(value),
        Err(error) if error.is_not_found() => None,
        Err(error) => {
            log::warn!("grant-share: reading {path}: {error}");
            None
        }
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

impl ShareBackend {
    fn backend_dir(&self, key: ShareKey) -> String {
        nodes::backend_path(self.own, key.peer, key.device)
    }

    /// A node changed below the root: a device appeared, changed or went.
    fn on_root_event(&mut self, store: &mut Xenstore, path: &str) {
        match nodes::device_of_backend_path(&self.root, path) {
            Some((peer, device)) => self.consider_device(store, peer, device),
            // The root or a frontend's folder: look at every device below it.
            None if path == self.root || path.starts_with(&format!("{}/", self.root)) => {
                self.scan(store)
            }
            None => {}
        }
    }

    /// Looks at every device under the root.
    fn scan(&mut self, store: &mut Xenstore) {
        let frontends = match store.directory(NONE, &self.root) {
            Ok(names) => names,
            Err(error) if error.is_not_found() => Vec::new(),
            Err(error) => {
                log::warn!("grant-share: listing {}: {error}", self.root);
                return;
            }
        };
        let mut present = BTreeSet::new();
        for frontend_name in frontends {
            let folder = format!("{}/{frontend_name}", self.root);
            let Ok(devices) = store.directory(NONE, &folder) else {
                continue;
            };
            for device_name in devices {
                let path = format!("{folder}/{device_name}");
                if let Some(device) = nodes::device_of_backend_path(&self.root, &path) {
                    present.insert(device);
                }
            }
        }
        // Sessions whose backend directory went with a whole frontend folder.
        let gone: Vec<ShareKey> = self
            .all_keys()
            .into_iter()
            .filter(|key| !present.contains(&(key.peer, key.device)))
            .collect();
        for key in gone {
            let actions = self.registry.handle(key, ShareEvent::BackendRemoved);
            self.carry_out(Some(store), key, actions);
        }
        for (peer, device) in present {
            self.consider_device(store, peer, device);
        }
    }

    /// Every live session (each has its frontend watch until it closes).
    fn all_keys(&self) -> Vec<ShareKey> {
        self.watches
            .values()
            .copied()
            .filter(|key| self.registry.session(*key).is_some())
            .collect()
    }

    /// The peers with live sessions.
    fn peers(&self) -> BTreeSet<DomId> {
        self.all_keys().into_iter().map(|key| key.peer).collect()
    }

    /// Opens a session for a device the toolstack just created, or ends one whose backend
    /// directory is gone.
    fn consider_device(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId) {
        let directory = nodes::backend_path(self.own, peer, device);
        let state = read_optional(store, &format!("{directory}/{}", backend::STATE));
        match (self.registry.find(peer, device), state) {
            (Some(key), None) => {
                let actions = self.registry.handle(key, ShareEvent::BackendRemoved);
                self.carry_out(Some(store), key, actions);
            }
            // New, or re-created by the toolstack before we saw it go: `open` ends an old
            // session of the device first.
            (_, Some(state))
                if state.as_slice() == XenbusState::Initialising.as_str().as_bytes() =>
            {
                self.open(store, peer, device)
            }
            _ => {}
        }
    }

    fn open(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId) {
        let opened = self.registry.open(peer, device);
        let mut new_key = None;
        for (key, actions) in opened {
            new_key = Some(key);
            self.carry_out(Some(store), key, actions);
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
        match store.watch(&path, &token, FRONTEND_OWNER) {
            Ok(()) => {
                self.watches.insert(token, key);
            }
            Err(error) => {
                log::warn!("grant-share: peer domain {peer} device {device}: watching {path}: {error}; session ended");
                let actions = self.registry.handle(key, ShareEvent::FrontendRemoved);
                self.carry_out(Some(store), key, actions);
            }
        }
    }

    /// The frontend's `state` changed (or went).
    fn on_frontend_event(&mut self, store: &mut Xenstore, token: &str) {
        let Some(&key) = self.watches.get(token) else {
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
        let actions = match read_optional(store, &path) {
            Some(value) => self.registry.handle(key, ShareEvent::PeerState(&value)),
            None if self.lost_port(key) => self.registry.handle(key, ShareEvent::DomainDied),
            None => self.registry.handle(key, ShareEvent::FrontendRemoved),
        };
        self.carry_out(Some(store), key, actions);
    }

    /// True when session `key` has a port whose frontend end is gone (closed, or its domain
    /// died: Xen closes a dying domain's ports, leaving ours unbound).
    fn lost_port(&self, key: ShareKey) -> bool {
        let Some(port) = self
            .registry
            .session(key)
            .and_then(|session| session.port())
        else {
            return false;
        };
        match event_channel::port_status(port) {
            Ok(PortStatus::Interdomain { remote, .. }) => remote != key.peer,
            Ok(_) => true,
            Err(error) => {
                log::warn!("grant-share: status of port {port} ({key}): {error}");
                false
            }
        }
    }

    /// Some domain died: end the sessions of every peer that lost its end of our channel.
    fn on_release_domain(&mut self, store: &mut Xenstore) {
        for peer in self.peers() {
            let keys: Vec<ShareKey> = self.registry.keys_of(peer).collect();
            if !keys.iter().any(|&key| self.lost_port(key)) {
                continue;
            }
            log::info!("grant-share: peer domain {peer} is gone (@releaseDomain, its event channel closed by Xen)");
            for (key, actions) in self.registry.domain_died(peer) {
                self.carry_out(Some(store), key, actions);
            }
        }
    }

    /// Carries out `actions` of session `key` in order; results go back to the session and its
    /// further actions are carried out before the rest.
    fn carry_out(
        &mut self,
        mut store: Option<&mut Xenstore>,
        key: ShareKey,
        actions: Vec<ShareAction<ShareRegion>>,
    ) {
        let mut queue: VecDeque<ShareAction<ShareRegion>> = actions.into();
        while let Some(action) = queue.pop_front() {
            let follow_up = self.carry_out_one(store.as_deref_mut(), key, action);
            for action in follow_up.into_iter().rev() {
                queue.push_front(action);
            }
        }
    }

    fn carry_out_one(
        &mut self,
        store: Option<&mut Xenstore>,
        key: ShareKey,
        action: ShareAction<ShareRegion>,
    ) -> Vec<ShareAction<ShareRegion>> {
        match action {
            ShareAction::WriteNodes(values) => {
                let Some(store) = store else {
                    log::warn!(
                        "grant-share: {key}: no xenstore to write {} node(s)",
                        values.len()
                    );
                    return Vec::new();
                };
                let directory = self.backend_dir(key);
                for (name, value) in values {
                    if let Err(error) =
                        store.write(NONE, &format!("{directory}/{name}"), value.as_bytes())
                    {
                        log::warn!("grant-share: {key}: writing {directory}/{name}: {error}");
                    }
                }
                Vec::new()
            }
            ShareAction::ReadFrontendNodes => {
                let Some(store) = store else {
                    return self.registry.handle(key, ShareEvent::FrontendRemoved);
                };
                let directory = nodes::frontend_path(key.peer, key.device);
                let mut read = |name: &str| read_optional(store, &format!("{directory}/{name}"));
                let nr_pages = read(frontend::NR_PAGES);
                let refs = read(frontend::REFS);
                let event_channel = read(frontend::EVENT_CHANNEL);
                let pattern_seed = read(frontend::PATTERN_SEED);
                let writable = read(frontend::WRITABLE);
                let raw = RawFrontendNodes {
                    nr_pages: nr_pages.as_deref(),
                    refs: refs.as_deref(),
                    event_channel: event_channel.as_deref(),
                    pattern_seed: pattern_seed.as_deref(),
                    writable: writable.as_deref(),
                };
                self.registry
                    .handle(key, ShareEvent::FrontendNodesRead(raw))
            }
            ShareAction::MapGrants {
                peer,
                refs,
                writable,
            } => {
                let result = self.map(key, peer, &refs, writable);
                self.registry.handle(key, ShareEvent::Mapped(result))
            }
            ShareAction::BindInterdomain { peer, remote_port } => {
                // The decoder checked the port's range; Xen would refuse one beyond it the same way.
                let result = EvtchnPort::new(remote_port.0)
                    .ok_or(XenError::EINVAL)
                    .and_then(|remote_port| event_channel::bind_interdomain(peer, remote_port))
                    .map_err(|error| i32::try_from(error.0).unwrap_or(GENERAL_ERROR));
                if let Ok(port) = result {
                    // A fresh port may keep the mask of an earlier one with its number.
                    if let Err(error) = event_channel::unmask(port) {
                        log::warn!("grant-share: {key}: unmasking port {port}: {error}");
                    }
                }
                self.registry.handle(key, ShareEvent::PortBound(result))
            }
            ShareAction::Unmap(region) => {
                self.unmap(key, region);
                Vec::new()
            }
            ShareAction::Notify(port) => {
                if let Err(error) = event_channel::send(port) {
                    log::warn!("grant-share: {key}: notifying port {port}: {error}");
                }
                Vec::new()
            }
            ShareAction::ClosePort(port) => {
                if let Err(error) = event_channel::close(port) {
                    log::warn!("grant-share: {key}: closing port {port}: {error}");
                }
                Vec::new()
            }
            ShareAction::ReportConnected(verification) => {
                self.report_connected(key, &verification);
                Vec::new()
            }
            ShareAction::ReportClosed(reason) => {
                self.report_closed(store, key, &reason);
                Vec::new()
            }
        }
    }

    /// Maps the refs through the kernel's pmap at addresses it chooses.
    fn map(
        &self,
        key: ShareKey,
        peer: DomId,
        refs: &[GrantRef],
        writable: bool,
    ) -> Result<ShareRegion, i32> {
        let Some(pmap) = address_space::pmap() else {
            log::error!("grant-share: {key}: no pmap to map with");
            return Err(GENERAL_ERROR);
        };
        GrantMapping::map(pmap, peer, refs, !writable).map_err(|error| {
            log::warn!(
                "grant-share: peer domain {peer} device {}: mapping {} ref(s) failed: {error}",
                key.device,
                refs.len()
            );
            map_status(&error)
        })
    }

    /// Unmaps a region (the pmap lock is not held here, so the mapping may take it).
    fn unmap(&self, key: ShareKey, region: ShareRegion) {
        let pages = region.range().pages();
        let start = region.start();
        match region.unmap() {
            Ok(()) => log::info!(
                "grant-share: peer domain {} device {}: unmapped {pages} page(s) at {start}, every unmap status okay",
                key.peer,
                key.device
            ),
            Err(error) => log::error!(
                "grant-share: peer domain {} device {}: unmapping {pages} page(s) at {start} failed: {error}",
                key.peer,
                key.device
            ),
        }
    }

    fn report_connected(&self, key: ShareKey, verification: &Verification) {
        let start = match self.registry.session(key).map(|session| session.state()) {
            Some(ShareState::Connected { region, .. }) => format!("{}", region.start()),
            _ => String::from("?"),
        };
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

    fn report_closed(&mut self, store: Option<&mut Xenstore>, key: ShareKey, reason: &CloseReason) {
        match reason {
            CloseReason::Fault(fault) => {
                self.faults += 1;
                log::warn!("grant-share: fault: {fault}");
            }
            CloseReason::RegionTooSmall { .. } => {
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
                if let Err(error) = store.unwatch(&token) {
                    log::debug!("grant-share: {key}: removing watch {token}: {error}");
                }
            }
        }
    }
}
