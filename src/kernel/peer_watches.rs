//! Each session's watch on its peer's `state` node, the same for every xenbus protocol: the token that names the session, the watch sent without waiting, its removal when the session ends.
// Driven by peers (the paths of watch events on their directories): nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::store_connection::{WatchOwner, Xenstore, XenstoreError};
use alloc::string::String;
use core::fmt::Display;
use litemap::LiteMap;
use xenstore::RequestId;

/// The peer-state watches of one protocol's sessions (keyed `K`).
pub struct PeerWatches<K> {
    /// Who gets their events (the service routes them to the protocol).
    owner: WatchOwner,
    /// Token, and the session it belongs to.
    tokens: LiteMap<String, K>,
}

impl<K: Copy + PartialEq + Display> PeerWatches<K> {
    /// No watch yet; their events will go to `owner`.
    pub fn new(owner: WatchOwner) -> PeerWatches<K> {
        PeerWatches {
            owner,
            tokens: LiteMap::new(),
        }
    }

    /// Watches `path` for session `key` under `token` (unique to the session); returns the
    /// acknowledgement's request id.
    pub fn watch(
        &mut self,
        store: &mut Xenstore,
        key: K,
        path: &str,
        token: String,
    ) -> Result<RequestId, XenstoreError> {
        let id = store.submit_watch(path, &token, self.owner)?;
        self.tokens.insert(token, key);
        Ok(id)
    }

    /// The session a watch event's `token` belongs to.
    pub fn session_of(&self, token: &str) -> Option<K> {
        self.tokens.get(token).copied()
    }

    /// Forgets session `key`'s watch and removes it from xenstore (if there is one to tell).
    pub fn unwatch(&mut self, store: Option<&mut Xenstore>, key: K) {
        let token = self
            .tokens
            .iter()
            .find(|(_, watched)| **watched == key)
            .map(|(token, _)| token.clone());
        let Some(token) = token else {
            return;
        };
        self.tokens.remove(&token);
        if let Some(store) = store {
            if let Err(error) = store.unwatch_later(&token) {
                log::debug!("session {key}: removing watch {token}: {error}");
            }
        }
    }
}
