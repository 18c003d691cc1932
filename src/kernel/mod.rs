//! The PV kernel's target-specific modules: boot and hypervisor interface (unsafe allowed), the rest safe.
//!
//! One way down: boot (`boot`, `start`) builds the `Kernel` value (`booted`), which the service
//! runs on; the lab (`lab`, only with the `lab` feature) runs on it too. Neither is named by boot.

// Modules marked `allow(dead_code)` without the `lab` feature offer operations that only the lab
// build calls today (the xenstore client's mkdir or transactions, the event counters); the lab
// build's clippy run still reports what neither build uses.

mod address_space;
mod block_backend;
pub mod boot;
pub mod booted;
mod console;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
mod event_wait;
mod fault_report;
mod frames;
#[cfg(feature = "lab")]
pub mod lab;
mod logger;
mod panic;
mod peer_executor;
pub mod service;
mod share_backend;
mod start;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
mod store_connection;
mod vchan_client;
mod xen;
