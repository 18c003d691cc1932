//! A xenstore client with no I/O of its own: the `xs_wire` codec, an incremental parser and the request/reply protocol.
//!
//! Layers, bottom up:
//! - [`wire`], [`message_type`], [`error`]: the message header, the message types and the error
//!   strings of Xen's `public/io/xs_wire.h`;
//! - [`parser`]: an incremental parser that takes bytes in any split and yields whole messages,
//!   or says that it needs more, or that the stream is malformed;
//! - [`path`], [`permissions`], [`request`], [`reply`], [`watch`]: validated request builders and
//!   reply decoders for each operation;
//! - [`client`]: the state machine that hands out request ids, matches replies to outstanding
//!   requests and routes watch events to their owners; the caller moves the bytes;
//! - [`ring`], [`ring_transport`]: the shared-page ring a guest kernel talks over, as index
//!   arithmetic and a copy loop over a memory trait the kernel implements;
//! - [`ring_client`]: the client over that ring with no waiting of its own: several requests in
//!   flight, replies kept by id, watch events queued until taken;
//! - `connection` (feature `std`): a blocking client over any `Read + Write`, such as dom0's
//!   `/dev/xen/xenbus`.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
// Replies carry what peers wrote (their nodes' values, the paths of watch events on their
// directories), and the kernel runs this code on them: nothing here may panic. The lints keep
// it so (tests aside).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

extern crate alloc;

pub mod client;
#[cfg(feature = "std")]
pub mod connection;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod fake_xenstored;
pub mod ids;
pub mod message_type;
pub mod parser;
pub mod path;
pub mod permissions;
pub mod reply;
pub mod request;
pub mod ring;
pub mod ring_client;
pub mod ring_transport;
pub mod transaction;
pub mod watch;
pub mod wire;

pub use client::{Client, Event, Fault, Outgoing};
pub use error::XsError;
pub use ids::{DomId, RequestId, TransactionId};
pub use message_type::MessageType;
pub use parser::{Malformation, Message, Parsed, Parser};
pub use permissions::{Access, NodePermissions, Permission};
pub use reply::{Reply, ReplyError};
pub use request::{Operation, RequestError};
pub use watch::WatchEvent;
pub use wire::Header;
