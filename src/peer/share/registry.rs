//! The live grant-share sessions: the framework's registry, keyed by (frontend, device, generation) so a re-created device is never taken for the old one.

use super::protocol::ShareProtocol;
use super::session::ShareSession;
use crate::ids::DomId;
use crate::peer::counters::ServiceCounters;
use crate::peer::device_id::DeviceId;
use crate::peer::key::SessionKey;
use crate::peer::registry::{self, Registry};
use crate::shared_memory::SharedMemory;
use alloc::vec::Vec;

/// A grant-share session's identity.
pub type ShareKey = SessionKey<ShareProtocol>;
/// Every live grant-share session.
pub type ShareRegistry<R> = Registry<ShareSession<R>>;
/// Actions for one session, with its key.
pub type KeyedActions<R> = registry::KeyedActions<ShareSession<R>>;

/// Starts a session for `device` of `peer`. A live session for the same device is closed
/// first (as if its frontend had gone), so the device's old mapping never lingers.
pub fn open_device<R: SharedMemory>(
    registry: &mut ShareRegistry<R>,
    peer: DomId,
    device: DeviceId,
) -> Vec<KeyedActions<R>> {
    let (session, actions) = ShareSession::new(peer, device);
    registry.replace(session, actions, &ServiceCounters::new())
}

#[cfg(test)]
mod tests;
