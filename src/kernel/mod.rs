//! The PV kernel's target-specific modules: boot and hypervisor interface (unsafe allowed), the rest safe.

mod address_space;
mod boot;
mod console;
mod event_wait;
mod fault_report;
mod logger;
mod memory;
mod own_grants;
mod panic;
mod peer_executor;
mod scenarios;
mod selftest;
mod service;
mod share_backend;
mod share_peer;
mod start;
mod store_connection;
mod vchan_client;
mod xen;
mod xenstore_scenario;
