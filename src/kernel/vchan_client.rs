//! The kernel's vchan client: finds libxenvchan servers published for grantsvc in xenstore and runs one framework session per server; the service owns it.
//!
//! # Discovery convention (Qubes' convention for vchan paths)
//! A server in domain S that serves grantsvc (domid G) publishes its vchan under
//! `/local/domain/S/data/vchan/G/<name>`, e.g. `vchan-socket-proxy -m server G
//! /local/domain/0/data/vchan/G/echo SOCKET`. grantsvc serves dom0's servers: it watches
//! `/local/domain/0/data/vchan/G`, which the toolstack creates readable by G (xenstored filters
//! watch events, directory listings and reads by the reader's permissions; libxenvchan itself
//! makes `ring-ref` and `event-channel` readable by G). A watch event below it has that one
//! `<name>`'s two nodes read; the directory's own event (the watch's first) lists it. A `<name>`
//! with both nodes present gets a session with the domain that owns `ring-ref` (from its
//! permissions) when its `ring-ref` is written, or at the first listing for servers that
//! published before grantsvc started. None of it waits: the requests are in flight while the
//! loop serves others, and their answers are acted on as they arrive
//! ([`grantsvc::peer::vchan::search`], host-tested). The name chooses the service: `cmd`
//! carries one-line commands, any other name an echo ([`ServiceKind::for_path`]).
//!
//! # Lifecycle
//! A session follows `VchanSession`'s actions, carried out by [`super::peer_executor`]: bind the
//! server's port, map the shared page and the rings through the service's pmap, set `cli_live`,
//! then pump the stream when the port fires and at each liveness check (a server that is killed
//! may close its port before gntalloc's unmap notify can signal it). Revocation in every form -
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

use super::peer_executor::{PmapHandle, ProtocolGlue, Region};
use super::peer_sessions::{nothing_after_event, Sessions};
use super::store_connection::{WatchOwner, Xenstore};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::addr::VirtAddr;
use grantsvc::event_delivery::ReadySnapshot;
use grantsvc::ids::DomId;
use grantsvc::peer::action::PeerEvent;
use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::vchan::discovery::NodeValues;
use grantsvc::peer::vchan::protocol::VchanProtocol;
use grantsvc::peer::vchan::registry::PeerKey;
use grantsvc::peer::vchan::search::{Found, ServerSearch};
use grantsvc::peer::vchan::service::ServiceKind;
use grantsvc::peer::vchan::session::{CloseReason, VchanSession, EVENT_CHANNEL, RING_REF};
use grantsvc::peer::vchan::session_fault::MapPurpose;

/// Watch owner of this module (the service routes its events here), distinct from others'.
pub const DIRECTORY_OWNER: WatchOwner = 0x7663_0001;
const DIRECTORY_TOKEN: &str = "grantsvc-vchan-directory";
/// The domain whose servers grantsvc looks for.
const SERVER_HOME: &str = "/local/domain/0";
/// Most vchans served at once; more names are left alone (and logged once each).
const MAX_SESSIONS: usize = 32;

/// What vchan adds when its actions are carried out: the names of the vchans, log lines.
struct VchanGlue {
    /// The vchans known, live or ended, by name, and discovery's requests in flight.
    search: ServerSearch<PeerKey>,
}

/// The vchan client, owned by the service.
pub struct VchanClient {
    sessions: Sessions<VchanSession<Region>, VchanGlue>,
}

/// True for the watch owners whose events [`VchanClient::on_watch_event`] takes.
pub fn owns(owner: WatchOwner) -> bool {
    owner == DIRECTORY_OWNER
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
        let glue = VchanGlue {
            search: ServerSearch::new(&base, MAX_SESSIONS),
        };
        Some(VchanClient {
            sessions: Sessions::new(glue, nothing_after_event),
        })
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Sessions ended for a fault of the server's, since boot.
    pub fn faults(&self) -> u64 {
        self.sessions.faults()
    }

    /// Sessions with a bound port (what the liveness check looks at).
    pub fn bound_sessions(&self) -> usize {
        self.sessions.bound()
    }

    /// Takes a watch event of ours for `path`: discovery's requests go out, their answers
    /// come in [`VchanClient::on_replies`].
    pub fn on_watch_event(&mut self, store: &mut Xenstore, path: &str) {
        self.sessions.glue.search.on_watch_event(store, path);
    }

    /// True when a reply discovery waits for has arrived (work for the run loop).
    pub fn has_replies(&self, store: &Xenstore) -> bool {
        self.sessions.glue.search.has_replies(store) || self.sessions.has_replies(store)
    }

    /// Takes discovery's replies: ends the sessions whose vchan went or changed, starts the
    /// sessions of servers found.
    pub fn on_replies(
        &mut self,
        store: &mut Xenstore,
        pmap: PmapHandle,
        counters: &ServiceCounters,
    ) {
        for found in self.sessions.glue.search.take_replies(store) {
            match found {
                // vchan writes no nodes: its sessions need no xenstore.
                Found::End(key) => {
                    self.sessions
                        .deliver(None, pmap, key, PeerEvent::PeerNodesRemoved, counters)
                }
                Found::Open {
                    name,
                    server,
                    nodes,
                } => self.open(pmap, name, server, nodes, counters),
            }
        }
        self.sessions.on_replies(store, pmap, counters);
    }

    /// Serves the ports that fired.
    pub fn on_ports(
        &mut self,
        pmap: PmapHandle,
        ready: &ReadySnapshot,
        counters: &ServiceCounters,
    ) {
        self.sessions
            .on_ports(None, pmap, ready, core::iter::empty(), counters);
    }

    /// The liveness check: pumps every connected session as if its port had fired (a server
    /// killed without a signal is found by its cleared `srv_live` or its nodes), then ends the
    /// sessions whose port's remote end is no longer their server's (its domain died, or it
    /// closed the channel while `srv_live` stayed 1). The poll rides the liveness check's
    /// half-second deadline, so an idle session wakes the loop for one timer, not two.
    pub fn check_liveness(&mut self, pmap: PmapHandle, counters: &ServiceCounters) {
        let live: Vec<PeerKey> = self.sessions.glue.search.live_keys().collect();
        self.sessions.on_ports(
            None,
            pmap,
            &ReadySnapshot::default(),
            live.into_iter(),
            counters,
        );
        self.sessions.check_liveness(None, pmap, counters);
    }

    /// Ends every session (grantsvc is stopping); returns how many there were.
    pub fn close_all(&mut self, pmap: PmapHandle, counters: &ServiceCounters) -> usize {
        self.sessions.close_all(None, pmap, counters)
    }

    /// Starts a session for `name` with `server`, the domain that owns its `ring-ref`.
    fn open(
        &mut self,
        pmap: PmapHandle,
        name: String,
        server: DomId,
        nodes: NodeValues,
        counters: &ServiceCounters,
    ) {
        let path = format!("{}/{name}", self.sessions.glue.search.base());
        let service = ServiceKind::for_path(&path);
        let read = [
            (RING_REF, Some(nodes.ring_ref.as_slice())),
            (EVENT_CHANNEL, Some(nodes.event_channel.as_slice())),
        ];
        let session = VchanSession::new(server, service);
        // Known by name before its first event, so that its log lines and its end find it.
        let key = self.sessions.insert_then(session, |glue, key| {
            log::info!(
                "vchan: server in domain {server} at {path}: session {key} ({})",
                match service {
                    ServiceKind::Echo => "echo",
                    ServiceKind::Command => "commands",
                }
            );
            glue.search.started(name, key, nodes.clone());
        });
        self.sessions
            .deliver(None, pmap, key, PeerEvent::PeerNodesRead(&read), counters);
    }
}

impl ProtocolGlue<VchanProtocol> for VchanGlue {
    fn own_directory(&self, _: PeerKey) -> Option<String> {
        None
    }

    fn peer_directory(&self, key: PeerKey) -> String {
        let name = self.search.name_of(key).unwrap_or_default();
        format!("{}/{name}", self.search.base())
    }

    fn mapped(&mut self, _: PeerKey, _: MapPurpose, _: usize, _: VirtAddr) {}

    fn unmapped(&mut self, _: PeerKey, _: MapPurpose, _: usize, _: VirtAddr) {
        // Counted into the close line instead.
    }

    fn connected(&mut self, key: PeerKey, _: &()) {
        let name = self.search.name_of(key).unwrap_or_default();
        log::info!(
            "vchan: session {key} connected to domain {} at {}/{name}: cli_live set, serving",
            key.peer,
            self.search.base()
        );
    }

    fn closed(
        &mut self,
        _store: Option<&mut Xenstore>,
        key: PeerKey,
        reason: &CloseReason,
        unmapped_pages: usize,
    ) {
        let name = self.search.ended(key);
        let path = format!("{}/{}", self.search.base(), name.unwrap_or_default());
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
