//! The kernel's vchan client: finds libxenvchan servers published for grantsvc in xenstore and runs one framework session per server; the service owns it.
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
//! A session follows `VchanSession`'s actions, carried out by [`super::peer_executor`]: bind the
//! server's port, map the shared page and the rings through the service's pmap, set `cli_live`,
//! then pump the stream when the port fires and on a periodic poll (a server that is killed may
//! close its port before gntalloc's unmap notify can signal it). Revocation in every form -
//! `srv_live` cleared, the nodes removed or replaced, the server's end of the event channel gone
//! (the service's liveness check: its domain died, or it closed the channel while `srv_live`
//! stayed 1), a peer fault, grantsvc's shutdown - unmaps every region first, then closes the
//! port and logs a line naming the peer. A vchan whose session ended is not tried
//! again until its server publishes anew (its `ring-ref` written again), so a new server at the
//! same name (or another) connects anew while a faulty one is refused once
//! ([`grantsvc::peer::vchan::discovery`] decides, host-tested).
// Driven by peers: nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::peer_executor::{port_state, Executor, PmapHandle, ProtocolGlue, Region};
use super::store_connection::{WatchOwner, Xenstore, XenstoreError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::VirtAddr;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::ids::{DomId, EvtchnPort};
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::driver;
use grantsvc::peer::liveness::peer_lost;
use grantsvc::peer::pending::PendingRequests;
use grantsvc::peer::vchan::discovery::{acceptable_name, Discovery, NodeValues, Trigger, MAX_NAME};
use grantsvc::peer::vchan::protocol::VchanProtocol;
use grantsvc::peer::vchan::registry::{PeerKey, PeerRegistry};
use grantsvc::peer::vchan::service::ServiceKind;
use grantsvc::peer::vchan::session::{
    CloseReason, SessionEvent, VchanSession, EVENT_CHANNEL, RING_REF,
};
use grantsvc::peer::vchan::session_fault::MapPurpose;
use litemap::LiteMap;
use xenstore::{ReplyError, TransactionId, XsError};

/// Watch owner of this module (the service routes its events here), distinct from others'.
pub const DIRECTORY_OWNER: WatchOwner = 0x7663_0001;
const DIRECTORY_TOKEN: &str = "grantsvc-vchan-directory";
/// The domain whose servers grantsvc looks for.
const SERVER_HOME: &str = "/local/domain/0";
/// How often connected sessions are polled for a server gone without a signal.
const POLL_NS: u64 = 500_000_000;
/// Most vchans served at once; more names are left alone (and logged once each).
const MAX_SESSIONS: usize = 32;
const NONE: TransactionId = TransactionId::NONE;

/// What vchan adds when its actions are carried out: the names of the vchans, log lines.
struct VchanGlue {
    /// `/local/domain/0/data/vchan/<our domid>`.
    base: String,
    /// The vchans known, live or ended, by name.
    discovery: Discovery<PeerKey>,
    /// Always empty: a vchan session neither reads nor writes nodes.
    pending: PendingRequests<PeerKey>,
}

/// The vchan client, owned by the service.
pub struct VchanClient {
    registry: PeerRegistry<Region>,
    glue: VchanGlue,
    /// Names refused (bad name, too many sessions), logged once.
    refused: LiteMap<String, ()>,
    /// Next poll of the connected sessions.
    next_poll_ns: Option<u64>,
}

/// True for the watch owners whose events [`VchanClient::on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    owner == DIRECTORY_OWNER
}

/// xenstored's EACCES.
fn access_denied() -> XenstoreError {
    XenstoreError::Reply(ReplyError::Xenstore(XsError::AccessDenied))
}

impl VchanClient {
    /// Watches the vchan directory for domain `own`. Servers already published are found
    /// when the watch first fires.
    pub fn start(store: &mut Xenstore, own: DomId) -> Option<VchanClient> {
        let base = format!("{SERVER_HOME}/data/vchan/{own}");
        if let Err(error) = store.watch(&base, DIRECTORY_TOKEN, DIRECTORY_OWNER) {
            log::error!("vchan: cannot watch for servers: {error}; vchan is not served");
            return None;
        }
        log::info!("vchan: serving vchan servers published under {base}/<name> (name 'cmd': commands, others: echo)");
        Some(VchanClient {
            registry: PeerRegistry::default(),
            glue: VchanGlue {
                base,
                discovery: Discovery::default(),
                pending: PendingRequests::default(),
            },
            refused: LiteMap::new(),
            next_poll_ns: None,
        })
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.registry.len()
    }

    /// Sessions ended for a fault of the server's, since boot.
    pub fn faults(&self) -> u64 {
        self.registry.faults()
    }

    /// Sessions with a bound port (what the liveness check looks at).
    pub fn bound_sessions(&self) -> usize {
        self.registry.ports().count()
    }

    /// The next time [`VchanClient::on_ports`] must run even if no port fires.
    pub fn deadline(&self) -> Option<u64> {
        self.next_poll_ns
    }

    /// Hands `event` to session `key` and carries out what it asks.
    fn deliver(
        &mut self,
        pmap: PmapHandle,
        key: PeerKey,
        event: SessionEvent<'_, Region>,
        counters: &ServiceCounters,
    ) {
        // vchan writes no nodes: its executor needs no xenstore.
        let mut executor = Executor {
            pmap,
            store: None,
            glue: &mut self.glue,
        };
        driver::deliver(&mut self.registry, key, event, &mut executor, counters);
    }

    /// Takes a watch event of ours for `path`.
    pub fn on_watch_event(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        path: &str,
        counters: &ServiceCounters,
    ) {
        let trigger = Trigger::classify(&self.glue.base, path);
        self.rescan_directory(store, pmap, &trigger, counters);
    }

    /// Serves the ports that fired and, when due (`now_ns`), polls every connected session.
    pub fn on_ports(
        &mut self,
        pmap: PmapHandle,
        ready: &ReadySnapshot,
        now_ns: u64,
        counters: &ServiceCounters,
    ) {
        let poll_all = self.next_poll_ns.is_some_and(|at| now_ns >= at);
        let keys: Vec<(PeerKey, Option<EvtchnPort>)> = self
            .glue
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
                self.deliver(pmap, key, PeerEvent::EventChannel, counters);
            }
        }
        self.next_poll_ns = if self.glue.discovery.live_count() == 0 {
            None
        } else if poll_all || self.next_poll_ns.is_none() {
            Some(now_ns.saturating_add(POLL_NS))
        } else {
            self.next_poll_ns
        };
    }

    /// The liveness check: ends the sessions whose port's remote end is no longer their
    /// server's (its domain died, or it closed the channel while `srv_live` stayed 1).
    pub fn check_liveness(&mut self, pmap: PmapHandle, counters: &ServiceCounters) {
        let lost: Vec<PeerKey> = self
            .registry
            .ports()
            .filter(|(key, port)| peer_lost(key.peer, port_state(*port)))
            .map(|(key, _)| key)
            .collect();
        for key in lost {
            log::info!("vchan: session {key}: the server's end of our event channel is gone");
            self.deliver(pmap, key, PeerEvent::DomainDied, counters);
        }
    }

    /// Ends every session (grantsvc is stopping); returns how many there were.
    pub fn close_all(&mut self, pmap: PmapHandle, counters: &ServiceCounters) -> usize {
        let closing = self.registry.shutdown(counters);
        let count = closing.len();
        for (key, actions) in closing {
            let mut executor = Executor {
                pmap,
                store: None,
                glue: &mut self.glue,
            };
            driver::drive(&mut self.registry, key, actions, &mut executor, counters);
        }
        count
    }

    /// Lists the vchan directory, ends the sessions whose nodes went away or changed, and starts
    /// the sessions `trigger` calls for.
    fn rescan_directory(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        trigger: &Trigger,
        counters: &ServiceCounters,
    ) {
        let base = self.glue.base.clone();
        let names = match store.directory(NONE, &base) {
            Ok(names) => names,
            Err(error) if error.is_not_found() => Vec::new(),
            // Not (yet) readable by us: the toolstack creates it, then gives us read access,
            // which fires the watch again.
            Err(error) if error == access_denied() => {
                log::debug!("vchan: {base} is not readable by us (yet)");
                return;
            }
            Err(error) => {
                log::warn!("vchan: listing {base}: {error}");
                return;
            }
        };
        let mut present: LiteMap<String, NodeValues> = LiteMap::new();
        for name in names {
            if !acceptable_name(&name) {
                if self.refused.insert(name.clone(), ()).is_none() {
                    log::warn!(
                        "vchan: ignoring {base}/{name:?}: not a plain name of at most {MAX_NAME} characters"
                    );
                }
                continue;
            }
            if let Some(nodes) = read_nodes(store, &base, &name) {
                present.insert(name, nodes);
            }
        }
        // Sessions whose nodes went away or changed end first (a replaced server is a new one).
        let plan = self.glue.discovery.plan(&present, trigger);
        for name in &plan.end {
            if let Some(key) = self.glue.discovery.key_of(name) {
                self.deliver(pmap, key, PeerEvent::PeerNodesRemoved, counters);
            }
        }
        for (name, nodes) in plan.start {
            if self.glue.discovery.live_count() >= MAX_SESSIONS {
                if self.refused.insert(name.clone(), ()).is_none() {
                    log::warn!("vchan: not serving {base}/{name}: {MAX_SESSIONS} sessions already");
                }
                continue;
            }
            self.open(store, pmap, name, nodes, counters);
        }
    }

    /// Starts a session for `name`, with the domain that owns its `ring-ref`.
    fn open(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        name: String,
        nodes: NodeValues,
        counters: &ServiceCounters,
    ) {
        let path = format!("{}/{name}", self.glue.base);
        let server = match store.get_permissions(&format!("{path}/{RING_REF}")) {
            Ok(permissions) => permissions.owner,
            Err(error) => {
                log::warn!("vchan: permissions of {path}/{RING_REF}: {error}; not connecting");
                return;
            }
        };
        let service = ServiceKind::for_path(&path);
        let key = self.registry.insert(VchanSession::new(server, service));
        log::info!(
            "vchan: server in domain {server} at {path}: session {key} ({})",
            match service {
                ServiceKind::Echo => "echo",
                ServiceKind::Command => "commands",
            }
        );
        self.glue.discovery.started(name, key, nodes.clone());
        let read = [
            (RING_REF, Some(nodes.ring_ref.as_slice())),
            (EVENT_CHANNEL, Some(nodes.event_channel.as_slice())),
        ];
        self.deliver(pmap, key, PeerEvent::PeerNodesRead(&read), counters);
    }
}

/// Reads a vchan's two nodes; `None` unless both exist.
fn read_nodes(store: &mut Xenstore, base: &str, name: &str) -> Option<NodeValues> {
    let mut read = |node: &str| {
        let path = format!("{base}/{name}/{node}");
        match store.read(NONE, &path) {
            Ok(value) => Some(value),
            Err(error) if error.is_not_found() => None,
            Err(error) => {
                log::warn!("vchan: reading {path}: {error}");
                None
            }
        }
    };
    let ring_ref = read(RING_REF)?;
    let event_channel = read(EVENT_CHANNEL)?;
    Some(NodeValues {
        ring_ref,
        event_channel,
    })
}

impl ProtocolGlue<VchanProtocol> for VchanGlue {
    fn pending(&mut self) -> &mut PendingRequests<PeerKey> {
        &mut self.pending
    }

    fn own_directory(&self, _: PeerKey) -> Option<String> {
        None
    }

    fn peer_directory(&self, key: PeerKey) -> String {
        let name = self.discovery.name_of(key).unwrap_or_default();
        format!("{}/{name}", self.base)
    }

    fn mapped(&mut self, _: PeerKey, _: MapPurpose, _: usize, _: VirtAddr) {}

    fn unmapped(&mut self, _: PeerKey, _: MapPurpose, _: usize, _: VirtAddr) {
        // Counted into the close line instead.
    }

    fn connected(&mut self, key: PeerKey, _: &()) {
        let name = self.discovery.name_of(key).unwrap_or_default();
        log::info!(
            "vchan: session {key} connected to domain {} at {}/{name}: cli_live set, serving",
            key.peer,
            self.base
        );
    }

    fn closed(
        &mut self,
        _store: Option<&mut Xenstore>,
        key: PeerKey,
        reason: &CloseReason,
        unmapped_pages: usize,
    ) {
        let name = self.discovery.ended(key);
        let path = format!("{}/{}", self.base, name.unwrap_or_default());
        match reason {
            CloseReason::Fault(_) => log::warn!(
                "vchan: session {key} at {path} revoked: {reason}; {unmapped_pages} page(s) unmapped, port closed"
            ),
            _ => log::info!(
                "vchan: session {key} with domain {} at {path} revoked: {reason}; {unmapped_pages} page(s) unmapped, port closed",
                key.peer
            ),
        }
    }
}
