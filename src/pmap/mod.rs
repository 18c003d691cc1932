//! The pmap: grantsvc's one x86-64 address space over the PV MMU, with grant regions mapped at chosen addresses.
//!
//! NetBSD's x86 pmap with `pmap_enter_gnt` is the model, done better: regions are found in
//! O(log n), grant maps and unmaps are batched with every status checked, and `remove` walks
//! a range once, unmapping grant pages only through the grant-table hypercall.
// Peers choose the grant refs mapped and Xen reports how many entries of a batch it took:
// nothing here may panic on either. The lints keep it so (tests aside).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

// The lab's grant benchmark: in the lab build and in host tests only.
#[cfg(any(test, feature = "lab"))]
mod bench;
mod core;
mod enter;
mod error;
mod grant_list;
mod grant_map;
mod layout;
// Frames lent out of the pmap's allocator: the lab's own pages (and host tests) only.
#[cfg(any(test, feature = "lab"))]
mod lent_frame;
mod mapped_access;
mod mapping;
mod page_index;
mod prot;
mod remove;
mod scratch;
mod stats;
mod tables;
mod va_allocator;

#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "lab"))]
pub use self::bench::{
    floor_benchmark, grant_map_benchmark, BenchError, BenchRow, FloorRow, FloorShape, Spread,
    BENCH_BATCHES, FLOOR_BATCHES, FLOOR_IN_FLIGHT, PAGES_PER_SAMPLE,
};
pub use self::core::{Backoff, Pmap};
pub use self::enter::{ForeignFlags, Mapping};
pub use self::error::{
    GrantMapError, PmapError, ProtectError, RemoveError, RemoveSummary, UnmapCause, UnmapFailure,
};
pub use self::grant_list::{GrantList, GrantPage, GrantRegion, RegionId, RegionPages};
pub use self::grant_map::{MAX_EAGAIN_RETRIES, MAX_GRANT_BATCH, MAX_REGION_PAGES};
pub use self::layout::{
    direct_map_address, in_xen_slots, PageRange, CHOSEN_REGION_END, CHOSEN_REGION_START,
    DIRECT_MAP_BASE, XEN_L4_SLOTS,
};
#[cfg(any(test, feature = "lab"))]
pub use self::lent_frame::LentFrame;
pub use self::mapping::{GrantMapping, PmapLock};
pub use self::prot::Prot;
pub use self::stats::PmapStats;
pub use self::tables::MAX_KEPT_EMPTY_TABLES;
pub use self::va_allocator::{NotAllocated, VaAllocator};
