//! Distinct types for the numbers the xenstore protocol carries: request ids, transaction ids, domain ids.

use core::fmt;

/// The id a request carries and its reply echoes. Watch events carry 0, so the client never
/// hands out 0 for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u32);

impl RequestId {
    /// The id xenstored puts on watch events, never used for a request.
    pub const WATCH_EVENT: RequestId = RequestId(0);
}

/// A transaction id as xenstored hands it out; 0 means "not in a transaction".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionId(pub u32);

impl TransactionId {
    /// Outside any transaction.
    pub const NONE: TransactionId = TransactionId(0);

    /// True for a real transaction.
    pub const fn is_some(self) -> bool {
        self.0 != 0
    }
}

/// A Xen domain id, as it appears in permissions and `XS_GET_DOMAIN_PATH`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainId(pub u16);

macro_rules! plain_display {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}", self.0)
            }
        }
    )*};
}
plain_display!(RequestId, TransactionId, DomainId);
