//! The lab build's kernel halves (feature `lab`): the scenarios, the self-tests, the self-grant machinery and the share-peer frontend, run by the lab's command-line words.
//!
//! The production image compiles none of this; the pieces that need `unsafe` (our own pages
//! and our grant table's entries) live in the hypervisor-interface layer behind the same feature.

mod deliberate;
mod dispatch;
mod own_grants;
mod scenarios;
mod selftest;
mod share_peer;

pub use self::dispatch::run_requested;
