//! The PV kernel's target-specific modules: boot and hypervisor interface (unsafe allowed), the rest safe.
//!
//! One way down: boot (`boot`, `start`) builds the `Kernel` value (`booted`), which the service
//! runs on; the lab (`lab`, only with the `lab` feature) runs on it too. Neither is named by boot.

// Operations that only the lab build calls (the xenstore client's mkdir or transactions, the event
// counters, our own grant table's set-up) are `cfg(feature = "lab")` items, so that each build's
// clippy run reports what it does not use.

pub mod address_space;
mod block_backend;
pub mod boot;
pub mod booted;
mod console;
mod event_wait;
mod fault_report;
#[cfg(feature = "lab")]
pub mod lab;
mod logger;
mod panic;
mod peer_effects;
mod peer_executor;
mod peer_sessions;
mod peer_watches;
pub mod service;
mod share_backend;
mod start;
mod store_connection;
mod vchan_client;
mod xen;
