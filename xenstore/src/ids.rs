//! Distinct types for the numbers the xenstore protocol carries: request ids, transaction ids, domain ids.

use core::fmt;

/// The id a request carries and its reply echoes. Watch events carry 0, so the client never
/// hands out 0 for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(u32);

impl RequestId {
    /// The id xenstored puts on watch events, never used for a request.
    pub const WATCH_EVENT: RequestId = RequestId(0);

    /// The id `raw` (as a message header carries it).
    pub const fn new(raw: u32) -> RequestId {
        RequestId(raw)
    }

    /// The number a message header carries.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// A transaction id as xenstored hands it out; 0 means "not in a transaction".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(u32);

impl TransactionId {
    /// Outside any transaction.
    pub const NONE: TransactionId = TransactionId(0);

    /// The id `raw` (as xenstored hands it out and message headers carry it).
    pub const fn new(raw: u32) -> TransactionId {
        TransactionId(raw)
    }

    /// The number a message header carries.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// True for a real transaction.
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}

/// A Xen domain id: the one domain-id type of the whole workspace.
///
/// It lives in this crate because `xenstore` is the one crate beneath both `grantsvc` (which
/// re-exports it as `grantsvc::ids::DomId`) and the dom0-side peer tool, so every crate names a
/// domain with the same type and nothing converts between two by hand.
///
/// A value is either an ordinary domain (below [`DomId::FIRST_RESERVED`], checked by
/// [`DomId::new`]) or one of the named special ids of `public/xen.h` below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(u16);

impl DomId {
    /// The first id that is not an ordinary domain (`DOMID_FIRST_RESERVED`).
    pub const FIRST_RESERVED: u16 = 0x7ff0;
    /// Domain 0.
    pub const DOM0: DomId = DomId(0);
    /// The calling domain itself (`DOMID_SELF`), accepted by hypercalls in place of our own id.
    pub const SELF: DomId = DomId(0x7ff0);
    /// The hypervisor itself (`DOMID_XEN`), the owner of pages Xen shares with guests.
    pub const XEN: DomId = DomId(0x7ff2);

    /// The id of an ordinary domain, or `None` for the reserved ids at and above
    /// [`DomId::FIRST_RESERVED`] (those are reachable only through the named constants).
    pub const fn new(raw: u16) -> Option<DomId> {
        if raw < Self::FIRST_RESERVED {
            Some(DomId(raw))
        } else {
            None
        }
    }

    /// The raw 16-bit id, as the ABI carries it.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// True for ids that name an ordinary domain rather than a special one.
    pub const fn is_ordinary(self) -> bool {
        self.0 < Self::FIRST_RESERVED
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
plain_display!(RequestId, TransactionId, DomId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ordinary_domain_ids_are_constructed() {
        assert_eq!(DomId::new(0), Some(DomId::DOM0));
        assert_eq!(DomId::new(0x7fef).map(DomId::get), Some(0x7fef));
        assert_eq!(DomId::new(0x7ff0), None);
        assert_eq!(DomId::new(u16::MAX), None);
        assert!(!DomId::SELF.is_ordinary());
        assert!(!DomId::XEN.is_ordinary());
    }
}
