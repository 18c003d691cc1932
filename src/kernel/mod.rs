//! The PV kernel's target-specific modules: boot and hypervisor interface (unsafe allowed), the rest safe.

mod address_space;
mod boot;
mod console;
mod fault_report;
mod logger;
mod memory;
mod own_grants;
mod panic;
mod scenarios;
mod selftest;
mod start;
mod xen;
