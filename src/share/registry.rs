//! The live grant-share sessions, keyed by (frontend, device, generation) so a re-created device is never taken for the old one.
//!
//! Results the kernel delivers for a session that has ended or been replaced carry the old key
//! and are turned into their release (unmap, close) instead of reaching a newer session.

use super::device_id::DeviceId;
use super::session::{ShareAction, ShareEvent, ShareSession};
use crate::ids::{DomId, EvtchnPort};
use crate::shared_memory::SharedMemory;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

/// A session's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareKey {
    pub peer: DomId,
    pub device: DeviceId,
    pub generation: u64,
}

impl fmt::Display for ShareKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "d{}/share{}#{}",
            self.peer, self.device, self.generation
        )
    }
}

/// Every live grant-share session.
#[derive(Debug)]
pub struct ShareRegistry<R> {
    next_generation: u64,
    sessions: BTreeMap<ShareKey, ShareSession<R>>,
}

impl<R> Default for ShareRegistry<R> {
    fn default() -> Self {
        ShareRegistry {
            next_generation: 1,
            sessions: BTreeMap::new(),
        }
    }
}

/// Actions for one session.
pub type KeyedActions<R> = (ShareKey, Vec<ShareAction<R>>);

impl<R: SharedMemory> ShareRegistry<R> {
    /// Starts a session for `device` of `peer`. A live session for the same device is closed
    /// first (as if its frontend had gone), so the device's old mapping never lingers.
    pub fn open(&mut self, peer: DomId, device: DeviceId) -> Vec<KeyedActions<R>> {
        let mut results = Vec::new();
        if let Some(old) = self.find(peer, device) {
            let actions = self.handle(old, ShareEvent::FrontendRemoved);
            results.push((old, actions));
        }
        let key = ShareKey {
            peer,
            device,
            generation: self.next_generation,
        };
        self.next_generation += 1;
        let (session, actions) = ShareSession::new(peer, device);
        self.sessions.insert(key, session);
        results.push((key, actions));
        results
    }

    /// Delivers `event` to session `key`; a closed session leaves the registry. For an unknown
    /// (stale) key the event's resources are released.
    pub fn handle(&mut self, key: ShareKey, event: ShareEvent<'_, R>) -> Vec<ShareAction<R>> {
        let Some(session) = self.sessions.get_mut(&key) else {
            return ShareSession::leftovers(event);
        };
        let actions = session.handle(event);
        if session.is_closed() {
            self.sessions.remove(&key);
        }
        actions
    }

    /// Ends every session with `peer` (it died).
    pub fn domain_died(&mut self, peer: DomId) -> Vec<KeyedActions<R>> {
        let keys: Vec<ShareKey> = self.keys_of(peer).collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, ShareEvent::DomainDied)))
            .collect()
    }

    /// Ends every session (grantsvc is shutting down).
    pub fn shutdown(&mut self) -> Vec<KeyedActions<R>> {
        let keys: Vec<ShareKey> = self.sessions.keys().copied().collect();
        keys.into_iter()
            .map(|key| (key, self.handle(key, ShareEvent::Shutdown)))
            .collect()
    }

    /// The live session for `device` of `peer`.
    pub fn find(&self, peer: DomId, device: DeviceId) -> Option<ShareKey> {
        self.sessions
            .keys()
            .copied()
            .find(|key| key.peer == peer && key.device == device)
    }

    /// The sessions with `peer`.
    pub fn keys_of(&self, peer: DomId) -> impl Iterator<Item = ShareKey> + '_ {
        self.sessions
            .keys()
            .copied()
            .filter(move |key| key.peer == peer)
    }

    /// The session whose local port is `port`.
    pub fn key_for_port(&self, port: EvtchnPort) -> Option<ShareKey> {
        self.sessions
            .iter()
            .find(|(_, session)| session.port() == Some(port))
            .map(|(key, _)| *key)
    }

    pub fn session(&self, key: ShareKey) -> Option<&ShareSession<R>> {
        self.sessions.get(&key)
    }

    /// Pages mapped by all sessions together (for the published counters).
    pub fn mapped_pages(&self) -> u64 {
        self.sessions
            .values()
            .map(|session| u64::from(session.mapped_pages()))
            .sum()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests;
