//! The hypervisor interface: hypercalls, the shared-info page, the direct map, and the real `Hypervisor`.
#![allow(unsafe_code)]

// The production image calls only part of these hypercall wrappers; the rest (grant-table
// set-up and size, SCHEDOP_poll, an unbound port, the pending bit and upcall mask, the interval
// clock) are the layer's API that today only the lab build's self-tests and scenarios use.

pub mod direct_map;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub mod event_channel;
// Our own grant table's entries and our own pages: the lab's self-grant machinery only.
#[cfg(feature = "lab")]
pub mod grant_entries;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub mod grant_table;
pub mod hypercall;
pub mod hypervisor;
pub mod memory;
#[cfg(feature = "lab")]
pub mod own_pages;
pub mod platform;
pub mod ring_pages;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub mod sched;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub mod shared_info;
pub mod shared_region;
#[cfg_attr(not(feature = "lab"), allow(dead_code))]
pub mod time;
pub mod virtual_memory;
