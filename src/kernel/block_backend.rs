//! blkif served in the kernel: the `backend/vbd` watch, one framework session per virtual block device, the toolstack's nodes, the RAM disks' memory budget, and the per-device counters.
//!
//! The protocol, its validation and the data path live host-side in `grantsvc::peer::blkif`,
//! the executor loop in `grantsvc::peer::driver`, and the grant and event-channel work in
//! [`super::peer_executor`]; this module finds devices and routes their events:
//! - every change under `<home>/backend/vbd` is looked up (the device's `state` and `online`,
//!   read together): `state` = 1 without a session is a new device (its toolstack nodes are
//!   read, its RAM disk reserved, its session opened), `online` = 0 is a detach, a directory
//!   gone ends the session, and `state` = 6 with `online` = 0 and no session left is removed
//!   after a grace time that lets `xl block-detach` see the 6 first (what `xl devd` does for a
//!   driver domain: `xl block-detach` waits for it);
//! - each session watches its frontend's `state` node; a node gone is the frontend removing
//!   its nodes or, when its end of our event channel is gone too, its death;
//! - a disk the memory budget cannot hold, or a `params` grantsvc does not serve, is refused
//!   with a log line and an `error` node, `state` = 6.
//!
//! Every peer-driven failure ends only that device; nothing here panics.
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::peer_executor::{PmapHandle, ProtocolGlue};
use super::peer_sessions::Sessions;
use super::peer_watches::PeerWatches;
use super::store_connection::{WatchOwner, Xenstore};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use grantsvc::addr::VirtAddr;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::ids::DomId;
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::blkif::backend_nodes::ToolstackRequest;
use grantsvc::peer::blkif::protocol::{BlkConnected, BlkMapping, BlkProtocol};
use grantsvc::peer::blkif::ram_disk::MemoryBudget;
use grantsvc::peer::blkif::service::DeviceCounters;
use grantsvc::peer::blkif::session::{
    figure_nodes, BlkSession, CloseReason, DeviceFigures, SharedBudget,
};
use grantsvc::peer::counters::{ServiceCounters, PUBLISHED_DIRECTORY};
use grantsvc::peer::device_id::DeviceId;
use grantsvc::peer::key::SessionKey;
use grantsvc::peer::root_scan::{devices_to_look_up, RootScan};
use grantsvc::peer::store_limit::StoreRefusal;
use grantsvc::peer::store_requests::read_value;
use litemap::LiteMap;
use xenstore::{Operation, RequestId, TransactionId};

/// Watch owners of this module (the service routes their events here).
pub const ROOT_OWNER: WatchOwner = 0x424C_0001;
pub const FRONTEND_OWNER: WatchOwner = 0x424C_0002;
const ROOT_TOKEN: &str = "grantsvc-vbd-root";
const NONE: TransactionId = TransactionId::NONE;
/// Heap kept for the service itself when the RAM disks' budget is set.
const SERVICE_RESERVE_BYTES: u64 = 8 << 20;
/// Per-device counters are rewritten at most this often.
const PUBLISH_INTERVAL_NS: u64 = 1_000_000_000;
/// How long a detached device's `state` = 6 stays visible before its directory is removed:
/// `xl block-detach` waits for 6 by watching `state` and reads the node when its watch fires;
/// a directory already gone then fails the detach ("wanted state 6 but it was removed"). It
/// waits up to 10 s for the removal afterwards.
const DETACH_GRACE_NS: u64 = 2_000_000_000;
/// The sessions' clock (persistent grants' use and purge) is in milliseconds.
const NS_PER_MS: u64 = 1_000_000;

type BlkKey = SessionKey<BlkProtocol>;

/// The toolstack's nodes read to open a device.
const TOOLSTACK_NODES: [&str; 4] = ["params", "mode", "device-type", "discard-enable"];
/// The nodes that say what the toolstack wants of a device.
const STATUS_NODES: [&str; 2] = ["state", "online"];

/// True for the watch owners whose events [`BlockBackend::on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    matches!(owner, ROOT_OWNER | FRONTEND_OWNER)
}

/// What blkif adds when its actions are carried out: directories, watches, log lines, figures.
struct BlkGlue {
    own: DomId,
    /// Each session's watch on its frontend's `state`.
    watches: PeerWatches<BlkKey>,
    /// The figures of each live session as last seen (kept after each event).
    figures: LiteMap<BlkKey, DeviceFigures>,
    /// Counters of the sessions that ended, for the service-wide totals.
    retired: DeviceCounters,
    /// Requests nobody waits for (removals); their replies are dropped.
    fire_and_forget: Vec<RequestId>,
}

/// What a lookup is for.
#[derive(Clone, Copy, Debug)]
enum LookupKind {
    /// `state` and `online` of a device, after a change under the root.
    Status,
    /// The toolstack's nodes of a new device.
    Toolstack,
    /// A session's frontend `state`, after its watch fired.
    FrontendState(BlkKey),
}

/// Reads in flight for one device, answered together.
struct Lookup {
    peer: DomId,
    device: DeviceId,
    /// The device's session when the reads were sent (a later one makes the answer stale).
    session: Option<BlkKey>,
    kind: LookupKind,
    reads: Vec<(&'static str, Option<RequestId>)>,
}

/// The block backend, owned by the service.
pub struct BlockBackend {
    /// The scans of `<home>/backend/vbd`, in flight while the loop goes on.
    scan: RootScan<DeviceId>,
    sessions: Sessions<BlkSession<PmapHandle>, BlkGlue>,
    budget: SharedBudget,
    lookups: Vec<Lookup>,
    /// Devices whose toolstack nodes are being read.
    opening: LiteMap<(DomId, DeviceId), ()>,
    /// Figures as last published, per session, and when.
    published: LiteMap<BlkKey, DeviceFigures>,
    /// The service-wide figures as last published.
    published_totals: Option<Totals>,
    /// Nanoseconds spent serving rings since boot (published in microseconds: how busy the
    /// data path keeps grantsvc's one vcpu).
    serve_ns: u64,
    last_publish_ns: u64,
    /// Detached devices whose directory goes at the given time.
    removals: LiteMap<(DomId, DeviceId), u64>,
}

/// The backend directory of a device.
fn backend_path(own: DomId, peer: DomId, device: DeviceId) -> String {
    format!("/local/domain/{own}/backend/vbd/{peer}/{device}")
}

/// The frontend directory of a device.
fn frontend_path(peer: DomId, device: DeviceId) -> String {
    format!("/local/domain/{peer}/device/vbd/{device}")
}

/// The service-wide figures published under `vbd/`: every device's counters together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Totals {
    /// Of the live devices and the ended ones.
    counters: DeviceCounters,
    /// Held now, over every device.
    persistent_grants: u64,
    /// Live devices.
    devices: usize,
    /// Time spent serving rings since boot.
    serve_us: u64,
}

impl Totals {
    /// (name under `vbd/`, value) of each node.
    fn nodes(&self) -> Vec<(&'static str, String)> {
        let figures = DeviceFigures {
            counters: self.counters,
            persistent_grants: self.persistent_grants,
            ring_pages: 0,
        };
        let mut nodes: Vec<(&'static str, String)> = figure_nodes(&figures)
            .into_iter()
            .filter(|(name, _)| *name != "ring-pages")
            .collect();
        nodes.push(("devices", format!("{}", self.devices)));
        nodes.push(("serve-us", format!("{}", self.serve_us)));
        nodes
    }
}

/// The published directory of a device's counters (relative to grantsvc's home).
fn figures_path(key: BlkKey) -> String {
    format!("{PUBLISHED_DIRECTORY}/vbd/{}/{}", key.peer, key.device)
}

/// `(frontend, device)` of a path at or below `<root>/<fe>/<devid>`.
fn device_of_path(root: &str, path: &str) -> Option<(DomId, DeviceId)> {
    let rest = path.strip_prefix(root)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let peer = parts.next()?.parse::<u16>().ok().and_then(DomId::new)?;
    let device = DeviceId(parts.next()?.parse::<u32>().ok()?);
    Some((peer, device))
}

/// Keeps each session's figures as they are after each of its events (those of an ended
/// session go into the totals when it closes).
fn note_figures(glue: &mut BlkGlue, key: BlkKey, session: Option<&BlkSession<PmapHandle>>) {
    if let Some(session) = session {
        glue.figures.insert(key, session.figures());
    }
}

impl BlockBackend {
    /// Our domain id.
    fn own(&self) -> DomId {
        self.sessions.glue.own
    }

    /// Starts serving: watches `<home>/backend/vbd`, with the RAM disks' budget set from the
    /// heap. Devices that already exist are found when the watch first fires.
    pub fn start(
        store: &mut Xenstore,
        own: DomId,
        home: &str,
        heap_bytes: u64,
    ) -> Option<BlockBackend> {
        let root = format!("{home}/backend/vbd");
        if let Err(error) = store.watch(&root, ROOT_TOKEN, ROOT_OWNER) {
            log::error!("blkif: watching {root}: {error}; block devices are not served");
            return None;
        }
        let budget = heap_bytes.saturating_sub(SERVICE_RESERVE_BYTES);
        log::info!(
            "blkif: serving block devices under {root}: RAM disks up to {} MiB in all, one queue per device, ring order up to 4, 256 indirect segments, persistent grants",
            budget >> 20
        );
        let glue = BlkGlue {
            own,
            watches: PeerWatches::new(FRONTEND_OWNER),
            figures: LiteMap::new(),
            retired: DeviceCounters::default(),
            fire_and_forget: Vec::new(),
        };
        Some(BlockBackend {
            scan: RootScan::new(&root, device_of_path),
            sessions: Sessions::new(glue, note_figures),
            budget: Rc::new(RefCell::new(MemoryBudget::new(budget))),
            lookups: Vec::new(),
            opening: LiteMap::new(),
            published: LiteMap::new(),
            published_totals: None,
            serve_ns: 0,
            last_publish_ns: 0,
            removals: LiteMap::new(),
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

    /// The devices with requests left from their last wake-up.
    fn backlogged(&self) -> impl Iterator<Item = BlkKey> + '_ {
        let registry = self.sessions.registry();
        registry
            .keys()
            .filter(|key| registry.session(*key).is_some_and(BlkSession::has_backlog))
    }

    /// The devices to wake at `now_ms` whether their port fired or not: those with a backlog,
    /// and those whose drain after the frontend closed is due to end.
    fn due(&self, now_ms: u64) -> impl Iterator<Item = BlkKey> + '_ {
        let registry = self.sessions.registry();
        registry.keys().filter(move |key| {
            registry.session(*key).is_some_and(|session| {
                session.has_backlog() || session.drain_due().is_some_and(|due| due <= now_ms)
            })
        })
    }

    /// True when a device has requests left from its last wake-up.
    pub fn has_backlog(&self) -> bool {
        self.backlogged().next().is_some()
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
            ROOT_OWNER => {
                let root = String::from(self.scan.root());
                if let Some((peer, device)) = device_of_path(&root, path) {
                    self.look_up(store, peer, device, LookupKind::Status);
                } else if path == root || path.starts_with(&root) {
                    // Every device below is looked up when the scan's answer comes.
                    self.scan.request(store);
                }
            }
            FRONTEND_OWNER => {
                if let Some(key) = self.sessions.glue.watches.session_of(token) {
                    if self.sessions.registry().session(key).is_some() {
                        self.look_up(store, key.peer, key.device, LookupKind::FrontendState(key));
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends the reads of `kind` for a device (the answer comes in [`BlockBackend::on_replies`]).
    fn look_up(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId, kind: LookupKind) {
        let (directory, names): (String, &[&'static str]) = match kind {
            LookupKind::Status => (backend_path(self.own(), peer, device), &STATUS_NODES),
            LookupKind::Toolstack => (backend_path(self.own(), peer, device), &TOOLSTACK_NODES),
            LookupKind::FrontendState(_) => (frontend_path(peer, device), &["state"]),
        };
        let reads = names
            .iter()
            .map(|name| {
                let path = format!("{directory}/{name}");
                let id = store
                    .submit(NONE, &Operation::Read { path: &path })
                    .inspect_err(|error| log::warn!("blkif: reading {path}: {error}"))
                    .ok();
                (*name, id)
            })
            .collect();
        self.lookups.push(Lookup {
            peer,
            device,
            session: self.sessions.registry().find(peer, device),
            kind,
            reads,
        });
    }

    /// True when a reply the backend waits for has arrived (work for the run loop).
    pub fn has_replies(&self, store: &Xenstore) -> bool {
        self.scan.has_replies(store)
            || self.lookups.iter().any(|lookup| {
                lookup
                    .reads
                    .iter()
                    .all(|(_, id)| id.is_none_or(|id| store.has_reply(id)))
            })
            || self.sessions.has_replies(store)
            || self
                .sessions
                .glue
                .fire_and_forget
                .iter()
                .any(|id| store.has_reply(*id))
    }

    /// Sets every session's clock: it stamps a persistent grant's last use, and times the
    /// drain that a frontend's `state` (read in a reply) can start. Takes the run loop's
    /// reading of the clock rather than making its own: two more readings a turn here took
    /// the vchan bench's grantsvc/dom0 from about 1.1 to about 0.93 in session 8's
    /// alternating lab boots (reading the clock is costly under emulation).
    fn tell_time(&mut self, now_ns: u64) {
        let registry = self.sessions.registry_mut();
        let keys: Vec<BlkKey> = registry.keys().collect();
        for key in keys {
            if let Some(session) = registry.session_mut(key) {
                session.set_time(now_ns / NS_PER_MS);
            }
        }
    }

    /// Takes the replies that arrived for the backend and its sessions, and acts on them;
    /// `now_ns` is the run loop's clock for this turn.
    pub fn on_replies(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
        now_ns: u64,
    ) {
        self.tell_time(now_ns);
        self.sessions
            .glue
            .fire_and_forget
            .retain(|id| match store.take_reply(*id) {
                None => true,
                Some(Ok(_)) => false,
                Some(Err(error)) => {
                    log::debug!("blkif: a removal: {error}");
                    false
                }
            });
        for present in self.scan.take_replies(store) {
            let live = self
                .sessions
                .registry()
                .keys()
                .map(|key| (key.peer, key.device));
            for (peer, device) in devices_to_look_up(present, live) {
                self.look_up(store, peer, device, LookupKind::Status);
            }
        }
        let mut index = 0;
        while let Some(lookup) = self.lookups.get(index) {
            let answered = lookup
                .reads
                .iter()
                .all(|(_, id)| id.is_none_or(|id| store.has_reply(id)));
            if !answered {
                index += 1;
                continue;
            }
            let lookup = self.lookups.remove(index);
            let values: Vec<(&'static str, Option<Vec<u8>>)> = lookup
                .reads
                .iter()
                .map(|(name, id)| {
                    let value =
                        id.and_then(|id| store.take_reply(id))
                            .and_then(|result| match read_value(result) {
                                Ok(value) => value,
                                Err(error) => {
                                    log::warn!("blkif: reading {name}: {error}");
                                    None
                                }
                            });
                    (*name, value)
                })
                .collect();
            self.answered(store, pmap, lookup, &values, counters);
        }
        self.sessions.on_replies(store, pmap, counters);
    }

    /// Acts on a lookup's answer.
    fn answered(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        lookup: Lookup,
        values: &[(&'static str, Option<Vec<u8>>)],
        counters: &ServiceCounters,
    ) {
        let value = |name: &str| {
            values
                .iter()
                .find(|(node, _)| *node == name)
                .and_then(|(_, value)| value.as_deref())
        };
        let (peer, device) = (lookup.peer, lookup.device);
        let current = self.sessions.registry().find(peer, device);
        match lookup.kind {
            LookupKind::Status => {
                if current != lookup.session {
                    return;
                }
                let state = value("state");
                let offline = value("online") == Some(b"0");
                match (current, state) {
                    (Some(key), None) => self.sessions.deliver(
                        Some(store),
                        pmap,
                        key,
                        PeerEvent::OwnNodesRemoved,
                        counters,
                    ),
                    (Some(key), Some(_)) if offline => self.sessions.deliver(
                        Some(store),
                        pmap,
                        key,
                        PeerEvent::ToolstackOffline,
                        counters,
                    ),
                    (None, Some(b"1")) if self.opening.insert((peer, device), ()).is_none() => {
                        self.look_up(store, peer, device, LookupKind::Toolstack);
                    }
                    (None, Some(b"6")) if offline => {
                        let due = super::event_wait::now_ns().saturating_add(DETACH_GRACE_NS);
                        self.removals.entry((peer, device)).or_insert(due);
                    }
                    _ => {}
                }
            }
            LookupKind::Toolstack => {
                self.opening.remove(&(peer, device));
                if current.is_none() {
                    self.open(store, pmap, peer, device, &value, counters);
                }
            }
            LookupKind::FrontendState(key) => {
                if current != Some(key) {
                    return;
                }
                let state = value("state").map(Vec::from);
                self.sessions
                    .peer_state_read(Some(store), pmap, key, state.as_deref(), counters);
            }
        }
    }

    /// Opens a session for a new device, or refuses it with an `error` node.
    fn open<'a>(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        peer: DomId,
        device: DeviceId,
        value: &dyn Fn(&'static str) -> Option<&'a [u8]>,
        counters: &ServiceCounters,
    ) {
        let refusal = match ToolstackRequest::decode(value) {
            Err(fault) => format!("{fault}"),
            Ok(request) => {
                match BlkSession::new(peer, device, pmap, request, self.budget.clone()) {
                    Err(exceeded) => format!("{exceeded}"),
                    Ok((session, actions)) => {
                        let opened = self.sessions.replace(
                            Some(&mut *store),
                            pmap,
                            session,
                            actions,
                            counters,
                        );
                        if let Some(key) = opened {
                            log::info!(
                                "blkif: frontend domain {peer} vbd {device}: new device, RAM disk of {} MiB, session {key}",
                                request.target.sectors() >> 11
                            );
                            self.watch_frontend(store, pmap, key, counters);
                        }
                        return;
                    }
                }
            }
        };
        log::error!("blkif: frontend domain {peer} vbd {device}: refused: {refusal}");
        let directory = backend_path(self.own(), peer, device);
        for (name, text) in [("error", refusal.as_str()), ("state", "6")] {
            let path = format!("{directory}/{name}");
            let operation = Operation::Write {
                path: &path,
                value: text.as_bytes(),
            };
            match store.submit(NONE, &operation) {
                Ok(id) => self.sessions.glue.fire_and_forget.push(id),
                Err(error) => log::warn!("blkif: writing {path}: {error}"),
            }
        }
    }

    /// Watches the frontend's `state` of session `key`.
    fn watch_frontend(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        key: BlkKey,
        counters: &ServiceCounters,
    ) {
        let token = format!(
            "grantsvc-vbd-{}-{}-{}",
            key.peer, key.device, key.generation
        );
        let path = format!("{}/state", frontend_path(key.peer, key.device));
        match self.sessions.glue.watches.watch(store, key, &path, token) {
            Ok(id) => self.sessions.glue.fire_and_forget.push(id),
            Err(error) => {
                log::warn!("blkif: session {key}: watching {path}: {error}; session ended");
                let event = PeerEvent::OwnNodesNotWritten(StoreRefusal::watch(None));
                self.sessions
                    .deliver(Some(store), pmap, key, event, counters);
            }
        }
    }

    /// Unmaps idle persistent grants, removes the directories of detached devices whose grace
    /// time has passed (unless the device has a session again), and publishes the figures when
    /// due.
    pub fn on_timers(&mut self, store: &mut Xenstore, now_ns: u64) {
        self.purge_idle_grants(now_ns);
        let due: Vec<(DomId, DeviceId)> = self
            .removals
            .iter()
            .filter(|(_, at)| **at <= now_ns)
            .map(|(device, _)| *device)
            .collect();
        for (peer, device) in due {
            self.removals.remove(&(peer, device));
            if self.sessions.registry().find(peer, device).is_none() {
                self.remove_directory(store, peer, device);
            }
        }
        self.publish(store, now_ns);
    }

    /// The earliest time [`BlockBackend::on_timers`] or a drain has work (none while no device
    /// holds a persistent grant, drains, waits for removal or has figures to publish: an idle
    /// service sleeps).
    pub fn deadline(&self) -> Option<u64> {
        let removal = self.removals.values().copied().min();
        [
            removal,
            self.publish_deadline(),
            self.purge_deadline(),
            self.drain_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the first drain of a closed frontend's rings is due to end.
    fn drain_deadline(&self) -> Option<u64> {
        let registry = self.sessions.registry();
        registry
            .keys()
            .filter_map(|key| registry.session(key)?.drain_due())
            .min()
            .map(|due_ms| due_ms.saturating_mul(NS_PER_MS))
    }

    /// When some device's persistent grants may have been idle long enough to be unmapped.
    fn purge_deadline(&self) -> Option<u64> {
        let registry = self.sessions.registry();
        registry
            .keys()
            .filter_map(|key| registry.session(key)?.purge_due())
            .min()
            .map(|due_ms| due_ms.saturating_mul(NS_PER_MS))
    }

    /// Unmaps the persistent grants that no request used for the idle limit, in the devices
    /// where that is due; their figures (grants held) change with it.
    fn purge_idle_grants(&mut self, now_ns: u64) {
        let now_ms = now_ns / NS_PER_MS;
        let registry = self.sessions.registry();
        let due: Vec<BlkKey> = registry
            .keys()
            .filter(|key| {
                registry
                    .session(*key)
                    .and_then(BlkSession::purge_due)
                    .is_some_and(|due| due <= now_ms)
            })
            .collect();
        for key in due {
            let Some(session) = self.sessions.registry_mut().session_mut(key) else {
                continue;
            };
            let purged = session.purge_idle_grants(now_ms);
            let figures = session.figures();
            if purged > 0 {
                log::debug!("blkif: session {key}: {purged} idle persistent grant(s) unmapped");
            }
            self.sessions.glue.figures.insert(key, figures);
        }
    }

    /// Removes a device's backend directory after a detach (`xl block-detach` waits for it).
    fn remove_directory(&mut self, store: &mut Xenstore, peer: DomId, device: DeviceId) {
        let path = backend_path(self.own(), peer, device);
        match store.submit(NONE, &Operation::Remove { path: &path }) {
            Ok(id) => {
                log::info!("blkif: frontend domain {peer} vbd {device}: detached, {path} removed");
                self.sessions.glue.fire_and_forget.push(id);
            }
            Err(error) => log::warn!("blkif: removing {path}: {error}"),
        }
    }

    /// Hands fired ports to their sessions, and serves the devices with a backlog or a drain
    /// due to end.
    pub fn on_ports(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        ready: &ReadySnapshot,
        counters: &ServiceCounters,
    ) {
        let start_ns = super::event_wait::now_ns();
        self.tell_time(start_ns);
        let due: Vec<BlkKey> = self.due(start_ns / NS_PER_MS).collect();
        let served = self
            .sessions
            .on_ports(Some(store), pmap, ready, due.into_iter(), counters);
        // Only a turn that served a device counts: were every turn's few microseconds here
        // counted, `serve-us` would change on every turn, and the publication of each change
        // (its writes' replies wake the loop) would cause the next, about ten turns a second
        // with nothing to serve.
        if served > 0 {
            let spent = super::event_wait::now_ns().saturating_sub(start_ns);
            self.serve_ns = self.serve_ns.saturating_add(spent);
        }
    }

    /// The liveness check: ends the sessions whose port's remote end is gone.
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

    /// The service-wide figures now.
    fn totals(&self) -> Totals {
        let mut totals = Totals {
            counters: self.sessions.glue.retired,
            persistent_grants: 0,
            devices: self.sessions.len(),
            serve_us: self.serve_ns / 1000,
        };
        for figures in self.sessions.glue.figures.values() {
            totals.counters.accumulate(&figures.counters);
            totals.persistent_grants += figures.persistent_grants;
        }
        totals
    }

    /// When the figures held back by the rate limit are due (none when all are published).
    fn publish_deadline(&self) -> Option<u64> {
        let totals_changed = self.published_totals != Some(self.totals());
        let stale = totals_changed
            || self.published.len() != self.sessions.glue.figures.len()
            || self
                .sessions
                .glue
                .figures
                .iter()
                .any(|(key, figures)| self.published.get(key) != Some(figures));
        stale.then(|| self.last_publish_ns.saturating_add(PUBLISH_INTERVAL_NS))
    }

    /// Writes the figures that changed (per device and service-wide), at most once per
    /// [`PUBLISH_INTERVAL_NS`].
    fn publish(&mut self, store: &mut Xenstore, now_ns: u64) {
        if now_ns.saturating_sub(self.last_publish_ns) < PUBLISH_INTERVAL_NS {
            return;
        }
        let live = &self.sessions.glue.figures;
        self.published.retain(|key, _| live.contains_key(key));
        let mut writes: Vec<(String, String)> = Vec::new();
        for (key, figures) in &self.sessions.glue.figures {
            let before = self.published.get(key);
            if before != Some(figures) {
                // Only the nodes whose value changed (fewer writes for xenstored in dom0).
                let old = before.map(figure_nodes).unwrap_or_default();
                let directory = figures_path(*key);
                for (name, value) in figure_nodes(figures) {
                    if !old.contains(&(name, value.clone())) {
                        writes.push((format!("{directory}/{name}"), value));
                    }
                }
                self.published.insert(*key, *figures);
            }
        }
        let totals = self.totals();
        if self.published_totals != Some(totals) {
            // As for a device: only the nodes whose value changed.
            let old = self
                .published_totals
                .map(|old| old.nodes())
                .unwrap_or_default();
            for (name, value) in totals.nodes() {
                if !old.contains(&(name, value.clone())) {
                    writes.push((format!("{PUBLISHED_DIRECTORY}/vbd/{name}"), value));
                }
            }
            self.published_totals = Some(totals);
        }
        if writes.is_empty() {
            return;
        }
        self.last_publish_ns = now_ns;
        for (path, value) in &writes {
            let operation = Operation::Write {
                path,
                value: value.as_bytes(),
            };
            match store.submit(NONE, &operation) {
                Ok(id) => self.sessions.glue.fire_and_forget.push(id),
                Err(error) => log::warn!("blkif: publishing {path}: {error}"),
            }
        }
    }
}

impl ProtocolGlue<BlkProtocol> for BlkGlue {
    fn own_directory(&self, key: BlkKey) -> Option<String> {
        Some(backend_path(self.own, key.peer, key.device))
    }

    fn peer_directory(&self, key: BlkKey) -> String {
        frontend_path(key.peer, key.device)
    }

    fn mapped(&mut self, _key: BlkKey, _purpose: BlkMapping, _pages: usize, _start: VirtAddr) {}

    fn unmapped(&mut self, key: BlkKey, purpose: BlkMapping, pages: usize, start: VirtAddr) {
        log::debug!(
            "blkif: frontend domain {} vbd {}: unmapped the {purpose} ({pages} page(s) at {start})",
            key.peer,
            key.device
        );
    }

    fn connected(&mut self, key: BlkKey, report: &BlkConnected) {
        log::info!(
            "blkif: frontend domain {} vbd {} connected: {} sectors {}, {} queue(s), ring order {}, persistent grants {}",
            key.peer,
            key.device,
            report.sectors,
            if report.writable { "read-write" } else { "read-only" },
            report.queues,
            report.ring_page_order,
            if report.persistent { "on" } else { "off (the frontend did not offer them)" }
        );
    }

    fn closed(
        &mut self,
        store: Option<&mut Xenstore>,
        key: BlkKey,
        reason: &CloseReason,
        _unmapped_pages: usize,
    ) {
        if let Some(figures) = self.figures.remove(&key) {
            self.retired.accumulate(&figures.counters);
        }
        match reason {
            CloseReason::Fault(fault) => log::warn!("blkif: fault: {fault}"),
            _ => log::info!(
                "blkif: frontend domain {} vbd {} closed: {reason}; nothing of it stays mapped",
                key.peer,
                key.device
            ),
        }
        let Some(store) = store else {
            self.watches.unwatch(None, key);
            return;
        };
        self.watches.unwatch(Some(&mut *store), key);
        let path = figures_path(key);
        match store.submit(NONE, &Operation::Remove { path: &path }) {
            Ok(id) => self.fire_and_forget.push(id),
            Err(error) => log::debug!("blkif: removing {path}: {error}"),
        }
    }
}
