//! The real `Hypervisor`: the pmap's MMU and grant operations as Xen hypercalls, frame translations from the p2m and M2P.
//!
//! A `XenHypervisor` is a capability over the whole address space: its safe methods write
//! page tables, map and unmap grants, zero frames and touch any address. So exactly one is
//! ever made, by [`adopt_address_space`], and it is moved straight into the kernel's `Pmap`,
//! which keeps it private (the pmap's `hypervisor()` accessors exist only for tests and the
//! simulation). Every call therefore comes from the pmap, on tables it owns, for VA it
//! manages (the chosen-VA region, or the direct map it builds at boot) and frames its
//! allocator gave it: the invariant the `unsafe` blocks below rely on.

use super::direct_map::{address_of, P2m};
use super::{grant_table, mmu, start_of_day};
use core::sync::atomic::{AtomicBool, Ordering};
use grantsvc::abi::grant_table::{GnttabMapGrantRef, GnttabUnmapGrantRef};
use grantsvc::abi::mmu::{MmuUpdate, MmuextOp};
use grantsvc::addr::{Mfn, Pfn, PAGE_SIZE};
use grantsvc::frame_alloc::FrameAllocator;
use grantsvc::hypervisor::{Hypervisor, MmuUpdateError, XenError};
use grantsvc::ids::DomId;
use grantsvc::pmap::{Pmap, PmapError};

/// Entries in one page-table page.
const ENTRIES_PER_TABLE: usize = PAGE_SIZE / 8;

/// Xen, as the pmap sees it. Not constructible outside this module, not `Clone`.
pub struct XenHypervisor {
    p2m: &'static P2m,
    /// The frame allocator manages `first_free .. nr_pages`; below lie the image, heap,
    /// stacks and Xen's bootstrap area, which are never zeroed.
    first_free: Pfn,
}

/// Set by the first `adopt_address_space`: the one-time token for the one `XenHypervisor`.
static ADOPTED: AtomicBool = AtomicBool::new(false);

/// Why the address space could not be adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdoptError {
    /// start_info is not recorded yet.
    NotBooted,
    /// `adopt_address_space` ran before: there is one pmap.
    AlreadyAdopted,
    /// start_info's `pt_base` is not one of our frames.
    RootNotOurs,
    /// The pmap refused the tree.
    Pmap(PmapError),
}

impl core::fmt::Display for AdoptError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AdoptError::NotBooted => formatter.write_str("start_info is not recorded yet"),
            AdoptError::AlreadyAdopted => {
                formatter.write_str("the address space is adopted already")
            }
            AdoptError::RootNotOurs => {
                formatter.write_str("start_info's pt_base is not a frame of ours")
            }
            AdoptError::Pmap(error) => write!(formatter, "{error}"),
        }
    }
}

/// The kernel's pmap over the tree Xen started us with (its L4 is at `pt_base`), holding the
/// one `XenHypervisor`. Works once; `frames` supplies its page-table pages.
pub fn adopt_address_space<A: FrameAllocator>(
    frames: A,
) -> Result<Pmap<XenHypervisor, A>, AdoptError> {
    let boot_info = start_of_day::boot_info().ok_or(AdoptError::NotBooted)?;
    let p2m = start_of_day::p2m().ok_or(AdoptError::NotBooted)?;
    let root = boot_info
        .pfn_of(boot_info.page_table_base())
        .and_then(|pfn| p2m.machine_frame(pfn))
        .ok_or(AdoptError::RootNotOurs)?;
    if ADOPTED.swap(true, Ordering::AcqRel) {
        return Err(AdoptError::AlreadyAdopted);
    }
    let hypervisor = XenHypervisor {
        p2m,
        first_free: boot_info.first_free_pfn(),
    };
    Pmap::adopt(hypervisor, frames, root).map_err(AdoptError::Pmap)
}

impl XenHypervisor {
    /// True when `frame` is one of the domain's pfns.
    fn owns(&self, frame: Pfn) -> bool {
        frame.get() < self.p2m.len()
    }
}

impl Hypervisor for XenHypervisor {
    /// Only the pmap holds this capability (module doc), which meets `mmu::mmu_update`'s
    /// contract: (1) it writes entries of its own tables, for the chosen-VA region or, at boot,
    /// the direct map it builds over frames not yet mapped; its safe API refuses the direct
    /// map; (2) it maps its own frames writable only where nothing else maps them writable for
    /// Rust code, and peers' frames only where they are reached as shared memory.
    fn mmu_update(&mut self, updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError> {
        // SAFETY: only the pmap calls this, on its own tables and VA, never the live direct
        // map; contracts 1 and 2 are met as this method's doc says.
        unsafe { mmu::mmu_update(updates, foreign) }
    }

    fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<(), XenError> {
        // SAFETY: only the pmap holds this capability; it issues TLB flushes, and pins or
        // unpins only tables it owns after unhooking them (contract of `mmuext_op`).
        unsafe { mmu::mmuext_op(ops) }
    }

    fn grant_map(&mut self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        // SAFETY: only the pmap holds this capability; its ops name not-present entries of
        // its own L1 tables for pages of grant regions in the chosen-VA region, and it keeps
        // each handle in its grant list to unmap by (contract of `grant_table::map`).
        unsafe { grant_table::map(ops) }
    }

    fn grant_unmap(&mut self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        // SAFETY: only the pmap holds this capability; it unmaps pages of its grant list,
        // under its lock, after which no `GrantMapping` reaches them (each access re-checks
        // the grant list) (contract of `grant_table::unmap`).
        unsafe { grant_table::unmap(ops) }
    }

    fn read_pte(&self, table: Pfn, index: usize) -> u64 {
        if !self.owns(table) || index >= ENTRIES_PER_TABLE {
            log::error!("read_pte: pfn {table} entry {index} is not a page-table entry of ours");
            return 0;
        }
        let entry = (address_of(table).as_u64() as *const u64).wrapping_add(index);
        // SAFETY: `table` is one of our pfns, which the direct map covers (the pmap extends it
        // before using frames past Xen's initial mapping), and `index` is inside the page.
        // Page tables are readable by a PV guest; volatile because Xen writes them.
        unsafe { core::ptr::read_volatile(entry) }
    }

    /// Zeroes a frame the allocator manages, through the direct map. Only the pmap calls it,
    /// for a frame its allocator just gave it to become a page table, so nothing else uses
    /// the frame; frames below `first_free` (image, heap, stacks, bootstrap area) are refused.
    fn zero_frame(&mut self, frame: Pfn) {
        if !self.owns(frame) || frame < self.first_free {
            log::error!("zero_frame: pfn {frame} is not one the frame allocator manages");
            return;
        }
        let start = address_of(frame).as_u64() as *mut u64;
        for index in 0..ENTRIES_PER_TABLE {
            // SAFETY: our frame from the allocator's range (checked above), mapped writable in
            // the direct map and unused by anyone else (method doc); the write stays in the page.
            unsafe { core::ptr::write_volatile(start.add(index), 0) };
        }
    }

    fn pfn_to_mfn(&self, frame: Pfn) -> Option<Mfn> {
        self.p2m.machine_frame(frame)
    }

    fn mfn_to_pfn(&self, frame: Mfn) -> Option<Pfn> {
        self.p2m.pseudo_physical_frame(frame)
    }
}
