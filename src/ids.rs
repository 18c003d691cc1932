//! Distinct types for the identifiers Xen hands out: domains, grant references, grant handles, event-channel ports.

use core::fmt;

/// A domain id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DomId(pub u16);

impl DomId {
    /// The calling domain itself (`DOMID_SELF`).
    pub const SELF: DomId = DomId(0x7ff0);
    /// Domain 0.
    pub const DOM0: DomId = DomId(0);
    /// The first id that is not an ordinary domain (`DOMID_FIRST_RESERVED`).
    pub const FIRST_RESERVED: u16 = 0x7ff0;

    /// True for ids that name an ordinary domain rather than a special one.
    pub const fn is_ordinary(self) -> bool {
        self.0 < Self::FIRST_RESERVED
    }
}

/// A grant reference: an index into a granting domain's grant table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GrantRef(pub u32);

/// A grant handle: Xen's name for one live grant mapping in our maptrack table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GrantHandle(pub u32);

/// An event-channel port of this domain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct EvtchnPort(pub u32);

macro_rules! plain_display {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}
plain_display!(DomId, GrantRef, GrantHandle, EvtchnPort);
