//! The real `Hypervisor`: the pmap's MMU and grant operations as Xen hypercalls, frame translations from the p2m and M2P.

use super::direct_map::{address_of, P2m};
use super::{grant_table, memory};
use grantsvc::abi::grant_table::{GnttabMapGrantRef, GnttabUnmapGrantRef};
use grantsvc::abi::mmu::{MmuUpdate, MmuextOp};
use grantsvc::addr::{Mfn, Pfn, PAGE_SIZE};
use grantsvc::boot_info::BootInfo;
use grantsvc::hypervisor::{Hypervisor, MmuUpdateError, XenError};
use grantsvc::ids::DomId;

/// Entries in one page-table page.
const ENTRIES_PER_TABLE: usize = PAGE_SIZE / 8;

/// Xen, as the pmap sees it.
pub struct XenHypervisor {
    p2m: P2m,
}

impl XenHypervisor {
    /// The hypervisor for the domain `boot_info` describes.
    pub fn new(boot_info: &BootInfo) -> XenHypervisor {
        XenHypervisor {
            p2m: P2m::from_boot_info(boot_info),
        }
    }

    /// True when `frame` is one of the domain's pfns.
    fn owns(&self, frame: Pfn) -> bool {
        frame.get() < self.p2m.len()
    }
}

impl Hypervisor for XenHypervisor {
    fn mmu_update(&mut self, updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError> {
        memory::mmu_update(updates, foreign)
    }

    fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<(), XenError> {
        memory::mmuext_op(ops)
    }

    fn grant_map(&mut self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        grant_table::map(ops)
    }

    fn grant_unmap(&mut self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        grant_table::unmap(ops)
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

    fn zero_frame(&mut self, frame: Pfn) {
        if !self.owns(frame) {
            log::error!("zero_frame: pfn {frame} is not ours");
            return;
        }
        let start = address_of(frame).as_u64() as *mut u64;
        for index in 0..ENTRIES_PER_TABLE {
            // SAFETY: the frame is ours and mapped writable in the direct map (callers zero
            // only free frames, before they become page tables); the writes stay in the page.
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
