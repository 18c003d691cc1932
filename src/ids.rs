//! Distinct types for the identifiers Xen hands out: domains, grant references, grant handles, event-channel ports.
//!
//! Every type keeps its number private: a value is built through a checked constructor (or a
//! named constant), and `get` gives the raw number back only where the ABI needs it.

use core::fmt;

/// A domain id: the workspace's one domain-id type, defined in the `xenstore` crate (the one
/// crate beneath both this one and the peer tool) and re-exported here.
pub use xenstore::DomId;

/// A grant reference: an index into a granting domain's grant table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GrantRef(u32);

impl GrantRef {
    /// A grant reference. Total: the ABI's `grant_ref_t` is a `uint32_t` and every value names
    /// a possible entry; whether the entry exists is for Xen to say when the reference is used.
    pub const fn new(raw: u32) -> GrantRef {
        GrantRef(raw)
    }

    /// The raw reference, as the ABI carries it.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A grant handle: Xen's name for one live grant mapping in our maptrack table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GrantHandle(u32);

impl GrantHandle {
    /// A grant handle. Total: the ABI's `grant_handle_t` is a `uint32_t` that Xen hands out and
    /// checks itself on unmap, so every value is a possible handle.
    pub const fn new(raw: u32) -> GrantHandle {
        GrantHandle(raw)
    }

    /// The raw handle, as the ABI carries it.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// An event-channel port of this domain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EvtchnPort(u32);

impl EvtchnPort {
    /// Ports below this exist in some event-channel ABI (`EVTCHN_FIFO_NR_CHANNELS`, 2^17, in
    /// `public/event_channel.h`); the 2-level ABI has fewer, and Xen refuses those it lacks.
    pub const LIMIT: u32 = 1 << 17;

    /// A port, or `None` at or beyond [`EvtchnPort::LIMIT`]. Port 0 is accepted: it is a valid
    /// index (Xen never allocates it, so it reads as "no port" where the ABI uses it so).
    pub const fn new(raw: u32) -> Option<EvtchnPort> {
        if raw < Self::LIMIT {
            Some(EvtchnPort(raw))
        } else {
            None
        }
    }

    /// The raw port number, as the ABI carries it.
    pub const fn get(self) -> u32 {
        self.0
    }
}

macro_rules! plain_display {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}
plain_display!(GrantRef, GrantHandle, EvtchnPort);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_beyond_the_fifo_abi_are_refused() {
        assert_eq!(EvtchnPort::new(0).map(EvtchnPort::get), Some(0));
        assert_eq!(
            EvtchnPort::new(EvtchnPort::LIMIT - 1).map(EvtchnPort::get),
            Some(EvtchnPort::LIMIT - 1)
        );
        assert_eq!(EvtchnPort::new(EvtchnPort::LIMIT), None);
        assert_eq!(EvtchnPort::new(u32::MAX), None);
    }

    #[test]
    fn references_and_handles_round_trip_every_value() {
        for raw in [0, 1, 0x8000_0000, u32::MAX] {
            assert_eq!(GrantRef::new(raw).get(), raw);
            assert_eq!(GrantHandle::new(raw).get(), raw);
        }
    }
}
