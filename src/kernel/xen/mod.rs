//! The hypervisor interface: hypercalls, the shared-info page, the direct map, and the real `Hypervisor`.
#![allow(unsafe_code)]

pub mod direct_map;
pub mod event_channel;
pub mod grant_entries;
pub mod grant_table;
pub mod hypercall;
pub mod hypervisor;
pub mod memory;
pub mod own_pages;
pub mod platform;
pub mod ring_pages;
pub mod sched;
pub mod shared_info;
pub mod shared_region;
pub mod time;
pub mod virtual_memory;
