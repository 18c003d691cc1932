//! Peers over xenstore: one session framework that every peer protocol plugs into, and one folder per protocol.
//!
//! In the spirit of Linux's `xenbus_driver` (probe / otherend_changed / remove), a protocol
//! supplies only its session, a state machine that takes [`action::PeerEvent`]s and returns
//! [`action::PeerAction`]s; the framework supplies the rest, once for every protocol:
//! - the events and actions themselves: read the peer's nodes once, map these refs, bind this
//!   port, write these nodes, unmap, close, report ([`action`]);
//! - the registry of live sessions keyed by peer, device and generation, which turns results
//!   that arrive for an ended session into their release ([`registry`]);
//! - the one fault type that names the peer and carries the protocol's kind ([`fault`]);
//! - the one set of counters grantsvc publishes in xenstore ([`counters`]);
//! - the executor loop that carries actions out through an [`driver::Effects`] the kernel
//!   implements once (the pmap, event channels, xenstore) and feeds results back ([`driver`]);
//! - the liveness check that finds a dead peer through its end of the session's event channel,
//!   which needs no privilege ([`liveness`]);
//! - the decoding of the values peers write ([`value`], [`xenbus_state`]).
//!
//! Everything here is sans-I/O and host-tested. Protocols: [`share`] (grant-share, a xenbus
//! split device of grantsvc's own) and [`vchan`] (grantsvc as a libxenvchan client).
//!
//! Every path here can be driven by a peer, so nothing here may panic: the lints below keep
//! it so (tests aside).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod action;
pub mod blkif;
pub mod counters;
pub mod crc32;
pub mod device_id;
pub mod driver;
#[cfg(test)]
pub mod fake_store;
pub mod fault;
pub mod key;
pub mod liveness;
pub mod pending;
pub mod protocol;
pub mod registry;
pub mod root_scan;
pub mod share;
pub mod sorted_unique;
pub mod store_limit;
pub mod store_requests;
pub mod transaction_write;
pub mod value;
pub mod vchan;
pub mod xenbus_state;
