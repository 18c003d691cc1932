//! The search for vchan servers without waiting: the xenstore requests of discovery in flight (the directory's listing, each vchan's two nodes, the owner of its `ring-ref`) and what their replies mean.
//!
//! A watch event below the discovery directory concerns one vchan, `<name>`: its `ring-ref`
//! and `event-channel` are read together, and [`Discovery::plan_name`] decides from them; a
//! session to start first needs the domain that owns `ring-ref` (its permissions). Every vchan's
//! requests are in flight at once, so 32 servers published together cost three round trips,
//! not 32 times three. One vchan has at most one lookup in flight: events that arrive meanwhile
//! are merged into one more lookup after it (the strongest [`Call`] wins), so its answers are
//! applied in the order the store changed. An event for the directory itself (the watch's
//! first) lists it and looks up every vchan listed or known.
//!
//! Errors: a listing refused (the toolstack has not given grantsvc read access yet) is skipped
//! until the next event; a node that cannot be read reads as absent (a live session on it
//! ends), and so does one whose read cannot even be sent (the connection's backlog is full),
//! decided at once rather than waiting for a reply that will never come; an owner that cannot
//! be read leaves the vchan unconnected until its server publishes again. Names that are not
//! plain, and vchans beyond the session limit, are refused with one log line each.

use super::discovery::{acceptable_name, Call, Discovery, NodeValues, MAX_NAME};
use super::session::{EVENT_CHANNEL, RING_REF};
use crate::ids::DomId;
use crate::peer::sorted_unique::sorted_unique;
use crate::peer::store_requests::{directory_names, read_value, take_arrived, StoreRequests};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;
use xenstore::{Operation, Reply, ReplyError, RequestId, XsError};

/// What the search found that the caller must act on.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<K> {
    /// The vchan of this live session went away, changed or was republished: end the session.
    End(K),
    /// A server to connect to: start a session with `server` for `name`, then call
    /// [`ServerSearch::started`].
    Open {
        name: String,
        server: DomId,
        nodes: NodeValues,
    },
}

/// One node's read in flight or answered (`None`: absent or unreadable).
#[derive(Debug)]
enum NodeRead {
    Waiting(RequestId),
    Read(Option<Vec<u8>>),
}

/// Where a vchan's lookup stands.
#[derive(Debug)]
enum Stage {
    /// Its `ring-ref` and `event-channel` being read.
    Reading {
        ring_ref: NodeRead,
        event_channel: NodeRead,
    },
    /// Its `ring-ref`'s owner being read, to start a session with these nodes.
    Owner { id: RequestId, nodes: NodeValues },
}

/// One vchan's lookup.
#[derive(Debug)]
struct Lookup {
    call: Call,
    stage: Stage,
    /// Events that arrived meanwhile, merged: one more lookup when this one ends.
    again: Option<Call>,
}

/// Vchan discovery's requests in flight, and the vchans known (live sessions of key `K`).
#[derive(Debug)]
pub struct ServerSearch<K> {
    /// The discovery directory.
    base: String,
    discovery: Discovery<K>,
    max_sessions: usize,
    /// The directory's listing in flight.
    listing: Option<RequestId>,
    /// Another listing was asked for meanwhile.
    list_again: bool,
    lookups: LiteMap<String, Lookup>,
    /// What lookups whose reads could not be sent decided, for the next
    /// [`ServerSearch::take_replies`].
    decided: Vec<Found<K>>,
    /// Names refused (not plain, or beyond the session limit), logged once each.
    refused: LiteMap<String, ()>,
}

impl<K: Copy + PartialEq> ServerSearch<K> {
    /// The search below `base`, serving at most `max_sessions` vchans at once.
    pub fn new(base: &str, max_sessions: usize) -> ServerSearch<K> {
        ServerSearch {
            base: String::from(base),
            discovery: Discovery::default(),
            max_sessions,
            listing: None,
            list_again: false,
            lookups: LiteMap::new(),
            decided: Vec::new(),
            refused: LiteMap::new(),
        }
    }

    /// The discovery directory.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A watch event for `path`: sends what it calls for.
    pub fn on_watch_event<S: StoreRequests>(&mut self, store: &mut S, path: &str) {
        if path == self.base {
            self.list(store);
            return;
        }
        let Some(rest) = path
            .strip_prefix(self.base.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
        else {
            return;
        };
        let name = rest.split('/').next().unwrap_or_default();
        let call = if rest.strip_prefix(name) == Some("/ring-ref") {
            Call::Publication
        } else {
            Call::Change
        };
        self.look_up(store, name, call);
    }

    /// The requests in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        let mut ids: Vec<RequestId> = self.listing.into_iter().collect();
        for lookup in self.lookups.values() {
            match &lookup.stage {
                Stage::Reading {
                    ring_ref,
                    event_channel,
                } => {
                    for read in [ring_ref, event_channel] {
                        if let NodeRead::Waiting(id) = read {
                            ids.push(*id);
                        }
                    }
                }
                Stage::Owner { id, .. } => ids.push(*id),
            }
        }
        ids
    }

    /// True when a reply of the search's has arrived (or a lookup decided without one).
    pub fn has_replies<S: StoreRequests>(&self, store: &S) -> bool {
        !self.decided.is_empty() || self.ids().into_iter().any(|id| store.has_reply(id))
    }

    /// Takes every reply that has arrived (and those to the requests they lead to, if already
    /// here); what the caller must do.
    pub fn take_replies<S: StoreRequests>(&mut self, store: &mut S) -> Vec<Found<K>> {
        let mut found = core::mem::take(&mut self.decided);
        loop {
            let arrived = take_arrived(store, &self.ids());
            if arrived.is_empty() {
                break;
            }
            for (id, result) in arrived {
                found.extend(self.answer(store, id, result));
            }
        }
        found.append(&mut self.decided);
        // A lookup decided without a reply may name a session that ended since, and a vchan
        // whose reads could not be sent twice before the caller acted has its end twice.
        let mut ending = Vec::new();
        found.retain(|found| match found {
            Found::End(key) if ending.contains(key) || self.discovery.name_of(*key).is_none() => {
                false
            }
            Found::End(key) => {
                ending.push(*key);
                true
            }
            Found::Open { .. } => true,
        });
        found
    }

    /// Takes the reply to `id` (one of [`ServerSearch::ids`]); what the caller must do.
    pub fn answer<S: StoreRequests>(
        &mut self,
        store: &mut S,
        id: RequestId,
        result: Result<Reply, ReplyError>,
    ) -> Vec<Found<K>> {
        if self.listing == Some(id) {
            self.listing = None;
            self.listed(store, result);
            if core::mem::take(&mut self.list_again) {
                self.list(store);
            }
            return Vec::new();
        }
        let Some(name) = self.lookup_of(id) else {
            return Vec::new();
        };
        let path = format!("{}/{name}", self.base);
        let Some(lookup) = self.lookups.get_mut(&name) else {
            return Vec::new();
        };
        let call = lookup.call;
        let nodes = match &mut lookup.stage {
            Stage::Reading {
                ring_ref,
                event_channel,
            } => {
                for (node, read) in [
                    (RING_REF, &mut *ring_ref),
                    (EVENT_CHANNEL, &mut *event_channel),
                ] {
                    if matches!(read, NodeRead::Waiting(waiting) if *waiting == id) {
                        *read = NodeRead::Read(node_value(&path, node, result.clone()));
                    }
                }
                match (&*ring_ref, &*event_channel) {
                    (NodeRead::Waiting(_), _) | (_, NodeRead::Waiting(_)) => return Vec::new(),
                    (NodeRead::Read(Some(ring_ref)), NodeRead::Read(Some(event_channel))) => {
                        Some(NodeValues {
                            ring_ref: ring_ref.clone(),
                            event_channel: event_channel.clone(),
                        })
                    }
                    // A node absent or unreadable: not a server (any more).
                    _ => None,
                }
            }
            Stage::Owner {
                id: owner_id,
                nodes,
            } if *owner_id == id => {
                let nodes = nodes.clone();
                let found = match result {
                    Ok(Reply::Permissions(permissions)) => Some(Found::Open {
                        name: name.clone(),
                        server: permissions.owner,
                        nodes,
                    }),
                    other => {
                        log::warn!(
                            "vchan: the owner of {path}/{RING_REF} could not be read ({}); not connecting",
                            describe(&other)
                        );
                        None
                    }
                };
                self.finish(store, &name);
                return found.into_iter().collect();
            }
            Stage::Owner { .. } => return Vec::new(),
        };
        self.decide(store, &name, nodes.as_ref(), call)
            .into_iter()
            .collect()
    }

    /// Decides for `name` from its nodes as read (`None`: absent or unreadable): asks for its
    /// owner to start a session, or ends its lookup; returns the end of its live session, if due.
    fn decide<S: StoreRequests>(
        &mut self,
        store: &mut S,
        name: &str,
        nodes: Option<&NodeValues>,
        call: Call,
    ) -> Option<Found<K>> {
        let plan = self.discovery.plan_name(name, nodes, call);
        match plan.start {
            Some(nodes) => self.ask_owner(store, name, nodes, plan.end.is_some()),
            None => self.finish(store, name),
        }
        plan.end.map(Found::End)
    }

    /// A session `key` was started for `name` with `nodes` (after [`Found::Open`]).
    pub fn started(&mut self, name: String, key: K, nodes: NodeValues) {
        self.discovery.started(name, key, nodes);
    }

    /// The session `key` ended; returns its vchan's name, if it was known.
    pub fn ended(&mut self, key: K) -> Option<String> {
        self.discovery.ended(key)
    }

    /// The name of the live session `key`.
    pub fn name_of(&self, key: K) -> Option<String> {
        self.discovery.name_of(key)
    }

    /// Keys of every live session.
    pub fn live_keys(&self) -> impl Iterator<Item = K> + '_ {
        self.discovery.live_keys()
    }

    /// Number of live sessions.
    pub fn live_count(&self) -> usize {
        self.discovery.live_count()
    }

    /// Lists the directory, or asks for one more listing after the one in flight.
    fn list<S: StoreRequests>(&mut self, store: &mut S) {
        if self.listing.is_some() {
            self.list_again = true;
            return;
        }
        match store.submit(&Operation::Directory { path: &self.base }) {
            Ok(id) => self.listing = Some(id),
            Err(error) => log::warn!("vchan: listing {}: {error}", self.base),
        }
    }

    /// The listing's answer: every vchan listed or known is looked up.
    fn listed<S: StoreRequests>(&mut self, store: &mut S, result: Result<Reply, ReplyError>) {
        let names = match directory_names(result) {
            Ok(names) => names,
            // Not (yet) readable by us: the toolstack creates it, then gives us read access,
            // which fires the watch again.
            Err(ReplyError::Xenstore(XsError::AccessDenied)) => {
                log::debug!("vchan: {} is not readable by us (yet)", self.base);
                return;
            }
            Err(error) => {
                log::warn!("vchan: listing {}: {error}", self.base);
                return;
            }
        };
        let mut all: Vec<String> = self.discovery.known_names().cloned().collect();
        all.extend(names);
        for name in sorted_unique(all) {
            self.look_up(store, &name, Call::Sync);
        }
    }

    /// Reads `name`'s two nodes, or merges `call` into the lookup in flight.
    fn look_up<S: StoreRequests>(&mut self, store: &mut S, name: &str, call: Call) {
        if !acceptable_name(name) {
            if self.refused.insert(String::from(name), ()).is_none() {
                log::warn!(
                    "vchan: ignoring {}/\"{}\": not a plain name of at most {MAX_NAME} characters",
                    self.base,
                    name.as_bytes().escape_ascii()
                );
            }
            return;
        }
        if let Some(lookup) = self.lookups.get_mut(name) {
            lookup.again = Some(lookup.again.map_or(call, |again| again.max(call)));
            return;
        }
        let stage = self.read_nodes(store, name);
        self.lookups.insert(
            String::from(name),
            Lookup {
                call,
                stage,
                again: None,
            },
        );
        self.decide_if_unsent(store, name);
    }

    /// A lookup none of whose reads could be sent decides now, its nodes read as absent: no
    /// reply will come for it, and waiting would stall the vchan for good (later events only
    /// merge into a lookup in flight).
    fn decide_if_unsent<S: StoreRequests>(&mut self, store: &mut S, name: &str) {
        let Some(lookup) = self.lookups.get(name) else {
            return;
        };
        if let Stage::Reading {
            ring_ref: NodeRead::Read(_),
            event_channel: NodeRead::Read(_),
        } = lookup.stage
        {
            let call = lookup.call;
            let decided = self.decide(store, name, None, call);
            self.decided.extend(decided);
        }
    }

    /// Sends the reads of `name`'s two nodes (one that cannot be sent reads as absent).
    fn read_nodes<S: StoreRequests>(&self, store: &mut S, name: &str) -> Stage {
        let mut read = |node: &str| {
            let path = format!("{}/{name}/{node}", self.base);
            match store.submit(&Operation::Read { path: &path }) {
                Ok(id) => NodeRead::Waiting(id),
                Err(error) => {
                    log::warn!("vchan: reading {path}: {error}");
                    NodeRead::Read(None)
                }
            }
        };
        Stage::Reading {
            ring_ref: read(RING_REF),
            event_channel: read(EVENT_CHANNEL),
        }
    }

    /// A server to start a session with: reads its `ring-ref`'s owner, unless the session
    /// limit is reached (`replacing`: a live session of the vchan ends first).
    fn ask_owner<S: StoreRequests>(
        &mut self,
        store: &mut S,
        name: &str,
        nodes: NodeValues,
        replacing: bool,
    ) {
        let opening = self
            .lookups
            .values()
            .filter(|lookup| matches!(lookup.stage, Stage::Owner { .. }))
            .count();
        let live = self.discovery.live_count() - usize::from(replacing);
        if live + opening >= self.max_sessions {
            if self.refused.insert(String::from(name), ()).is_none() {
                log::warn!(
                    "vchan: not serving {}/{name}: {} sessions already",
                    self.base,
                    self.max_sessions
                );
            }
            self.finish(store, name);
            return;
        }
        let path = format!("{}/{name}/{RING_REF}", self.base);
        let stage = match store.submit(&Operation::GetPermissions { path: &path }) {
            Ok(id) => Stage::Owner { id, nodes },
            Err(error) => {
                log::warn!("vchan: permissions of {path}: {error}; not connecting");
                self.finish(store, name);
                return;
            }
        };
        if let Some(lookup) = self.lookups.get_mut(name) {
            lookup.stage = stage;
        }
    }

    /// Ends `name`'s lookup; starts one more if events asked for it meanwhile.
    fn finish<S: StoreRequests>(&mut self, store: &mut S, name: &str) {
        let Some(lookup) = self.lookups.get_mut(name) else {
            return;
        };
        match lookup.again.take() {
            Some(call) => {
                let stage = self.read_nodes(store, name);
                if let Some(lookup) = self.lookups.get_mut(name) {
                    lookup.call = call;
                    lookup.stage = stage;
                }
                self.decide_if_unsent(store, name);
            }
            None => {
                self.lookups.remove(name);
            }
        }
    }

    /// The vchan whose lookup sent `id`.
    fn lookup_of(&self, id: RequestId) -> Option<String> {
        self.lookups
            .iter()
            .find(|(_, lookup)| match &lookup.stage {
                Stage::Reading {
                    ring_ref,
                    event_channel,
                } => [ring_ref, event_channel]
                    .iter()
                    .any(|read| matches!(read, NodeRead::Waiting(waiting) if *waiting == id)),
                Stage::Owner { id: owner_id, .. } => *owner_id == id,
            })
            .map(|(name, _)| name.clone())
    }
}

/// A node's value from its read's reply (`None`: absent, or unreadable, which is logged).
fn node_value(path: &str, node: &str, result: Result<Reply, ReplyError>) -> Option<Vec<u8>> {
    match read_value(result) {
        Ok(value) => value,
        Err(error) => {
            log::warn!("vchan: reading {path}/{node}: {error}");
            None
        }
    }
}

/// A reply's error for a log line.
fn describe(result: &Result<Reply, ReplyError>) -> String {
    match result {
        Ok(reply) => format!("unexpected reply ({:?})", reply.kind()),
        Err(error) => format!("{error}"),
    }
}

#[cfg(test)]
mod tests;
