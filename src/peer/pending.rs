//! The xenstore requests a protocol's sessions have in flight, matched to their replies by request id: a session's node reads gathered until the last one arrives, its writes checked and their acknowledgement reported.
//!
//! Nothing waits: the executor submits a session's reads and writes and records them here;
//! when replies arrive (in any order, mixed with other sessions' and the service's own), the
//! service hands each one over and gets back what it means for its session. So one session's
//! round trips never hold up another's.

use super::driver::OwnedNodes;
use alloc::vec::Vec;
use litemap::LiteMap;
use xenstore::{Reply, ReplyError, RequestId, XsError};

/// What a request in flight was for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Purpose<K> {
    /// One node of a session's peer-node read: its place in the read.
    Read { key: K, slot: usize },
    /// A write of a session's node.
    Write { key: K, node: &'static str },
}

/// A session's peer-node read, as far as its replies have come.
#[derive(Debug)]
struct ReadInProgress {
    nodes: OwnedNodes,
    remaining: usize,
}

/// What a reply meant for its session.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered<K> {
    /// The last reply of a read arrived: every node, as read.
    NodesRead { key: K, nodes: OwnedNodes },
    /// A write was refused (ENOSPC past a quota, EACCES, ...): the session must hear of it
    /// (`PeerEvent::OwnNodesNotWritten`).
    WriteFailed {
        key: K,
        node: &'static str,
        error: ReplyError,
    },
    /// The session's last write in flight was acknowledged, and none of them was refused
    /// since the last such answer: every node it asked to write is written
    /// (`PeerEvent::OwnNodesWritten`).
    WritesAcknowledged { key: K },
    /// Nothing to do yet (a read still waits for other replies, or a write succeeded).
    Nothing,
}

/// The requests in flight for one protocol's sessions, keyed by session `K`.
#[derive(Debug)]
pub struct PendingRequests<K> {
    requests: LiteMap<RequestId, Purpose<K>>,
    reads: LiteMap<K, ReadInProgress>,
    /// Per session: its writes in flight, and whether one was refused since it last had none.
    writes: LiteMap<K, WritesInFlight>,
}

#[derive(Clone, Copy, Debug, Default)]
struct WritesInFlight {
    count: usize,
    refused: bool,
}

impl<K> Default for PendingRequests<K> {
    fn default() -> Self {
        PendingRequests {
            requests: LiteMap::new(),
            reads: LiteMap::new(),
            writes: LiteMap::new(),
        }
    }
}

impl<K: Copy + Ord> PendingRequests<K> {
    /// Records a read of `names` for `key`, one request per name (`ids[i]` reads `names[i]`;
    /// `None` for a request that could not be sent, which reads as an absent node).
    pub fn start_read(
        &mut self,
        key: K,
        names: &'static [&'static str],
        ids: &[Option<RequestId>],
    ) -> Option<OwnedNodes> {
        let nodes: OwnedNodes = names.iter().map(|name| (*name, None)).collect();
        let mut remaining = 0;
        for (slot, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                self.requests.insert(*id, Purpose::Read { key, slot });
                remaining += 1;
            }
        }
        if remaining == 0 {
            return Some(nodes);
        }
        self.reads.insert(key, ReadInProgress { nodes, remaining });
        None
    }

    /// Records a write of `node` for `key`.
    pub fn track_write(&mut self, id: RequestId, key: K, node: &'static str) {
        self.requests.insert(id, Purpose::Write { key, node });
        match self.writes.get_mut(&key) {
            Some(writes) => writes.count += 1,
            None => {
                self.writes.insert(
                    key,
                    WritesInFlight {
                        count: 1,
                        refused: false,
                    },
                );
            }
        }
    }

    /// One write of `key` was answered (`refused` or not); true when it was the last in
    /// flight and none was refused since the session last had none in flight.
    fn write_answered(&mut self, key: K, refused: bool) -> bool {
        let Some(writes) = self.writes.get_mut(&key) else {
            return false;
        };
        writes.count = writes.count.saturating_sub(1);
        writes.refused |= refused;
        if writes.count > 0 {
            return false;
        }
        let clean = !writes.refused;
        self.writes.remove(&key);
        clean
    }

    /// The ids of every request in flight.
    pub fn ids(&self) -> Vec<RequestId> {
        self.requests.keys().copied().collect()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Forgets `key`'s requests (its session ended); their replies will mean nothing.
    pub fn forget(&mut self, key: K) -> Vec<RequestId> {
        self.reads.remove(&key);
        self.writes.remove(&key);
        let ids: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, purpose)| matches!(purpose, Purpose::Read { key: of, .. } | Purpose::Write { key: of, .. } if *of == key))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.requests.remove(id);
        }
        ids
    }

    /// Takes the reply to `id`; what it means for its session.
    pub fn answer(&mut self, id: RequestId, result: Result<Reply, ReplyError>) -> Answered<K> {
        match self.requests.remove(&id) {
            None => Answered::Nothing,
            Some(Purpose::Write { key, node }) => {
                let refused = result.is_err();
                let all_written = self.write_answered(key, refused);
                match result {
                    Err(error) => Answered::WriteFailed { key, node, error },
                    Ok(_) if all_written => Answered::WritesAcknowledged { key },
                    Ok(_) => Answered::Nothing,
                }
            }
            Some(Purpose::Read { key, slot }) => {
                let Some(read) = self.reads.get_mut(&key) else {
                    return Answered::Nothing;
                };
                // Absent, unreadable or not a value: a node we cannot use reads as absent.
                let value = match result {
                    Ok(Reply::Value(value)) => Some(value),
                    Ok(_) | Err(ReplyError::Xenstore(XsError::NotFound)) | Err(_) => None,
                };
                if let Some((_, place)) = read.nodes.get_mut(slot) {
                    *place = value;
                }
                read.remaining = read.remaining.saturating_sub(1);
                if read.remaining > 0 {
                    return Answered::Nothing;
                }
                match self.reads.remove(&key) {
                    Some(read) => Answered::NodesRead {
                        key,
                        nodes: read.nodes,
                    },
                    None => Answered::Nothing,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    #[test]
    fn a_read_completes_when_its_last_reply_arrives_in_any_order() {
        let mut pending: PendingRequests<u32> = PendingRequests::default();
        let ids = [
            Some(RequestId::new(10)),
            Some(RequestId::new(11)),
            Some(RequestId::new(12)),
        ];
        assert_eq!(pending.start_read(7, &NAMES, &ids), None);
        pending.track_write(RequestId::new(13), 8, "state");
        assert_eq!(pending.ids().len(), 4);
        assert_eq!(
            pending.answer(RequestId::new(12), Ok(Reply::Value(b"3".to_vec()))),
            Answered::Nothing
        );
        assert_eq!(
            pending.answer(
                RequestId::new(10),
                Err(ReplyError::Xenstore(XsError::NotFound))
            ),
            Answered::Nothing
        );
        // Another session's write finishing in between changes nothing for this read.
        assert_eq!(
            pending.answer(RequestId::new(13), Ok(Reply::Acknowledged)),
            Answered::WritesAcknowledged { key: 8 }
        );
        assert_eq!(
            pending.answer(RequestId::new(11), Ok(Reply::Value(b"x".to_vec()))),
            Answered::NodesRead {
                key: 7,
                nodes: vec![
                    ("a", None),
                    ("b", Some(b"x".to_vec())),
                    ("c", Some(b"3".to_vec()))
                ]
            }
        );
        assert!(pending.is_empty());
    }

    #[test]
    fn a_failed_write_names_its_session_and_node_and_forgotten_sessions_get_nothing() {
        let mut pending: PendingRequests<u32> = PendingRequests::default();
        pending.track_write(RequestId::new(1), 4, "digest");
        let refused = ReplyError::Xenstore(XsError::NoSpace);
        assert_eq!(
            pending.answer(RequestId::new(1), Err(refused)),
            Answered::WriteFailed {
                key: 4,
                node: "digest",
                error: refused
            }
        );
        pending.start_read(
            5,
            &NAMES,
            &[Some(RequestId::new(2)), None, Some(RequestId::new(3))],
        );
        assert_eq!(
            pending.forget(5),
            vec![RequestId::new(2), RequestId::new(3)]
        );
        assert_eq!(
            pending.answer(RequestId::new(2), Ok(Reply::Value(b"1".to_vec()))),
            Answered::Nothing
        );
        assert_eq!(
            pending.start_read(6, &NAMES, &[None, None, None]),
            Some(vec![("a", None), ("b", None), ("c", None)]),
            "nothing could be sent: every node reads as absent at once"
        );
    }

    #[test]
    fn writes_are_reported_written_only_when_the_last_in_flight_is_acknowledged_and_none_refused() {
        let mut pending: PendingRequests<u32> = PendingRequests::default();
        let ok = || Ok(Reply::Acknowledged);
        for (id, node) in [(1, "mapped-pages"), (2, "pattern"), (3, "digest")] {
            pending.track_write(RequestId::new(id), 4, node);
        }
        pending.track_write(RequestId::new(9), 5, "state");
        // Replies in any order: only the last of session 4's three completes it.
        assert_eq!(pending.answer(RequestId::new(2), ok()), Answered::Nothing);
        assert_eq!(
            pending.answer(RequestId::new(9), ok()),
            Answered::WritesAcknowledged { key: 5 }
        );
        assert_eq!(pending.answer(RequestId::new(3), ok()), Answered::Nothing);
        assert_eq!(
            pending.answer(RequestId::new(1), ok()),
            Answered::WritesAcknowledged { key: 4 }
        );
        // A refusal among them: reported as such, and the last acknowledgement is no "written".
        pending.track_write(RequestId::new(10), 4, "answer");
        pending.track_write(RequestId::new(11), 4, "state");
        let refused = ReplyError::Xenstore(XsError::NoSpace);
        assert_eq!(
            pending.answer(RequestId::new(10), Err(refused)),
            Answered::WriteFailed {
                key: 4,
                node: "answer",
                error: refused
            }
        );
        assert_eq!(pending.answer(RequestId::new(11), ok()), Answered::Nothing);
        // Once nothing is in flight the slate is clean again.
        pending.track_write(RequestId::new(12), 4, "state");
        assert_eq!(
            pending.answer(RequestId::new(12), ok()),
            Answered::WritesAcknowledged { key: 4 }
        );
        // A forgotten session's writes are nobody's.
        pending.track_write(RequestId::new(13), 6, "state");
        assert_eq!(pending.forget(6), vec![RequestId::new(13)]);
        assert_eq!(pending.answer(RequestId::new(13), ok()), Answered::Nothing);
        assert!(pending.is_empty());
    }
}
