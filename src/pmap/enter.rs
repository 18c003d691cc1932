//! Ordinary mappings: enter, enter_foreign, extract, protect, and the boot-time extension of the direct map.

use super::core::{entry_frame, ForeignMapping, Walk};
use super::error::check_range;
use super::layout::{
    direct_map_address, in_chosen_region, in_xen_slots, PageRange, ENTRIES_PER_TABLE,
};
use super::{Pmap, PmapError, Prot, ProtectError};
use crate::abi::mmu::{pte, MmuUpdate, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE};
use crate::addr::{Mfn, Pfn, VirtAddr};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::{DomId, GrantHandle, GrantRef};
use alloc::vec::Vec;
use litemap::LiteMap;

/// Options of [`Pmap::enter_foreign`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForeignFlags {
    /// `MMU_PT_UPDATE_NO_TRANSLATE`: the frame is a machine frame even if the foreign domain
    /// is translated (HVM/PVH), like NetBSD's `PMAP_MD_XEN_NOTR`.
    pub no_translate: bool,
}

/// What is mapped at an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// One of our own frames.
    Ordinary { frame: Pfn, prot: Prot },
    /// A machine frame entered with `enter_foreign`.
    Foreign {
        frame: Mfn,
        domain: DomId,
        prot: Prot,
    },
    /// A page of a grant region.
    Grant {
        peer: DomId,
        grant_ref: GrantRef,
        handle: GrantHandle,
        readonly: bool,
    },
    /// A present entry the pmap did not make and whose frame is not in our p2m (from Xen's tree).
    Untracked { frame: Mfn, prot: Prot },
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// Maps our frame `frame` at `address` (replacing an ordinary mapping there).
    pub fn enter(&mut self, address: VirtAddr, frame: Pfn, prot: Prot) -> Result<(), PmapError> {
        self.check_enter_address(address)?;
        if prot.contains(Prot::WRITE) && self.is_page_table(frame) {
            return Err(PmapError::FrameIsPageTable(frame));
        }
        let machine = self
            .hypervisor
            .pfn_to_mfn(frame)
            .ok_or(PmapError::NoMachineFrame(frame))?;
        let value = machine.base().get() | prot.leaf_flags();
        self.enter_leaf(address, value, DomId::SELF, MMU_NORMAL_PT_UPDATE, None)
    }

    /// Maps machine frame `frame` of domain `domain` at `address` through `mmu_update` with
    /// `domain` as the foreign owner (`DomId::SELF` for non-RAM frames of our own).
    pub fn enter_foreign(
        &mut self,
        address: VirtAddr,
        frame: Mfn,
        domain: DomId,
        prot: Prot,
        flags: ForeignFlags,
    ) -> Result<(), PmapError> {
        self.check_enter_address(address)?;
        let command = if flags.no_translate {
            MMU_PT_UPDATE_NO_TRANSLATE
        } else {
            MMU_NORMAL_PT_UPDATE
        };
        let value = frame.base().get() | prot.leaf_flags();
        let foreign = ForeignMapping {
            domain,
            no_translate: flags.no_translate,
        };
        self.enter_leaf(address, value, domain, command, Some(foreign))
    }

    fn check_enter_address(&self, address: VirtAddr) -> Result<(), PmapError> {
        if !address.is_page_aligned() {
            return Err(PmapError::BadRange);
        }
        if in_xen_slots(address) {
            return Err(PmapError::XenSlots(address));
        }
        if !in_chosen_region(address) {
            return Err(PmapError::OutsideChosenRegion(address));
        }
        if self.grants.find_out_of_line(address).is_some() {
            return Err(PmapError::GrantPageInTheWay(address));
        }
        Ok(())
    }

    fn enter_leaf(
        &mut self,
        address: VirtAddr,
        value: u64,
        domain: DomId,
        command: u64,
        foreign: Option<ForeignMapping>,
    ) -> Result<(), PmapError> {
        self.ensure_tables(&[address])?;
        let Walk::Leaf {
            table,
            index,
            entry,
        } = self.walk(address)?
        else {
            return Err(PmapError::UnknownTable(address));
        };
        let update = MmuUpdate::new(self.entry_address(table, index)?, value, command);
        let was_present = entry & pte::PRESENT != 0;
        if let Err(failure) = self.hypervisor.mmu_update(&[update], domain) {
            if !was_present {
                let to_free = self.release_empty_tables([table]);
                let _ = self.flush_and_free(false, to_free);
            }
            return Err(PmapError::MmuUpdate {
                address,
                error: failure.error,
            });
        }
        if !was_present {
            self.add_wire(table);
        }
        match foreign {
            Some(mapping) => self.foreign.insert(address.as_u64(), mapping),
            None => self.foreign.remove(&address.as_u64()),
        };
        if was_present {
            self.flush_page(address)?;
        }
        Ok(())
    }

    /// What is mapped at `address` (any address inside the page).
    pub fn extract(&self, address: VirtAddr) -> Option<Mapping> {
        let page = address.page_base();
        if let Some(region) = self.grants.find_out_of_line(page) {
            let (_, grant) = region.page_at(page)?;
            return Some(Mapping::Grant {
                peer: region.peer,
                grant_ref: grant.grant_ref,
                handle: grant.handle,
                readonly: region.readonly,
            });
        }
        if in_xen_slots(page) {
            return None;
        }
        let Ok(Walk::Leaf { entry, .. }) = self.walk(page) else {
            return None;
        };
        if entry & pte::PRESENT == 0 {
            return None;
        }
        let frame = entry_frame(entry);
        let prot = Prot::from_leaf(entry);
        if let Some(foreign) = self.foreign.get(&page.as_u64()) {
            return Some(Mapping::Foreign {
                frame,
                domain: foreign.domain,
                prot,
            });
        }
        match self.hypervisor.mfn_to_pfn(frame) {
            Some(pfn) if self.hypervisor.pfn_to_mfn(pfn) == Some(frame) => {
                Some(Mapping::Ordinary { frame: pfn, prot })
            }
            _ => Some(Mapping::Untracked { frame, prot }),
        }
    }

    /// Changes the protection of every ordinary and foreign page mapped in `range`; one batch
    /// per owning domain, one TLB flush. Refused, changing nothing, if grant pages are in the
    /// range (their entries belong to Xen's grant code).
    pub fn protect(&mut self, range: PageRange, prot: Prot) -> Result<(), ProtectError> {
        check_range(&range).map_err(ProtectError::PageTables)?;
        if let Some(start) = self.grants.overlapping(&range) {
            let first = start.max(range.start());
            return Err(ProtectError::GrantPagesInRange(first));
        }
        let leaves = self
            .present_leaves(&range)
            .map_err(ProtectError::PageTables)?;
        // Grouped by (owner, command): the owner rides on the whole mmu_update call.
        let mut groups: LiteMap<(DomId, u64), Vec<(MmuUpdate, VirtAddr)>> = LiteMap::new();
        for leaf in &leaves {
            let mut value = (leaf.entry & pte::FRAME_MASK) | prot.leaf_flags();
            let frame = entry_frame(leaf.entry);
            let (domain, command) = match self.foreign.get(&leaf.address.as_u64()) {
                Some(foreign) if foreign.no_translate => {
                    (foreign.domain, MMU_PT_UPDATE_NO_TRANSLATE)
                }
                Some(foreign) => (foreign.domain, MMU_NORMAL_PT_UPDATE),
                None => {
                    let own_table = self
                        .hypervisor
                        .mfn_to_pfn(frame)
                        .is_some_and(|pfn| self.is_page_table(pfn));
                    if own_table {
                        // Page tables stay read-only whatever is asked.
                        value &= !(pte::WRITABLE | pte::DIRTY);
                    }
                    (DomId::SELF, MMU_NORMAL_PT_UPDATE)
                }
            };
            if value == leaf.entry {
                continue;
            }
            let address = self
                .entry_address(leaf.table, leaf.index)
                .map_err(ProtectError::PageTables)?;
            groups
                .entry((domain, command))
                .or_default()
                .push((MmuUpdate::new(address, value, command), leaf.address));
        }
        let changed = !groups.is_empty();
        let mut result = Ok(());
        for ((domain, _), group) in groups {
            let updates: Vec<MmuUpdate> = group.iter().map(|(update, _)| *update).collect();
            if let Err(failure) = self.hypervisor.mmu_update(&updates, domain) {
                let address = group
                    .get(failure.done)
                    .map_or(range.start(), |(_, address)| *address);
                result = Err(ProtectError::PageTables(PmapError::MmuUpdate {
                    address,
                    error: failure.error,
                }));
                break;
            }
        }
        if changed {
            self.flush_and_free(true, Vec::new())
                .map_err(ProtectError::PageTables)?;
        }
        result
    }

    /// Maps frames `first .. first + count` at their direct-map addresses (read-only for page
    /// tables, read-write and no-execute otherwise), skipping those already mapped. Used at
    /// boot for the memory beyond Xen's initial mapping; page-table frames come from the
    /// allocator lowest-first, so they are already mapped when needed. Returns pages mapped.
    pub fn extend_direct_map(&mut self, first: Pfn, count: u64) -> Result<u64, PmapError> {
        let mut mapped = 0;
        let mut next = first.get();
        let end = first.get().checked_add(count).ok_or(PmapError::BadRange)?;
        while next < end {
            // One L1 table's worth per batch.
            let chunk_end =
                end.min((next / ENTRIES_PER_TABLE as u64 + 1) * ENTRIES_PER_TABLE as u64);
            // The chunk's pages share one L1 table (the direct map starts on a 2 MiB
            // boundary), so the tree is walked once for the chunk, not once per page: at boot
            // this loop covers every frame of the domain.
            let chunk_start = Pfn::new(next).ok_or(PmapError::BadRange)?;
            let first_address = direct_map_address(chunk_start).ok_or(PmapError::BadRange)?;
            let existing_table = match self.walk(first_address)? {
                Walk::Leaf { table, .. } => Some(table),
                Walk::Missing => None,
            };
            let mut wanted = Vec::new();
            for frame in (next..chunk_end).map_while(Pfn::new) {
                let address = direct_map_address(frame).ok_or(PmapError::BadRange)?;
                let present = existing_table.is_some_and(|table| {
                    self.hypervisor.read_pte(table, address.table_index(1)) & pte::PRESENT != 0
                });
                if !present {
                    wanted.push((address, frame));
                }
            }
            next = chunk_end;
            if wanted.is_empty() {
                continue;
            }
            let addresses: Vec<VirtAddr> = wanted.iter().map(|(address, _)| *address).collect();
            self.ensure_tables(&addresses)?;
            let Walk::Leaf { table, .. } = self.walk(first_address)? else {
                return Err(PmapError::UnknownTable(first_address));
            };
            let mut updates = Vec::with_capacity(wanted.len());
            let mut tables = Vec::with_capacity(wanted.len());
            for &(address, frame) in &wanted {
                let index = address.table_index(1);
                let machine = self
                    .hypervisor
                    .pfn_to_mfn(frame)
                    .ok_or(PmapError::NoMachineFrame(frame))?;
                let prot = if self.is_page_table(frame) {
                    Prot::READ_ONLY
                } else {
                    Prot::READ_WRITE
                };
                updates.push(MmuUpdate::new(
                    self.entry_address(table, index)?,
                    machine.base().get() | prot.leaf_flags(),
                    MMU_NORMAL_PT_UPDATE,
                ));
                tables.push(table);
            }
            let result = self.hypervisor.mmu_update(&updates, DomId::SELF);
            let done = match result {
                Ok(()) => updates.len(),
                Err(failure) => failure.done.min(updates.len()),
            };
            for table in tables.iter().take(done) {
                self.add_wire(*table);
            }
            mapped += done as u64;
            if let Err(failure) = result {
                let to_free = self.release_empty_tables(tables.iter().copied());
                let _ = self.flush_and_free(false, to_free);
                let address = wanted.get(done).map_or(VirtAddr::new_const(0), |(a, _)| *a);
                return Err(PmapError::MmuUpdate {
                    address,
                    error: failure.error,
                });
            }
        }
        Ok(mapped)
    }
}
