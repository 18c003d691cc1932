//! The hypervisor interface: hypercalls, the shared-info page, the direct map, and the real `Hypervisor`.
//!
//! # Safety of this layer (the SAFETY.md of grantsvc)
//!
//! This module and `kernel::boot` are the only places with `unsafe` (`src/main.rs` and
//! `src/lib.rs` deny `unsafe_code`; the workspace denies `unsafe_op_in_unsafe_fn` and
//! `clippy::undocumented_unsafe_blocks`). The invariant the layer keeps:
//!
//! **No safe function of this layer, called with any arguments in any order, lets safe code
//! unmap, remap, alias, zero or free memory that Rust code owns, nor read or write through
//! an address the caller chose.**
//!
//! It is kept in four ways, one per kind of operation:
//! 1. *Raw operations are `unsafe fn`* with numbered `# Safety` lists: the hypercall entry
//!    (`hypercall::hypercall5` and its shorthands), the MMU hypercalls (`mmu::mmu_update`,
//!    `mmuext_op`, `update_va_mapping`), grant map and unmap (`grant_table::map`, `unmap`),
//!    `SharedRegion::new`, `P2m::from_boot_info`, and `start_of_day::record`.
//! 2. *Boot facts exist once.* `boot::entry` calls `start_of_day::record` once with the
//!    start_info Xen handed over; the p2m is read then, once. Everything that builds a slice
//!    or a mapping from boot facts (`ring_pages`, `shared_info::map`,
//!    `xen_hypervisor::adopt_address_space`, `own_pages`) takes them from that record, never from
//!    a caller's `BootInfo`, which is therefore harmless to forge.
//! 3. *One-time tokens.* `shared_info::map` and `xen_hypervisor::adopt_address_space` work once
//!    (an atomic flag each), so the shared-info page cannot be pointed elsewhere and there is
//!    exactly one `XenHypervisor`.
//! 4. *Capabilities.* The one `XenHypervisor` (page-table writes, grant maps, `zero_frame`,
//!    any-address `VirtualMemory`) is created inside the kernel's `Pmap` and never leaves it
//!    (`Pmap::hypervisor`/`hypervisor_mut` exist only under `cfg(test)` or the `sim`
//!    feature). The pmap's safe API acts only on the chosen-VA region the VA allocator hands
//!    out (it refuses the direct map: kernel image, heap, stacks, page tables), reaches bytes
//!    only through pages it mapped itself (`GrantMapping`, `read_mapped`, `write_mapped`), and
//!    zeroes only frames its allocator gave it, which `XenHypervisor::zero_frame` also checks
//!    lie in the allocator's range.
//!
//! Every other public function either passes no pointer to Xen, or passes pointers only to
//! its own locals or to slices it borrows for the call, or takes only typed ids (a port, a
//! domain) whose misuse Xen refuses. The frame allocator that hands out the domain's frames
//! lives inside the one `Pmap` (boot takes the heap's frames out of it first): nothing outside
//! the pmap can free a frame its page tables or the heap use, and the lab's own pages borrow
//! frames as `LentFrame` tokens that only `Pmap::take_back_frame` accepts back.
//!
//! How a reviewer checks it:
//! - `grep -rn "pub fn" src/kernel/xen` lists no safe function that takes a raw address,
//!   pointer or frame to act on (`P2m::machine_frame`/`pseudo_physical_frame` only look a
//!   frame up; `grant_table::setup_table` only writes frames into the caller's slice).
//! - `grep -rn "unsafe" src/kernel src/lib.rs src/main.rs` shows `unsafe` only under
//!   `src/kernel/{boot,xen}`, each block with a `// SAFETY:` comment that names the contract
//!   item it meets (clippy enforces the comment).
//! - `grep -rn "XenHypervisor {" src/kernel` finds one construction, in
//!   `adopt_address_space`, behind its one-time flag; `grep -rn "hypervisor()\|hypervisor_mut()"
//!   src --include=*.rs` finds uses only in tests and the simulation.
//! - `cargo test -p grantsvc --lib pmap::tests::ordinary` shows the pmap refusing the direct
//!   map and reaching only its own pages.
//!
//! # Host tests
//!
//! `src/main.rs` compiles this layer into its host test build (`cargo test -p grantsvc --bins`,
//! and under Miri `make miri`) with the hypercall entry swapped for `fake_xen`, a handler that
//! plays Xen through the very pointers the wrappers pass: the grant map and unmap batches, the
//! MMU batches, the event-channel operations, the shared-info page and `SharedRegion` (the ring
//! pages' reader) are tested so. Modules that need the kernel around them (`platform`, and the
//! lab's `own_pages` and `grant_entries`) are left out of that build; the direct map, the M2P
//! and the ring pages' frames lie at fixed kernel addresses, so they are not run on the host.
#![allow(unsafe_code)]

// The production image calls only part of these hypercall wrappers; the rest (grant-table
// set-up and size, SCHEDOP_poll, an unbound port, the pending bit and upcall mask, the interval
// clock) are `cfg(feature = "lab")` items (or `cfg(any(test, feature = "lab"))`, where the host
// tests call them): the layer's API that only the lab build's self-tests and scenarios use.

pub mod direct_map;
pub mod event_channel;
#[cfg(test)]
mod fake_xen;
// Our own grant table's entries and our own pages: the lab's self-grant machinery only.
#[cfg(all(feature = "lab", target_os = "none"))]
pub mod grant_entries;
pub mod grant_table;
pub mod hypercall;
pub mod mmu;
#[cfg(all(feature = "lab", target_os = "none"))]
pub mod own_pages;
#[cfg(target_os = "none")]
pub mod platform;
pub mod ring_pages;
pub mod sched;
pub mod shared_info;
pub mod shared_region;
pub mod start_of_day;
pub mod time;
pub mod virtual_memory;
pub mod xen_hypervisor;
