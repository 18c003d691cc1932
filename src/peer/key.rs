//! A session's identity: the peer, its device and a generation never used before, so that a restarted peer or a re-created device is never taken for the old one.

use super::protocol::Protocol;
use crate::ids::DomId;
use core::cmp::Ordering;
use core::fmt;
use core::marker::PhantomData;

/// The key of one session of protocol `P`.
pub struct SessionKey<P: Protocol> {
    pub peer: DomId,
    pub device: P::Device,
    pub generation: u64,
    protocol: PhantomData<P>,
}

impl<P: Protocol> SessionKey<P> {
    pub fn new(peer: DomId, device: P::Device, generation: u64) -> Self {
        SessionKey {
            peer,
            device,
            generation,
            protocol: PhantomData,
        }
    }

    fn tuple(&self) -> (DomId, P::Device, u64) {
        (self.peer, self.device, self.generation)
    }
}

// Written out: derives would ask `P` itself (a marker type) for the traits.
impl<P: Protocol> Clone for SessionKey<P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P: Protocol> Copy for SessionKey<P> {}
impl<P: Protocol> PartialEq for SessionKey<P> {
    fn eq(&self, other: &Self) -> bool {
        self.tuple() == other.tuple()
    }
}
impl<P: Protocol> Eq for SessionKey<P> {}
impl<P: Protocol> PartialOrd for SessionKey<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P: Protocol> Ord for SessionKey<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.tuple().cmp(&other.tuple())
    }
}
impl<P: Protocol> fmt::Debug for SessionKey<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{self}")
    }
}
impl<P: Protocol> fmt::Display for SessionKey<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "d{}", self.peer)?;
        P::write_device_in_key(&self.device, formatter)?;
        write!(formatter, "#{}", self.generation)
    }
}
