//! vchan (libxenvchan) client: the session on the peer framework, validated shared-page layout, ring I/O and the byte-stream services.
//!
//! grantsvc is the *client* of a libxenvchan server (for example Debian's `vchan-socket-proxy -m
//! server`). The facts of the protocol, with their sources, are in [`crate::abi::vchan`].
//!
//! # The service offered on a vchan
//! Which service a vchan gets is chosen by the name of its xenstore node (the last component of the
//! path the server publishes under), never by the bytes on the stream, so the echo stays
//! transparent for arbitrary binary data (see [`service::ServiceKind`]):
//! - `cmd`: the command service, one-line commands answered on the stream (see [`command`]);
//! - any other name: the echo service, every byte written back unchanged, in order.

pub mod channel;
pub mod command;
#[cfg(test)]
mod concurrent_tests;
pub mod discovery;
pub mod echo;
pub mod fault;
pub mod layout;
pub mod protocol;
pub mod pump;
pub mod registry;
pub mod ring;
pub mod search;
pub mod service;
pub mod session;
pub mod session_fault;
#[cfg(test)]
pub mod testing;
