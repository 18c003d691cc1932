//! Fuzz target: vchan discovery (the directory's listings, each vchan's two node values and its `ring-ref`'s owner, all written by dom0's vchan servers) in any order, with any reply.
//!
//! The input is a series of steps, a byte choosing each: a watch event (for the directory, a
//! name's `ring-ref`, or anything else below it), xenstored answering one of the requests in
//! flight with any reply (a listing of any names, a value of any bytes, an owner, an error, a
//! reply of the wrong kind), xenstore refusing new requests or taking them again, or a session
//! ending as a faulty server's would. The harness acts on what the search finds as the kernel
//! does (`vchan_client.rs`). Properties: nothing panics; the search waits for exactly the
//! requests it sent that are unanswered (none is forgotten, which would stall that vchan for
//! ever, and none waited for that was never sent); a vchan has at most one lookup in flight
//! (its two reads, or its owner's); a session opens only for a plain name, with the values and
//! owner xenstored last answered for it, and never beyond the session limit; a session ends
//! only while live.
#![no_main]

use grantsvc::ids::DomId;
use grantsvc::peer::store_requests::StoreRequests;
use grantsvc::peer::vchan::discovery::{acceptable_name, NodeValues};
use grantsvc::peer::vchan::search::{Found, ServerSearch};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use xenstore::{
    Access, NodePermissions, Operation, Reply, ReplyError, RequestId, TransactionId, XsError,
};

const BASE: &str = "/local/domain/0/data/vchan/7";
/// Small, so that the limit is met often.
const MAX_SESSIONS: usize = 3;
/// The names watch events and listings carry: plain ones, and ones the search must refuse.
const NAMES: [&str; 8] = [
    "echo", "cmd", "a.b-c_d", "x", "", "bad name", "a/b", "%s\u{1}",
];

/// What a request in flight asked.
#[derive(Clone, Debug)]
enum Asked {
    Directory,
    Read(String),
    Owner(String),
}

impl Asked {
    /// The vchan a node request is about.
    fn name(&self) -> Option<&str> {
        match self {
            Asked::Directory => None,
            Asked::Read(path) | Asked::Owner(path) => path
                .strip_prefix(BASE)
                .and_then(|rest| rest.strip_prefix('/'))
                .and_then(|rest| rest.split('/').next()),
        }
    }
}

/// xenstore as the search sees it: requests wait until the input answers them.
#[derive(Default)]
struct Store {
    next: u32,
    in_flight: BTreeMap<RequestId, Asked>,
    arrived: BTreeMap<RequestId, Result<Reply, ReplyError>>,
    refusing: bool,
}

impl StoreRequests for Store {
    type Error = &'static str;

    fn submit_in(
        &mut self,
        transaction: TransactionId,
        operation: &Operation<'_>,
    ) -> Result<RequestId, &'static str> {
        assert_eq!(
            transaction,
            TransactionId::NONE,
            "discovery uses no transaction"
        );
        if self.refusing {
            return Err("the request backlog is full");
        }
        let asked = match *operation {
            Operation::Directory { path } => {
                assert_eq!(path, BASE);
                Asked::Directory
            }
            Operation::Read { path } => Asked::Read(path.to_owned()),
            Operation::GetPermissions { path } => Asked::Owner(path.to_owned()),
            other => panic!("discovery sent {other:?}"),
        };
        self.next += 1;
        let id = RequestId::new(self.next);
        self.in_flight.insert(id, asked);
        Ok(id)
    }

    fn take_reply(&mut self, id: RequestId) -> Option<Result<Reply, ReplyError>> {
        self.arrived.remove(&id)
    }

    fn has_reply(&self, id: RequestId) -> bool {
        self.arrived.contains_key(&id)
    }

    fn abandon(&mut self, id: RequestId) {
        self.in_flight.remove(&id);
        self.arrived.remove(&id);
    }
}

/// The input, read a byte at a time (zeroes once it is spent).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn name(&mut self) -> &'static str {
        NAMES[usize::from(self.byte()) % NAMES.len()]
    }

    fn bytes(&mut self) -> Vec<u8> {
        let length = usize::from(self.byte() % 12);
        (0..length).map(|_| self.byte()).collect()
    }

    fn error(&mut self) -> ReplyError {
        match self.byte() % 4 {
            0 => ReplyError::Xenstore(XsError::NotFound),
            1 => ReplyError::Xenstore(XsError::AccessDenied),
            2 => ReplyError::Xenstore(XsError::TooBig),
            _ => ReplyError::UnknownErrorName,
        }
    }
}

/// Any reply to `asked`: mostly of its kind, else an error or another kind.
fn reply(input: &mut Input, asked: &Asked) -> Result<Reply, ReplyError> {
    match (input.byte() % 4, asked) {
        (0, _) => Err(input.error()),
        (1, _) => Ok(Reply::Acknowledged),
        (_, Asked::Directory) => {
            let count = input.byte() % 5;
            Ok(Reply::Directory(
                (0..count).map(|_| input.name().to_owned()).collect(),
            ))
        }
        (_, Asked::Read(_)) => Ok(Reply::Value(input.bytes())),
        (_, Asked::Owner(_)) => {
            let owner = DomId::new(u16::from(input.byte())).unwrap_or(DomId::XEN);
            Ok(Reply::Permissions(NodePermissions {
                owner,
                others: Access::None,
                grants: Vec::new(),
            }))
        }
    }
}

/// What the harness knows: the sessions it started, and what xenstored last answered.
#[derive(Default)]
struct Model {
    next_key: u32,
    live: BTreeMap<u32, String>,
    /// The last value answered for each node path (absent: no value, or an error).
    values: BTreeMap<String, Vec<u8>>,
    /// The last owner answered for each `ring-ref` path.
    owners: BTreeMap<String, DomId>,
}

impl Model {
    fn answered(&mut self, asked: &Asked, result: &Result<Reply, ReplyError>) {
        match (asked, result) {
            (Asked::Read(path), Ok(Reply::Value(value))) => {
                self.values.insert(path.clone(), value.clone());
            }
            (Asked::Read(path), _) => {
                self.values.remove(path);
            }
            (Asked::Owner(path), Ok(Reply::Permissions(permissions))) => {
                self.owners.insert(path.clone(), permissions.owner);
            }
            _ => {}
        }
    }

    /// Acts on what the search found, as the kernel does, checking it first.
    fn act(&mut self, search: &mut ServerSearch<u32>, found: Found<u32>, input: &mut Input) {
        match found {
            Found::End(key) => {
                assert!(self.live.contains_key(&key), "End for a session not live");
                self.end(search, key);
            }
            Found::Open {
                name,
                server,
                nodes,
            } => {
                assert!(acceptable_name(&name), "a session for {name:?}");
                assert!(
                    !self.live.values().any(|live| *live == name),
                    "a second session for {name:?}"
                );
                let node = |leaf: &str| self.values.get(&format!("{BASE}/{name}/{leaf}"));
                assert_eq!(Some(&nodes.ring_ref), node("ring-ref"));
                assert_eq!(Some(&nodes.event_channel), node("event-channel"));
                let ring_ref = format!("{BASE}/{name}/ring-ref");
                assert_eq!(self.owners.get(&ring_ref), Some(&server));
                self.start(search, name, nodes);
                assert!(self.live.len() <= MAX_SESSIONS, "beyond the session limit");
                // A server whose values turn out bad: the session ends at once.
                if input.byte() & 1 == 1 {
                    let key = self.next_key;
                    self.end(search, key);
                }
            }
        }
    }

    fn start(&mut self, search: &mut ServerSearch<u32>, name: String, nodes: NodeValues) {
        self.next_key += 1;
        self.live.insert(self.next_key, name.clone());
        search.started(name, self.next_key, nodes);
    }

    fn end(&mut self, search: &mut ServerSearch<u32>, key: u32) {
        let name = self.live.remove(&key);
        assert_eq!(search.ended(key), name);
    }
}

/// The checks that hold between any two steps.
fn check(search: &ServerSearch<u32>, store: &Store, model: &Model) {
    let mut waited: Vec<RequestId> = search.ids();
    waited.sort();
    let sent: Vec<RequestId> = store.in_flight.keys().copied().collect();
    assert_eq!(
        waited, sent,
        "the search waits for other requests than it sent"
    );
    let mut per_name: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for asked in store.in_flight.values() {
        let owner = usize::from(matches!(asked, Asked::Owner(_)));
        let Some(name) = asked.name() else {
            continue;
        };
        let (reads, owners) = per_name.entry(name).or_default();
        *reads += 1 - owner;
        *owners += owner;
    }
    for (name, counts) in per_name {
        assert!(
            matches!(counts, (1 | 2, 0) | (0, 1)),
            "{name:?} has more than one lookup in flight: {counts:?}"
        );
    }
    let mut live: Vec<u32> = search.live_keys().collect();
    live.sort();
    assert_eq!(live, model.live.keys().copied().collect::<Vec<_>>());
}

/// xenstored answers one request in flight, chosen by the input; the search takes the reply.
fn answer_one(
    search: &mut ServerSearch<u32>,
    store: &mut Store,
    model: &mut Model,
    input: &mut Input,
) {
    let Some(count) = NonZeroUsize::new(store.in_flight.len()) else {
        return;
    };
    let index = usize::from(input.byte()) % count;
    let Some(id) = store.in_flight.keys().nth(index).copied() else {
        return;
    };
    let Some(asked) = store.in_flight.remove(&id) else {
        return;
    };
    let result = reply(input, &asked);
    model.answered(&asked, &result);
    store.arrived.insert(id, result);
    assert!(search.has_replies(store));
    for found in search.take_replies(store) {
        model.act(search, found, input);
    }
    assert!(store.arrived.is_empty(), "a reply was left untaken");
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mut store = Store::default();
    let mut search: ServerSearch<u32> = ServerSearch::new(BASE, MAX_SESSIONS);
    let mut model = Model::default();
    while !input.0.is_empty() {
        match input.byte() % 7 {
            0 => {
                search.on_watch_event(&mut store, BASE);
                if !store.refusing {
                    assert!(
                        store
                            .in_flight
                            .values()
                            .any(|asked| matches!(asked, Asked::Directory)),
                        "a listing was asked for and none is in flight"
                    );
                }
            }
            1 => {
                let name = input.name();
                search.on_watch_event(&mut store, &format!("{BASE}/{name}/ring-ref"));
                if acceptable_name(name) && !store.refusing {
                    assert!(
                        store
                            .in_flight
                            .values()
                            .any(|asked| asked.name() == Some(name)),
                        "{name:?} was published and nothing of it is in flight"
                    );
                }
            }
            2 => {
                let name = input.name();
                let rest =
                    ["", "/event-channel", "/ring-ref/x", "/other"][usize::from(input.byte() % 4)];
                search.on_watch_event(&mut store, &format!("{BASE}/{name}{rest}"));
            }
            3 | 4 => answer_one(&mut search, &mut store, &mut model, &mut input),
            5 => store.refusing = !store.refusing,
            _ => {
                let live: Vec<u32> = model.live.keys().copied().collect();
                if let Some(&key) = live.get(usize::from(input.byte()) % live.len().max(1)) {
                    model.end(&mut search, key);
                }
            }
        }
        check(&search, &store, &model);
    }
});
