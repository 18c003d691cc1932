//! What tests can ask the simulated Xen: hypercall counts, violations, wire counts recomputed from scratch, live mappings.

use super::machine::{sim_mfn, SimXen};
use crate::abi::mmu::pte;
use crate::addr::{MachineAddr, Mfn, Pfn, VirtAddr};
use crate::pmap::{PageRange, XEN_L4_SLOTS};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// A rule of Xen's the guest broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A grant PTE was cleared or overwritten by something other than the grant unmap (a
    /// debug Xen 4.17 injects #GP; a release Xen leaks the grant).
    ImplicitGrantUnmap { pte: MachineAddr, handle: u32 },
    /// A frame was zeroed without a writable direct-map mapping (or is a page table).
    BadZero(Pfn),
    /// The initial tree failed validation (a bug of the simulation itself).
    InitialTreeInvalid,
}

/// Hypercalls the simulation has served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallCounts {
    pub mmu_update: u64,
    pub mmu_update_entries: u64,
    pub mmuext_op: u64,
    pub tlb_flushes: u64,
    pub page_flushes: u64,
    pub grant_map: u64,
    pub grant_map_ops: u64,
    pub grant_unmap: u64,
    pub grant_unmap_ops: u64,
}

impl SimXen {
    /// Every violation so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Hypercall counts so far.
    pub fn calls(&self) -> HypercallCounts {
        self.calls
    }

    /// Live entries of every table reachable from the root, counted from the tables
    /// themselves (Xen's L4 slots excluded), keyed by pseudo-physical frame.
    pub fn recount_wire(&self) -> BTreeMap<Pfn, (u32, u32)> {
        let mut counts = BTreeMap::new();
        self.recount_table(self.root, 4, &mut counts);
        counts
    }

    fn recount_table(&self, table: Mfn, level: u32, counts: &mut BTreeMap<Pfn, (u32, u32)>) {
        let mut live = 0;
        for index in 0..512 {
            if level == 4 && XEN_L4_SLOTS.contains(&index) {
                continue;
            }
            let entry = self.read_raw(table, index);
            if entry & pte::PRESENT == 0 {
                continue;
            }
            live += 1;
            if level > 1 {
                self.recount_table(Mfn::of_page_table_entry(entry), level - 1, counts);
            }
        }
        if let Some(Some(pfn)) = self.m2p.get(table.get() as usize) {
            counts.insert(*pfn, (level, live));
        }
    }

    /// The present leaf entries in `range`, by address, read from the tables.
    pub fn mapped_in(&self, range: PageRange) -> BTreeMap<VirtAddr, u64> {
        let mut mapped = BTreeMap::new();
        for index in 0..range.pages() {
            let Some(address) = range.page(index) else {
                break;
            };
            let mut table = self.root;
            let mut entry = 0;
            for level in (1..=4).rev() {
                entry = self.read_raw(table, address.table_index(level));
                if entry & pte::PRESENT == 0 {
                    break;
                }
                table = Mfn::of_page_table_entry(entry);
            }
            if entry & pte::PRESENT != 0 {
                mapped.insert(address, entry);
            }
        }
        mapped
    }

    /// True when the entry at `pte` holds a live grant mapping.
    pub fn is_grant_pte(&self, pte: MachineAddr) -> bool {
        self.grant_ptes.contains_key(&pte)
    }

    /// Frames validated as page tables right now.
    pub fn page_table_frames(&self) -> Vec<Mfn> {
        self.frames
            .iter()
            .enumerate()
            .filter(|(_, frame)| frame.table_level.is_some())
            .map(|(index, _)| sim_mfn(index as u64))
            .collect()
    }

    /// The machine frame of one of our pseudo-physical frames.
    pub fn machine_frame(&self, frame: Pfn) -> Option<Mfn> {
        self.p2m.get(frame.get() as usize).copied()
    }
}
