//! Which of xenstored's limits refused a request grantsvc made for a session (a write of its own nodes, the watch it needs), named with the xenstored option that raises it, for the log line and the peer's `error` node.
//!
//! The nodes a driver domain writes, and the backend directories the toolstack creates for it
//! (owned by it), count against its own quotas in xenstored. What Xen 4.17's xenstoreds answer
//! past each (C xenstored: `tools/xenstore/xenstored_core.c`, `_domain.c`, `_watch.c`,
//! `_transaction.c`; oxenstored: `tools/ocaml/xenstored/process.ml`):
//!
//! | quota (C xenstored option, default) | C xenstored | oxenstored |
//! |---|---|---|
//! | nodes owned by the domain (`--entry-nb`, 1000), checked when a write creates a node | ENOSPC | EQUOTA |
//! | size of one node: value, children's names, permissions (`--entry-size`, 2048) | ENOSPC | E2BIG |
//! | permissions per node (`--perm-nb`, 5) | ENOSPC | EQUOTA |
//! | watches of the domain (`--watch-nb`, 128) | E2BIG | EQUOTA |
//! | open transactions (`--transaction`, 10) | ENOSPC | EQUOTA |
//! | nodes one transaction touches (`-Q transaction-nodes=`, 1024) | ENOSPC | - |
//! | xenstored memory for the domain (`-Q memory=`, 2.5 MiB) | ENOMEM (or requests no longer read) | - |
//! | outstanding requests (`-Q outstanding=`, 20) | requests no longer read until replies are taken | - |
//!
//! A write of one small node outside a transaction, which is what a session asks, can thus
//! only meet the node quota or the node-size quota (ENOSPC, EQUOTA, E2BIG) or the memory
//! quota (ENOMEM); a watch, the watch quota (E2BIG, EQUOTA); EACCES and EPERM are no quota
//! but the node's permissions.

use core::fmt;
use xenstore::{ReplyError, XsError};

/// The limit a refused request of grantsvc's ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreLimit {
    /// The domain's node quota (or a node's size quota): ENOSPC from C xenstored, EQUOTA from
    /// oxenstored. Removing nodes the domain owns makes room again.
    Nodes,
    /// The domain's watch quota: E2BIG from C xenstored, EQUOTA from oxenstored.
    Watches,
    /// A size limit: oxenstored's value-size quota (E2BIG on a write).
    Size,
    /// xenstored's memory for the domain (ENOMEM).
    Memory,
    /// No quota: the node's permissions refuse grantsvc (EACCES, EPERM).
    Permissions,
}

impl StoreLimit {
    /// What ran out, and the xenstored option that raises it.
    pub fn describe(self) -> &'static str {
        match self {
            StoreLimit::Nodes => {
                "xenstored's quota of nodes per domain is exhausted (xenstored --entry-nb; or a \
                 node reached --entry-size)"
            }
            StoreLimit::Watches => {
                "xenstored's quota of watches per domain is exhausted (xenstored --watch-nb)"
            }
            StoreLimit::Size => {
                "a node is over xenstored's size quota (oxenstored's quota-maxsize)"
            }
            StoreLimit::Memory => {
                "xenstored's memory quota for the domain is exhausted (xenstored -Q memory=)"
            }
            StoreLimit::Permissions => "no quota: the node's permissions refuse grantsvc",
        }
    }
}

/// The request of grantsvc's that xenstored refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedRequest {
    /// The write of one of the session's own nodes.
    Write(&'static str),
    /// A transaction writing several of them.
    Transaction,
    /// The watch the session needs on the peer's nodes.
    Watch,
}

/// Why a request grantsvc needs for a session (its own nodes written, its watch set) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRefusal {
    request: RefusedRequest,
    /// xenstored's answer; `None` when none came, it was not kept, or the request could not
    /// be sent.
    error: Option<ReplyError>,
}

impl StoreRefusal {
    /// xenstored refused the write of `node` with `error`.
    pub fn write(node: &'static str, error: ReplyError) -> StoreRefusal {
        StoreRefusal {
            request: RefusedRequest::Write(node),
            error: Some(error),
        }
    }

    /// A transaction of several nodes failed (refused, or not answered).
    pub fn transaction_failed() -> StoreRefusal {
        StoreRefusal {
            request: RefusedRequest::Transaction,
            error: None,
        }
    }

    /// The session's watch was refused with `error` (`None`: it could not be sent).
    pub fn watch(error: Option<ReplyError>) -> StoreRefusal {
        StoreRefusal {
            request: RefusedRequest::Watch,
            error,
        }
    }

    pub fn request(&self) -> RefusedRequest {
        self.request
    }

    /// The limit that refused the request, when xenstored's answer names one.
    pub fn limit(&self) -> Option<StoreLimit> {
        let Some(ReplyError::Xenstore(error)) = self.error else {
            return None;
        };
        let watch = self.request == RefusedRequest::Watch;
        match error {
            XsError::NoSpace => Some(StoreLimit::Nodes),
            XsError::Quota if watch => Some(StoreLimit::Watches),
            XsError::Quota => Some(StoreLimit::Nodes),
            XsError::TooBig if watch => Some(StoreLimit::Watches),
            XsError::TooBig => Some(StoreLimit::Size),
            XsError::OutOfMemory => Some(StoreLimit::Memory),
            XsError::AccessDenied | XsError::NotPermitted => Some(StoreLimit::Permissions),
            _ => None,
        }
    }

    /// True when the node quota refused it: removing nodes the session wrote makes room for
    /// its `error` node.
    pub fn is_node_quota(&self) -> bool {
        self.limit() == Some(StoreLimit::Nodes)
    }
}

impl fmt::Display for StoreRefusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.request {
            RefusedRequest::Write(node) => write!(formatter, "{node}")?,
            RefusedRequest::Transaction => formatter.write_str("the transaction")?,
            RefusedRequest::Watch => formatter.write_str("the watch")?,
        }
        match &self.error {
            Some(ReplyError::Xenstore(error)) => {
                write!(formatter, " refused with {}", error.errno_name())?
            }
            Some(error) => write!(formatter, " refused: {error}")?,
            None => formatter.write_str(" refused or not answered")?,
        }
        match self.limit() {
            Some(limit) => write!(formatter, ": {}", limit.describe()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn each_xenstored_answer_names_its_quota_and_option() {
        let write = |error| StoreRefusal::write("digest", ReplyError::Xenstore(error)).limit();
        let watch = |error| StoreRefusal::watch(Some(ReplyError::Xenstore(error))).limit();
        // C xenstored past --entry-nb (and --entry-size), oxenstored past its node quota.
        assert_eq!(write(XsError::NoSpace), Some(StoreLimit::Nodes));
        assert_eq!(write(XsError::Quota), Some(StoreLimit::Nodes));
        assert_eq!(write(XsError::TooBig), Some(StoreLimit::Size));
        assert_eq!(write(XsError::OutOfMemory), Some(StoreLimit::Memory));
        assert_eq!(write(XsError::AccessDenied), Some(StoreLimit::Permissions));
        assert_eq!(write(XsError::NotPermitted), Some(StoreLimit::Permissions));
        // C xenstored past --watch-nb, oxenstored past its watch quota.
        assert_eq!(watch(XsError::TooBig), Some(StoreLimit::Watches));
        assert_eq!(watch(XsError::Quota), Some(StoreLimit::Watches));
        for no_limit in [
            XsError::NotFound,
            XsError::TryAgain,
            XsError::InvalidArgument,
        ] {
            assert_eq!(write(no_limit), None, "{no_limit}");
            assert_eq!(watch(no_limit), None, "{no_limit}");
        }
        assert_eq!(
            StoreRefusal::write("state", ReplyError::UnknownErrorName).limit(),
            None
        );
        assert!(StoreLimit::Nodes.describe().contains("--entry-nb"));
        assert!(StoreLimit::Watches.describe().contains("--watch-nb"));
        assert!(StoreLimit::Memory.describe().contains("-Q memory="));
    }

    #[test]
    fn a_refusal_reads_as_request_errno_and_quota() {
        let refusal = StoreRefusal::write("digest", ReplyError::Xenstore(XsError::NoSpace));
        assert!(refusal.is_node_quota());
        assert_eq!(refusal.request(), RefusedRequest::Write("digest"));
        assert_eq!(
            refusal.to_string(),
            "digest refused with ENOSPC: xenstored's quota of nodes per domain is exhausted \
             (xenstored --entry-nb; or a node reached --entry-size)"
        );
        let watch = StoreRefusal::watch(Some(ReplyError::Xenstore(XsError::TooBig)));
        assert!(!watch.is_node_quota());
        assert_eq!(
            watch.to_string(),
            "the watch refused with E2BIG: xenstored's quota of watches per domain is \
             exhausted (xenstored --watch-nb)"
        );
        let odd = StoreRefusal::write("state", ReplyError::UnknownErrorName);
        assert!(!odd.is_node_quota());
        assert_eq!(
            odd.to_string(),
            "state refused: XS_ERROR with an unknown name"
        );
        assert_eq!(
            StoreRefusal::transaction_failed().to_string(),
            "the transaction refused or not answered"
        );
        assert_eq!(
            StoreRefusal::watch(None).to_string(),
            "the watch refused or not answered"
        );
    }
}
