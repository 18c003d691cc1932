//! A simulated Xen for host tests: machine frames with owners, validated page tables, grant tables, maptrack.
//!
//! It enforces the rules the pmap must live by under real Xen: page tables are read-only and
//! change only through `mmu_update`, which validates each entry (page types, frame owners,
//! the foreign domain); grant maps with `GNTMAP_contains_pte` need a non-present entry in one
//! of our L1 tables; unmaps need the matching handle and PTE address; and clearing or
//! overwriting a grant PTE any other way is recorded as a violation (the implicit unmap a
//! debug Xen 4.17 answers with #GP).

mod domain;
mod frame_allocator;
mod grants;
mod inspect;
mod machine;
mod memory;
mod mmu;
#[cfg(test)]
mod tests;

pub use self::domain::{GrantEntryState, SimDomain};
pub use self::frame_allocator::SimFrameAllocator;
pub use self::inspect::{HypercallCounts, Violation};
pub use self::machine::{SimConfig, SimXen, DOMID_XEN, SIM_DOMID};
