//! Block backend (blkif) core: ring consumer, request decoding and validation, RAM disk, persistent grants, xenstore nodes.
//!
//! Everything here is target-independent and host-tested; the kernel supplies the shared ring
//! (through [`crate::shared_memory::SharedMemory`]), the mapping of data grants (through
//! [`execute::DataPages`] and [`persistent_grants::GrantMapper`]) and the xenstore I/O. The
//! protocol facts, with their sources, are in [`crate::abi::blkif`] and in each module.
//!
//! The flow of one ring: [`ring::BackRing`] copies each request off the shared ring once;
//! [`request::decode`] turns the private copy into a [`request::Decoded`]; [`validate`] checks it
//! against the disk ([`validate::DiskLimits`]), producing either a [`validate::ValidRequest`] or a
//! [`validate::Refusal`] that becomes an error response for that id; [`execute`] carries a valid
//! request out on a [`store::BackingStore`]; [`service::serve_ring`] strings these together.
//!
//! # What the kernel supplies
//! - Per device: [`backend_nodes::ToolstackRequest::decode`] on the toolstack's nodes, a
//!   [`ram_disk::RamDisk`] attached against one service-wide [`ram_disk::MemoryBudget`], the
//!   [`backend_nodes::before_init_wait`] nodes, then InitWait.
//! - At frontend Initialised/Connected: [`frontend_nodes::FrontendConfig::decode`], then per
//!   queue the `2^order` ring grants mapped contiguously and wrapped in a `SharedMemory` for
//!   [`ring::BackRing::attach`], the event channel bound, and the
//!   [`backend_nodes::at_connect`] nodes written in one transaction before Connected.
//! - Per wake-up: [`service::take_batch`], one batched map of the batch's
//!   [`validate::ValidRequest::grants`] (or [`persistent_grants::PersistentGrants::acquire`]
//!   when both ends offered `feature-persistent`) behind an [`execute::DataPages`],
//!   [`service::answer_batch`], one batched unmap, [`service::publish_responses`], a notify
//!   when it says so (responses become visible only after the unmap).
//! - At Closing, frontend death or shutdown: stop serving, `close` the persistent grants,
//!   unmap the rings, detach the disk, Closed, remove the backend directory.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod backend_nodes;
pub mod execute;
pub mod frontend_nodes;
pub mod grant_pages;
pub mod indirect;
pub mod persistent_grants;
#[cfg(test)]
mod property_tests;
pub mod protocol;
pub mod ram_disk;
pub mod request;
pub mod ring;
pub mod service;
pub mod session;
pub mod store;
pub mod target;
#[cfg(test)]
mod testing;
pub mod validate;
