//! Finding vchan servers in xenstore: which sessions to end and which to start after a watch event on the discovery directory, free of I/O.
//!
//! grantsvc watches one directory (`/local/domain/0/data/vchan/<its domid>`, Qubes' convention);
//! each child `<name>` with `ring-ref` and `event-channel` is a server. After every watch event the
//! kernel lists the directory, reads both nodes of each child (raw, untrusted bytes) and asks
//! [`Discovery::plan`] what to do:
//! - a live session whose nodes went away or changed ends (a changed server is a new server);
//! - sessions start only when the event calls for them, so that one publication is one attempt:
//!   the first event of the watch (the directory itself: a full sync, for servers that published
//!   before grantsvc started) or a write of `<name>/ring-ref`. libxenvchan's `init_xs_srv` writes
//!   both nodes in one transaction, so whenever its `ring-ref` event arrives both values are the
//!   new server's, and xenstored reports every node the transaction wrote: whichever order those
//!   events come in, only the `ring-ref` one starts a session, and the others find it unchanged;
//! - a vchan whose session ended is not tried again with the same values until its server
//!   publishes again (a faulty server is refused once, not in a loop), while a new server that
//!   happens to reuse the same grant ref and port numbers (Linux recycles both) still connects.

use crate::peer::sorted_unique::sorted_unique;
use alloc::string::String;
use alloc::vec::Vec;
use litemap::LiteMap;

/// Longest `<name>` accepted.
pub const MAX_NAME: usize = 64;

/// True for a name that is one plain xenstore path component of at most [`MAX_NAME`] bytes.
pub fn acceptable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

/// The raw values of a vchan's `ring-ref` and `event-channel` nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeValues {
    pub ring_ref: Vec<u8>,
    pub event_channel: Vec<u8>,
}

/// What a watch event on the discovery directory asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The directory itself (the watch's first event, its creation or permissions): start every
    /// vchan present that has not been tried with its current values.
    Sync,
    /// `<name>/ring-ref` was written: a server published `<name>` (again).
    Publication(String),
    /// Something else below the directory changed: only end what went away.
    Change,
}

impl Trigger {
    /// Classifies a watch event for `path` on the directory `base`.
    pub fn classify(base: &str, path: &str) -> Trigger {
        if path == base {
            return Trigger::Sync;
        }
        let name = path
            .strip_prefix(base)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|rest| rest.strip_suffix("/ring-ref"));
        match name {
            Some(name) if acceptable_name(name) => Trigger::Publication(String::from(name)),
            _ => Trigger::Change,
        }
    }
}

/// What an event asks of one vchan, weakest first (merged events ask the strongest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// Something below it changed: only end its session if its nodes went away or changed.
    Change,
    /// A full sync: also start it if it has not been tried with its current values.
    Sync,
    /// Its `ring-ref` was written: a server published it (again): end a live session, start anew.
    Publication,
}

/// What to do for one vchan.
#[derive(Debug, PartialEq, Eq)]
pub struct NamePlan<K> {
    /// Its live session, which must end.
    pub end: Option<K>,
    /// Start a session with these nodes.
    pub start: Option<NodeValues>,
}

/// What to do after one listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Names whose live session must end (their nodes went away, changed or were republished).
    pub end: Vec<String>,
    /// Vchans to start a session for.
    pub start: Vec<(String, NodeValues)>,
}

/// The vchans known: those with a live session (and its key `K`) and those whose session ended.
#[derive(Debug)]
pub struct Discovery<K> {
    live: LiteMap<String, (K, NodeValues)>,
    finished: LiteMap<String, NodeValues>,
}

impl<K> Default for Discovery<K> {
    fn default() -> Self {
        Discovery {
            live: LiteMap::new(),
            finished: LiteMap::new(),
        }
    }
}

impl<K: Copy + PartialEq> Discovery<K> {
    /// Decides from the vchans `present` now (acceptable names with both nodes) and the event's
    /// `trigger`, for every vchan present or known. Forgets ended vchans whose nodes went away,
    /// changed or were republished.
    pub fn plan(&mut self, present: &LiteMap<String, NodeValues>, trigger: &Trigger) -> Plan {
        let names: Vec<String> = present
            .keys()
            .chain(self.live.keys())
            .chain(self.finished.keys())
            .cloned()
            .collect();
        let mut plan = Plan::default();
        for name in sorted_unique(names) {
            let call = match trigger {
                Trigger::Sync => Call::Sync,
                Trigger::Publication(published) if *published == name => Call::Publication,
                _ => Call::Change,
            };
            let one = self.plan_name(&name, present.get(&name), call);
            if one.end.is_some() {
                plan.end.push(name.clone());
            }
            if let Some(nodes) = one.start {
                plan.start.push((name, nodes));
            }
        }
        plan
    }

    /// Decides for the one vchan `name` from its nodes as read now (`None` unless both exist)
    /// and what the event asked of it. Forgets its ended session if its nodes went away,
    /// changed or were republished.
    pub fn plan_name(
        &mut self,
        name: &str,
        present: Option<&NodeValues>,
        call: Call,
    ) -> NamePlan<K> {
        let republished = call == Call::Publication;
        let end = self
            .live
            .get(name)
            .filter(|(_, nodes)| present != Some(nodes) || republished)
            .map(|(key, _)| *key);
        let forget = self
            .finished
            .get(name)
            .is_some_and(|nodes| present != Some(nodes) || republished);
        if forget {
            self.finished.remove(name);
        }
        let staying = self.live.contains_key(name) && end.is_none();
        let start = present
            .filter(|nodes| {
                call >= Call::Sync && !staying && self.finished.get(name) != Some(*nodes)
            })
            .cloned();
        NamePlan { end, start }
    }

    /// The names of every vchan known (with a live session, or ended).
    pub fn known_names(&self) -> impl Iterator<Item = &String> + '_ {
        self.live.keys().chain(self.finished.keys())
    }

    /// A session `key` was started for `name` with `nodes`.
    pub fn started(&mut self, name: String, key: K, nodes: NodeValues) {
        self.finished.remove(&name);
        self.live.insert(name, (key, nodes));
    }

    /// The session `key` ended: its vchan is not tried again with the same values until its
    /// server publishes again. Returns the vchan's name, if the session was known.
    pub fn ended(&mut self, key: K) -> Option<String> {
        let name = self.name_of(key)?;
        if let Some((_, nodes)) = self.live.remove(&name) {
            self.finished.insert(name.clone(), nodes);
        }
        Some(name)
    }

    /// The live session of `name`.
    pub fn key_of(&self, name: &str) -> Option<K> {
        self.live.get(name).map(|(key, _)| *key)
    }

    /// The name of the live session `key`.
    pub fn name_of(&self, key: K) -> Option<String> {
        self.live
            .iter()
            .find(|(_, (live_key, _))| *live_key == key)
            .map(|(name, _)| name.clone())
    }

    /// Keys of every live session.
    pub fn live_keys(&self) -> impl Iterator<Item = K> + '_ {
        self.live.values().map(|(key, _)| *key)
    }

    /// Number of live sessions.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const BASE: &str = "/local/domain/0/data/vchan/7";

    fn values(ring_ref: &str, event_channel: &str) -> NodeValues {
        NodeValues {
            ring_ref: ring_ref.as_bytes().to_vec(),
            event_channel: event_channel.as_bytes().to_vec(),
        }
    }

    fn present(entries: &[(&str, NodeValues)]) -> LiteMap<String, NodeValues> {
        entries
            .iter()
            .map(|(name, nodes)| (name.to_string(), nodes.clone()))
            .collect()
    }

    fn event(path: &str) -> Trigger {
        Trigger::classify(BASE, &alloc::format!("{BASE}{path}"))
    }

    /// Applies a plan as the kernel does: ends first, then starts with fresh keys.
    fn apply(discovery: &mut Discovery<u32>, plan: &Plan, next_key: &mut u32) -> Vec<String> {
        for name in &plan.end {
            let key = discovery.key_of(name).unwrap();
            discovery.ended(key);
        }
        plan.start
            .iter()
            .map(|(name, nodes)| {
                *next_key += 1;
                discovery.started(name.clone(), *next_key, nodes.clone());
                name.clone()
            })
            .collect()
    }

    #[test]
    fn events_are_classified_by_path() {
        assert_eq!(event(""), Trigger::Sync);
        assert_eq!(event("/echo/ring-ref"), Trigger::Publication("echo".into()));
        assert_eq!(event("/echo/event-channel"), Trigger::Change);
        assert_eq!(event("/echo"), Trigger::Change);
        assert_eq!(event("/a/b/ring-ref"), Trigger::Change);
        assert_eq!(
            Trigger::classify(BASE, "/local/domain/0/data/vchan/70/echo/ring-ref"),
            Trigger::Change
        );
        assert!(!acceptable_name(""));
        assert!(!acceptable_name(&"x".repeat(MAX_NAME + 1)));
        assert!(acceptable_name("cmd") && acceptable_name("echo-2.b_c"));
    }

    #[test]
    fn a_sync_starts_every_server_present_once() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let now = present(&[("echo", values("8", "5")), ("cmd", values("9", "6"))]);
        let plan = discovery.plan(&now, &Trigger::Sync);
        assert_eq!(apply(&mut discovery, &plan, &mut keys), vec!["cmd", "echo"]);
        assert!(plan.end.is_empty());
        assert_eq!(discovery.plan(&now, &Trigger::Sync), Plan::default());
        assert_eq!(discovery.live_count(), 2);
    }

    #[test]
    fn a_transaction_s_events_in_path_order_start_one_session() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let now = present(&[("echo", values("8", "5"))]);
        let mut started = Vec::new();
        for path in ["/echo", "/echo/event-channel", "/echo/ring-ref"] {
            let plan = discovery.plan(&now, &event(path));
            assert!(plan.end.is_empty(), "{path}");
            started.extend(apply(&mut discovery, &plan, &mut keys));
        }
        assert_eq!(started, vec!["echo"]);
    }

    #[test]
    fn the_events_in_the_other_order_also_start_one_session() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let now = present(&[("echo", values("8", "5"))]);
        let mut started = Vec::new();
        for path in ["/echo/ring-ref", "/echo/event-channel", "/echo"] {
            let plan = discovery.plan(&now, &event(path));
            assert!(plan.end.is_empty(), "{path}");
            started.extend(apply(&mut discovery, &plan, &mut keys));
        }
        assert_eq!(started, vec!["echo"]);
    }

    #[test]
    fn a_faulty_server_is_tried_once_and_again_only_when_it_publishes_again() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let now = present(&[("bad", values("12ab", "5"))]);
        let plan = discovery.plan(&now, &event("/bad/ring-ref"));
        apply(&mut discovery, &plan, &mut keys);
        assert_eq!(discovery.ended(1), Some("bad".to_string()));
        for trigger in [Trigger::Sync, Trigger::Change, event("/bad/event-channel")] {
            assert_eq!(discovery.plan(&now, &trigger), Plan::default());
        }
        // A new server that reuses the very same numbers (Linux recycles refs and ports).
        let plan = discovery.plan(&now, &event("/bad/ring-ref"));
        assert_eq!(apply(&mut discovery, &plan, &mut keys), vec!["bad"]);
    }

    #[test]
    fn a_live_session_ends_when_its_nodes_go_or_change_and_is_replaced_on_republication() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let first = present(&[("echo", values("8", "5")), ("cmd", values("9", "6"))]);
        let plan = discovery.plan(&first, &Trigger::Sync);
        apply(&mut discovery, &plan, &mut keys);
        // cmd's nodes removed; echo's event-channel rewritten alone: both end, neither restarts.
        let second = present(&[("echo", values("8", "40"))]);
        let plan = discovery.plan(&second, &event("/echo/event-channel"));
        assert_eq!(plan.end, vec!["cmd", "echo"]);
        assert!(plan.start.is_empty());
        apply(&mut discovery, &plan, &mut keys);
        // The echo server publishes again: a new session.
        let plan = discovery.plan(&second, &event("/echo/ring-ref"));
        assert_eq!(apply(&mut discovery, &plan, &mut keys), vec!["echo"]);
        // Republished while live (same values): the old session ends, a new one starts.
        let plan = discovery.plan(&second, &event("/echo/ring-ref"));
        assert_eq!(plan.end, vec!["echo"]);
        assert_eq!(apply(&mut discovery, &plan, &mut keys), vec!["echo"]);
        assert_eq!(discovery.live_keys().collect::<Vec<_>>(), vec![keys]);
    }

    #[test]
    fn an_ended_vchan_is_forgotten_once_its_nodes_are_gone() {
        let mut discovery = Discovery::default();
        let mut keys = 0;
        let now = present(&[("echo", values("8", "5"))]);
        let plan = discovery.plan(&now, &Trigger::Sync);
        apply(&mut discovery, &plan, &mut keys);
        discovery.ended(1);
        assert_eq!(discovery.plan(&now, &Trigger::Sync), Plan::default());
        assert_eq!(
            discovery.plan(&present(&[]), &event("/echo")),
            Plan::default()
        );
        // Created again with the same values: a sync now starts it.
        let plan = discovery.plan(&now, &Trigger::Sync);
        assert_eq!(apply(&mut discovery, &plan, &mut keys), vec!["echo"]);
        assert_eq!(discovery.ended(99), None);
    }
}
