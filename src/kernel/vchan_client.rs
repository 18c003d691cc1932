//! The kernel's vchan client: finds libxenvchan servers published for grantsvc in xenstore, runs one session per server through the global pmap, and ends it on revocation.
//!
//! # Discovery convention (Qubes' convention for vchan paths)
//! A server in domain S that serves grantsvc (domid G) publishes its vchan under
//! `/local/domain/S/data/vchan/G/<name>`, e.g. `vchan-socket-proxy -m server G
//! /local/domain/0/data/vchan/G/echo SOCKET`. grantsvc serves dom0's servers: it watches
//! `/local/domain/0/data/vchan/G`, which the toolstack creates readable by G (xenstored filters
//! watch events, directory listings and reads by the reader's permissions; libxenvchan itself
//! makes `ring-ref` and `event-channel` readable by G). On every watch event it lists that
//! directory. A `<name>` with both nodes present gets a session with the domain that owns
//! `ring-ref` (from its permissions) when its `ring-ref` is written, or at the first listing for
//! servers that published before grantsvc started. The name chooses the service: `cmd` carries
//! one-line commands, any other name an echo ([`ServiceKind::for_path`]).
//!
//! # Lifecycle
//! A session follows [`VchanSession`]'s actions: bind the server's port, map the shared page and
//! the rings through the pmap ([`GrantMapping`]), set `cli_live`, then pump the stream when the
//! port fires and on a periodic liveness poll (a server that is killed may close its port before
//! gntalloc's unmap notify can signal it). Revocation in every form - `srv_live` cleared, the
//! nodes removed or replaced, the server domain gone (`@releaseDomain`, then our port found no
//! longer interdomain), a peer fault, grantsvc's shutdown - unmaps every region first, then
//! closes the port and logs a line naming the peer. A vchan whose session ended is not tried
//! again until its server publishes anew (its `ring-ref` written again), so a new server at the
//! same name (or another) connects anew while a faulty one is refused once
//! ([`grantsvc::vchan::discovery`] decides, host-tested).

use super::address_space::{self, KernelPmap};
use super::events;
use super::peers;
use super::xen::event_channel::{self, PortStatus};
use super::xenstore::{WatchOwner, Xenstore, XenstoreError};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::events::ReadySnapshot;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, EvtchnPort};
use grantsvc::pmap::{GrantMapError, GrantMapping};
use grantsvc::shared_memory::SharedMemory;
use grantsvc::vchan::discovery::{acceptable_name, Discovery, NodeValues, Trigger, MAX_NAME};
use grantsvc::vchan::service::{ServiceCounters, ServiceKind};
use grantsvc::xenbus::registry::{PeerKey, PeerRegistry};
use grantsvc::xenbus::session::{CloseReason, SessionAction, SessionEvent};
use xenstore::{ReplyError, TransactionId, WatchEvent, XsError};

/// A mapped grant region, as the sessions hold it.
type Region = GrantMapping<&'static spin::Mutex<KernelPmap>>;

/// Watch owners of this module (the service routes their events here), distinct from others'.
const DIRECTORY_OWNER: WatchOwner = 0x7663_0001;
const RELEASE_OWNER: WatchOwner = 0x7663_0002;
const DIRECTORY_TOKEN: &str = "grantsvc-vchan-directory";
const RELEASE_TOKEN: &str = "grantsvc-vchan-release-domain";
/// The domain whose servers grantsvc looks for.
const SERVER_HOME: &str = "/local/domain/0";
/// How often connected sessions are polled for a server gone without a signal.
const LIVENESS_POLL_NS: u64 = 500_000_000;
/// Most vchans served at once; more names are left alone (and logged once each).
const MAX_SESSIONS: usize = 32;
const NONE: TransactionId = TransactionId::NONE;

/// The vchan client's state.
struct VchanClient {
    /// `/local/domain/0/data/vchan/<our domid>`.
    base: String,
    registry: PeerRegistry<Region>,
    /// The vchans known, live or ended, by name.
    discovery: Discovery<PeerKey>,
    /// Names refused (bad name, too many sessions), logged once.
    refused: BTreeMap<String, ()>,
    /// Sessions ended for a fault of the peer's.
    faults: u64,
    /// Next liveness poll.
    next_poll_ns: Option<u64>,
}

/// Why an action failed, for the log.
fn map_status(error: &GrantMapError) -> i32 {
    match error {
        GrantMapError::Grant { status, .. } => i32::from(status.to_raw()),
        GrantMapError::Hypercall { error, .. } => i32::try_from(error.0).unwrap_or(-1),
        _ => -1,
    }
}

/// xenstored's EACCES.
fn access_denied() -> XenstoreError {
    XenstoreError::Reply(ReplyError::Xenstore(XsError::AccessDenied))
}

impl VchanClient {
    /// Watches the vchan directory for domain `own_domid` and `@releaseDomain`.
    fn start(store: &mut Xenstore, own_domid: u16) -> Result<VchanClient, XenstoreError> {
        let base = format!("{SERVER_HOME}/data/vchan/{own_domid}");
        store.watch(&base, DIRECTORY_TOKEN, DIRECTORY_OWNER)?;
        if let Err(error) = store.watch("@releaseDomain", RELEASE_TOKEN, RELEASE_OWNER) {
            // Killed servers still show through srv_live and the liveness poll.
            log::warn!(
                "vchan: watching @releaseDomain: {error}; domain deaths are found by polling only"
            );
        }
        log::info!("vchan: serving vchan servers published under {base}/<name> (name 'cmd': commands, others: echo)");
        Ok(VchanClient {
            base,
            registry: PeerRegistry::default(),
            discovery: Discovery::default(),
            refused: BTreeMap::new(),
            faults: 0,
            next_poll_ns: None,
        })
    }

    /// Takes a watch event of ours for `path`.
    fn on_watch(&mut self, store: &mut Xenstore, owner: WatchOwner, path: &str) {
        match owner {
            DIRECTORY_OWNER => {
                let trigger = Trigger::classify(&self.base, path);
                self.rescan_directory(store, &trigger);
            }
            RELEASE_OWNER => self.find_dead_servers(),
            _ => {}
        }
    }

    /// Serves the ports that fired and, when due, polls every connected session's liveness.
    fn serve(&mut self, ready: &ReadySnapshot) {
        let now = events::now_ns();
        let poll_all = self.next_poll_ns.is_some_and(|at| now >= at);
        let keys: Vec<(PeerKey, Option<EvtchnPort>)> = self
            .discovery
            .live_keys()
            .map(|key| {
                let port = self
                    .registry
                    .session(key)
                    .and_then(|session| session.port());
                (key, port)
            })
            .collect();
        for (key, port) in keys {
            let fired = port.is_some_and(|port| ready.contains(port));
            if fired || poll_all {
                self.deliver(key, SessionEvent::EventChannel);
            }
        }
        self.next_poll_ns = if self.discovery.live_count() == 0 {
            None
        } else if poll_all || self.next_poll_ns.is_none() {
            Some(now.saturating_add(LIVENESS_POLL_NS))
        } else {
            self.next_poll_ns
        };
    }

    /// Ends every session (grantsvc is stopping); returns how many there were.
    fn close_all(&mut self) -> usize {
        let counters = self.service_counters();
        let closing = self.registry.shutdown(&counters);
        let count = closing.len();
        for (key, actions) in closing {
            self.execute(key, actions);
        }
        count
    }

    /// Lists the vchan directory, ends the sessions whose nodes went away or changed, and starts
    /// the sessions `trigger` calls for.
    fn rescan_directory(&mut self, store: &mut Xenstore, trigger: &Trigger) {
        let names = match store.directory(NONE, &self.base) {
            Ok(names) => names,
            Err(error) if error.is_not_found() => Vec::new(),
            // Not (yet) readable by us: the toolstack creates it, then gives us read access,
            // which fires the watch again.
            Err(error) if error == access_denied() => {
                log::debug!("vchan: {} is not readable by us (yet)", self.base);
                return;
            }
            Err(error) => {
                log::warn!("vchan: listing {}: {error}", self.base);
                return;
            }
        };
        let mut present: BTreeMap<String, NodeValues> = BTreeMap::new();
        for name in names {
            if !acceptable_name(&name) {
                if self.refused.insert(name.clone(), ()).is_none() {
                    log::warn!(
                        "vchan: ignoring {}/{:?}: not a plain name of at most {MAX_NAME} characters",
                        self.base,
                        name
                    );
                }
                continue;
            }
            if let Some(nodes) = self.read_nodes(store, &name) {
                present.insert(name, nodes);
            }
        }
        // Sessions whose nodes went away or changed end first (a replaced server is a new one).
        let plan = self.discovery.plan(&present, trigger);
        for name in &plan.end {
            if let Some(key) = self.discovery.key_of(name) {
                self.deliver(key, SessionEvent::NodesRemoved);
            }
        }
        for (name, nodes) in plan.start {
            if self.discovery.live_count() >= MAX_SESSIONS {
                if self.refused.insert(name.clone(), ()).is_none() {
                    log::warn!(
                        "vchan: not serving {}/{name}: {MAX_SESSIONS} sessions already",
                        self.base
                    );
                }
                continue;
            }
            self.open(store, name, nodes);
        }
    }

    /// Reads a vchan's two nodes; `None` unless both exist.
    fn read_nodes(&self, store: &mut Xenstore, name: &str) -> Option<NodeValues> {
        let mut read = |node: &str| {
            let path = format!("{}/{name}/{node}", self.base);
            match store.read(NONE, &path) {
                Ok(value) => Some(value),
                Err(error) if error.is_not_found() => None,
                Err(error) => {
                    log::warn!("vchan: reading {path}: {error}");
                    None
                }
            }
        };
        let ring_ref = read("ring-ref")?;
        let event_channel = read("event-channel")?;
        Some(NodeValues {
            ring_ref,
            event_channel,
        })
    }

    /// Starts a session for `name`, with the domain that owns its `ring-ref`.
    fn open(&mut self, store: &mut Xenstore, name: String, nodes: NodeValues) {
        let path = format!("{}/{name}", self.base);
        let server = match store.get_permissions(&format!("{path}/ring-ref")) {
            Ok(permissions) => permissions.owner,
            Err(error) => {
                log::warn!("vchan: permissions of {path}/ring-ref: {error}; not connecting");
                return;
            }
        };
        let service = ServiceKind::for_path(&path);
        let key = self.registry.open(server, service);
        log::info!(
            "vchan: server in domain {server} at {path}: session {key} ({})",
            match service {
                ServiceKind::Echo => "echo",
                ServiceKind::Command => "commands",
            }
        );
        self.discovery.started(name, key, nodes.clone());
        self.deliver(
            key,
            SessionEvent::NodesRead {
                ring_ref: &nodes.ring_ref,
                event_channel: &nodes.event_channel,
            },
        );
    }

    /// After `@releaseDomain`: a session whose port is no longer connected lost its server.
    fn find_dead_servers(&mut self) {
        let keys: Vec<(PeerKey, EvtchnPort)> = self
            .discovery
            .live_keys()
            .filter_map(|key| Some((key, self.registry.session(key)?.port()?)))
            .collect();
        for (key, port) in keys {
            match event_channel::port_status(port) {
                Ok(PortStatus::Interdomain { .. }) => {}
                status => {
                    log::info!(
                        "vchan: session {key}: port {port} is {status:?} after @releaseDomain"
                    );
                    self.deliver(key, SessionEvent::DomainDied);
                }
            }
        }
    }

    /// Counters for the command service's `stats`: the service-wide figures, as published.
    fn service_counters(&self) -> ServiceCounters {
        let published = peers::counters_with_vchan((self.registry.len() as u64, self.faults));
        ServiceCounters::from(&published)
    }

    /// Hands `event` to session `key` and carries out what it asks.
    fn deliver(&mut self, key: PeerKey, event: SessionEvent<'_, Region>) {
        let counters = self.service_counters();
        let actions = self.registry.handle(key, event, &counters);
        self.execute(key, actions);
    }

    /// Carries out a session's actions in order; answers (bound ports, mappings) go back to the
    /// session and their actions run before the rest.
    fn execute(&mut self, key: PeerKey, actions: Vec<SessionAction<Region>>) {
        let mut queue: VecDeque<SessionAction<Region>> = actions.into();
        let mut unmapped_pages = 0usize;
        while let Some(action) = queue.pop_front() {
            let follow_up = match action {
                SessionAction::BindInterdomain { peer, remote_port } => {
                    // The decoder checked the port's range; Xen would refuse one beyond it the same way.
                    let result = EvtchnPort::new(remote_port.0)
                        .ok_or(XenError::EINVAL)
                        .and_then(|remote_port| event_channel::bind_interdomain(peer, remote_port))
                        .map_err(|error| {
                            log::warn!("vchan: session {key}: binding port {remote_port} of domain {peer}: {error}");
                            i32::try_from(error.0).unwrap_or(-1)
                        })
                        .inspect(|port| {
                            // Ports are not guaranteed unmasked when bound (a closed port's mask stays).
                            if let Err(error) = event_channel::unmask(*port) {
                                log::warn!("vchan: unmasking port {port}: {error}");
                            }
                        });
                    self.answer(key, SessionEvent::PortBound(result))
                }
                SessionAction::MapGrants {
                    peer,
                    refs,
                    writable,
                    purpose,
                } => {
                    let result = match address_space::pmap() {
                        Some(pmap) => GrantMapping::map(pmap, peer, &refs, !writable).map_err(|error| {
                            log::warn!("vchan: session {key}: mapping the {purpose} ({} ref(s)): {error}", refs.len());
                            map_status(&error)
                        }),
                        None => Err(-1),
                    };
                    self.answer(key, SessionEvent::Mapped { purpose, result })
                }
                SessionAction::Unmap { purpose, region } => {
                    let pages = region.size() / PAGE_SIZE;
                    let start = region.start();
                    match region.unmap() {
                        Ok(()) => unmapped_pages += pages,
                        Err(error) => log::error!(
                            "vchan: session {key}: unmapping the {purpose} at {start}: {error}"
                        ),
                    }
                    Vec::new()
                }
                SessionAction::Notify(port) => {
                    if let Err(error) = event_channel::send(port) {
                        log::debug!("vchan: session {key}: notifying port {port}: {error}");
                    }
                    Vec::new()
                }
                SessionAction::ClosePort(port) => {
                    if let Err(error) = event_channel::close(port) {
                        log::warn!("vchan: session {key}: closing port {port}: {error}");
                    }
                    Vec::new()
                }
                SessionAction::ReportConnected => {
                    self.report_connected(key);
                    Vec::new()
                }
                SessionAction::ReportClosed(reason) => {
                    self.report_closed(key, &reason, unmapped_pages);
                    Vec::new()
                }
            };
            for action in follow_up.into_iter().rev() {
                queue.push_front(action);
            }
        }
    }

    fn answer(
        &mut self,
        key: PeerKey,
        event: SessionEvent<'_, Region>,
    ) -> Vec<SessionAction<Region>> {
        let counters = self.service_counters();
        self.registry.handle(key, event, &counters)
    }

    fn report_connected(&self, key: PeerKey) {
        let name = self.discovery.name_of(key).unwrap_or_default();
        log::info!(
            "vchan: session {key} connected to domain {} at {}/{name}: cli_live set, serving",
            key.domid,
            self.base
        );
    }

    fn report_closed(&mut self, key: PeerKey, reason: &CloseReason, unmapped_pages: usize) {
        let name = self.discovery.ended(key);
        let path = format!("{}/{}", self.base, name.unwrap_or_default());
        match reason {
            CloseReason::Fault(_) => {
                self.faults += 1;
                log::warn!(
                    "vchan: session {key} at {path} revoked: {reason}; {unmapped_pages} page(s) unmapped, port closed"
                );
            }
            _ => log::info!(
                "vchan: session {key} with domain {} at {path} revoked: {reason}; {unmapped_pages} page(s) unmapped, port closed",
                key.domid
            ),
        }
    }
}

static CLIENT: spin::Mutex<Option<VchanClient>> = spin::Mutex::new(None);

/// True for the watch owners whose events [`on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    matches!(owner, DIRECTORY_OWNER | RELEASE_OWNER)
}

/// Starts the client: watches `/local/domain/0/data/vchan/<own>` and `@releaseDomain`. Servers
/// already published are found when the directory watch first fires.
pub fn start(store: &mut Xenstore, own: DomId) {
    match VchanClient::start(store, own.get()) {
        Ok(client) => *CLIENT.lock() = Some(client),
        Err(error) => log::error!("vchan: cannot watch for servers: {error}; vchan is not served"),
    }
}

/// Handles one watch event of ours.
pub fn on_watch_event(store: &mut Xenstore, owner: WatchOwner, event: &WatchEvent) {
    if let Some(client) = CLIENT.lock().as_mut() {
        client.on_watch(store, owner, &event.path);
    }
}

/// Hands fired ports to their sessions and polls liveness when due.
pub fn on_ports(ready: &ReadySnapshot) {
    if let Some(client) = CLIENT.lock().as_mut() {
        client.serve(ready);
    }
}

/// The next time [`on_ports`] must run even if no port fires.
pub fn deadline() -> Option<u64> {
    CLIENT
        .lock()
        .as_ref()
        .and_then(|client| client.next_poll_ns)
}

/// Ends every session (unmapping first); returns how many ended.
pub fn close_all() -> usize {
    CLIENT.lock().as_mut().map_or(0, VchanClient::close_all)
}

/// (live sessions, sessions ended for a fault of the peer's) since boot.
pub fn counters() -> (u64, u64) {
    CLIENT.lock().as_ref().map_or((0, 0), |client| {
        (client.registry.len() as u64, client.faults)
    })
}
