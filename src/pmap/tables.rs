//! Page-table pages: allocating, zeroing, write-protecting and hooking them in; keeping empty ones of the chosen-VA region, unhooking and freeing the rest.

use super::core::{TableInfo, Walk};
use super::layout::direct_map_address;
use super::prot::TABLE_FLAGS;
use super::{Pmap, PmapError};
use crate::abi::mmu::{pte, MmuUpdate, MmuextOp, MMU_NORMAL_PT_UPDATE};
use crate::addr::{Pfn, VirtAddr};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::DomId;
use alloc::vec::Vec;
use litemap::LiteMap;

/// How many empty page tables of the chosen-VA region stay hooked for the next mapping: 64
/// frames (256 KiB), enough for the L3, the L2s and the L1s of 32,768 pages (128 MiB) of grant
/// mappings come and gone. Without them a map+unmap cycle of a page in an empty 2 MiB slot
/// costs five hypercalls instead of two (hook the L1, map, unmap, unhook, flush the whole TLB).
/// Beyond the bound, and whenever a new table finds no free frame, empty tables are unhooked
/// and freed as before ([`Pmap::reclaim_empty_tables`]).
pub const MAX_KEPT_EMPTY_TABLES: usize = 64;

/// What one planned `mmu_update` of a table change means for the pmap's books.
#[derive(Clone, Copy)]
enum TableStep {
    /// The new table's direct-map entry loses `WRITABLE` (Xen refuses a writable table).
    WriteProtect { table: Pfn },
    /// The new table is linked into `parent[index]`.
    Hook {
        table: Pfn,
        level: u32,
        parent: Pfn,
        index: usize,
    },
    /// An empty table is unlinked from its parent.
    Unhook { table: Pfn },
    /// An unlinked table's direct-map entry becomes writable again: it may be freed.
    MakeWritable { table: Pfn },
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// Makes sure every address in `addresses` has an L1 table, creating the missing tables
    /// top-down in ONE `mmu_update` (each table write-protected just before it is hooked, so
    /// that Xen's validation of the parent entry sees no writable mapping of it). When no
    /// frame is left for a table, the kept empty tables are given back first and it tries
    /// once more: they are the memory the pmap can return under pressure.
    pub(super) fn ensure_tables(&mut self, addresses: &[VirtAddr]) -> Result<(), PmapError> {
        match self.ensure_tables_once(addresses) {
            Err(PmapError::OutOfFrames) if self.kept_empty_tables > 0 => {
                self.reclaim_empty_tables();
                self.ensure_tables_once(addresses)
            }
            result => result,
        }
    }

    /// Unhooks and frees every kept empty table (the chosen-VA region's tables that stayed for
    /// reuse); returns how many frames went back to the allocator. Scans the table list: it
    /// runs under memory pressure only, not per operation.
    pub fn reclaim_empty_tables(&mut self) -> usize {
        let mut kept = Vec::new();
        for (frame, info) in self.tables.iter_mut() {
            if info.kept {
                info.kept = false;
                kept.push(*frame);
            }
        }
        self.kept_empty_tables = 0;
        let to_free = self.release_tables(kept, false);
        let freed = to_free.len();
        match self.flush_and_free(false, to_free) {
            Ok(()) => freed,
            Err(_) => 0,
        }
    }

    /// One more live entry in `table` (a kept empty table is no longer empty).
    pub(super) fn add_wire(&mut self, table: Pfn) {
        self.add_wires(table, 1);
    }

    /// `count` more live entries in `table` (a kept empty table is no longer empty).
    // Inlined: the steady map+unmap path calls it, and under emulation each call and return
    // is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
    #[inline(always)]
    pub(super) fn add_wires(&mut self, table: Pfn, count: u32) {
        if let Some(info) = self.tables.get_mut(&table) {
            if info.kept && count > 0 {
                info.kept = false;
                self.kept_empty_tables = self.kept_empty_tables.saturating_sub(1);
            }
            info.wire += count;
        }
    }

    /// `count` fewer live entries in `table`. A table of the chosen-VA region that empties is
    /// kept there and then while the bound allows, as [`Pmap::release_empty_tables`] would keep
    /// it, so that the grant unmap path looks the table up once. True when the table emptied
    /// and is not kept: it is for `release_empty_tables` to unhook.
    // Inlined: the steady map+unmap path calls it, and under emulation each call and return
    // is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
    #[inline(always)]
    pub(super) fn drop_wire(&mut self, table: Pfn, count: u32) -> bool {
        let Some(info) = self.tables.get_mut(&table) else {
            return false;
        };
        info.wire = info.wire.saturating_sub(count);
        info.unused() && !info.keep_if_room(&mut self.kept_empty_tables)
    }

    fn ensure_tables_once(&mut self, addresses: &[VirtAddr]) -> Result<(), PmapError> {
        let mut planned: LiteMap<(Pfn, usize), Pfn> = LiteMap::new();
        let mut updates = Vec::new();
        let mut steps = Vec::new();
        let mut new_frames = Vec::new();
        let mut failing_address = Vec::new();
        for &address in addresses {
            let mut table = self.root;
            let mut level = 4;
            while level > 1 {
                let index = address.table_index(level);
                if let Some(&child) = planned.get(&(table, index)) {
                    table = child;
                    level -= 1;
                    continue;
                }
                let entry = self.hypervisor.read_pte(table, index);
                if entry & pte::PRESENT != 0 {
                    let child = if entry & pte::HUGE != 0 {
                        Err(PmapError::HugePageInTheWay(address))
                    } else {
                        self.table_of(entry).ok_or(PmapError::UnknownTable(address))
                    };
                    match child {
                        Ok(child) => table = child,
                        Err(error) => return Err(self.drop_unused_frames(&new_frames, error)),
                    }
                    level -= 1;
                    continue;
                }
                let (frame, write_protect, hook) = match self.prepare_table_frame(table, index) {
                    Ok(prepared) => prepared,
                    Err(error) => return Err(self.drop_unused_frames(&new_frames, error)),
                };
                new_frames.push(frame);
                updates.push(write_protect);
                steps.push(TableStep::WriteProtect { table: frame });
                updates.push(hook);
                steps.push(TableStep::Hook {
                    table: frame,
                    level: level - 1,
                    parent: table,
                    index,
                });
                failing_address.extend([address, address]);
                planned.insert((table, index), frame);
                table = frame;
                level -= 1;
            }
        }
        if updates.is_empty() {
            return Ok(());
        }
        match self.hypervisor.mmu_update(&updates, DomId::SELF) {
            Ok(()) => {
                self.apply_table_steps(&steps);
                Ok(())
            }
            Err(failure) => {
                let done = failure.done.min(steps.len());
                let (applied, not_applied) = steps.split_at(done);
                let hooked = self.apply_table_steps(applied);
                // Frames write-protected but never hooked get their writable mapping back.
                let mut restore = Vec::new();
                let mut free_now = Vec::new();
                for step in applied {
                    if let TableStep::WriteProtect { table } = *step {
                        if !hooked.contains(&table) {
                            restore.push(table);
                        }
                    }
                }
                for step in not_applied {
                    if let TableStep::WriteProtect { table } = *step {
                        free_now.push(table);
                    }
                }
                for table in restore {
                    match self.direct_map_update(table, true) {
                        Ok(update)
                            if self.hypervisor.mmu_update(&[update], DomId::SELF).is_ok() =>
                        {
                            free_now.push(table)
                        }
                        _ => log::error!(
                            "pmap: pfn {table} stays read-only after a failed hook; not freed"
                        ),
                    }
                }
                for frame in free_now {
                    self.frames.free(frame);
                }
                let to_free = self.release_empty_tables(hooked);
                let _ = self.flush_and_free(false, to_free);
                let address = failing_address
                    .get(done)
                    .copied()
                    .unwrap_or(VirtAddr::new_const(0));
                Err(PmapError::MmuUpdate {
                    address,
                    error: failure.error,
                })
            }
        }
    }

    /// Allocates and zeroes a frame for a table to hang at `parent[index]`, and builds its
    /// write-protect and hook updates.
    fn prepare_table_frame(
        &mut self,
        parent: Pfn,
        index: usize,
    ) -> Result<(Pfn, MmuUpdate, MmuUpdate), PmapError> {
        let frame = self.frames.allocate().ok_or(PmapError::OutOfFrames)?;
        let prepared = (|| {
            let machine = self
                .hypervisor
                .pfn_to_mfn(frame)
                .ok_or(PmapError::NoMachineFrame(frame))?;
            let write_protect = self.direct_map_update(frame, false)?;
            let hook = MmuUpdate::new(
                self.entry_address(parent, index)?,
                machine.base().get() | TABLE_FLAGS,
                MMU_NORMAL_PT_UPDATE,
            );
            Ok((write_protect, hook))
        })();
        match prepared {
            Ok((write_protect, hook)) => {
                self.hypervisor.zero_frame(frame);
                Ok((frame, write_protect, hook))
            }
            Err(error) => {
                self.frames.free(frame);
                Err(error)
            }
        }
    }

    fn drop_unused_frames(&mut self, frames: &[Pfn], error: PmapError) -> PmapError {
        for &frame in frames {
            self.frames.free(frame);
        }
        error
    }

    /// The update that sets (or clears) `WRITABLE` on `frame`'s direct-map entry.
    fn direct_map_update(&self, frame: Pfn, writable: bool) -> Result<MmuUpdate, PmapError> {
        let address = direct_map_address(frame).ok_or(PmapError::FrameNotDirectMapped(frame))?;
        match self.walk(address) {
            Ok(Walk::Leaf {
                table,
                index,
                entry,
            }) if entry & pte::PRESENT != 0 => {
                let value = if writable {
                    entry | pte::WRITABLE
                } else {
                    entry & !(pte::WRITABLE | pte::DIRTY)
                };
                Ok(MmuUpdate::new(
                    self.entry_address(table, index)?,
                    value,
                    MMU_NORMAL_PT_UPDATE,
                ))
            }
            _ => Err(PmapError::FrameNotDirectMapped(frame)),
        }
    }

    /// Books applied steps; returns the tables that got hooked.
    fn apply_table_steps(&mut self, steps: &[TableStep]) -> Vec<Pfn> {
        let mut hooked = Vec::new();
        for step in steps {
            match *step {
                TableStep::Hook {
                    table,
                    level,
                    parent,
                    index,
                } => {
                    let chosen = self.hangs_in_chosen_region(parent, index);
                    self.tables.insert(
                        table,
                        TableInfo {
                            level,
                            wire: 0,
                            parent: Some((parent, index)),
                            adopted: false,
                            kept: false,
                            chosen,
                        },
                    );
                    self.forget_l1_hint();
                    self.add_wire(parent);
                    hooked.push(table);
                }
                TableStep::Unhook { table } => {
                    self.forget_l1_hint();
                    if let Some(info) = self.tables.remove(&table) {
                        if let Some((parent, _)) = info.parent {
                            if let Some(parent_info) = self.tables.get_mut(&parent) {
                                parent_info.wire = parent_info.wire.saturating_sub(1);
                            }
                        }
                    }
                }
                TableStep::WriteProtect { .. } | TableStep::MakeWritable { .. } => {}
            }
        }
        hooked
    }

    /// Unhooks every table among `candidates` (and, in cascade, their parents) whose wire count
    /// is zero, in ONE `mmu_update`, except empty tables of the chosen-VA region, which stay
    /// hooked while fewer than [`MAX_KEPT_EMPTY_TABLES`] are kept. Returns the frames to free
    /// once the TLB is flushed.
    pub(super) fn release_empty_tables(
        &mut self,
        candidates: impl IntoIterator<Item = Pfn>,
    ) -> Vec<Pfn> {
        self.release_tables(candidates, true)
    }

    fn release_tables(
        &mut self,
        candidates: impl IntoIterator<Item = Pfn>,
        keep_allowed: bool,
    ) -> Vec<Pfn> {
        // Tables by (level, frame), lowest level first: a sorted set.
        let mut queue: LiteMap<(u32, Pfn), ()> = LiteMap::new();
        for table in candidates {
            let Some(info) = self.tables.get_mut(&table) else {
                continue;
            };
            if !info.unused() || keep_allowed && info.keep_if_room(&mut self.kept_empty_tables) {
                continue;
            }
            queue.insert((info.level, table), ());
        }
        // Wire counts as they will be once the planned unhooks are applied.
        let mut planned_wire: LiteMap<Pfn, u32> = LiteMap::new();
        let mut updates = Vec::new();
        let mut steps = Vec::new();
        while let Some(&(level, table)) = queue.first().map(|(key, ())| key) {
            queue.remove(&(level, table));
            let Some(info) = self.tables.get(&table).copied() else {
                continue;
            };
            let wire = planned_wire.get(&table).copied().unwrap_or(info.wire);
            let Some((parent, index)) = info.parent else {
                continue;
            };
            if wire != 0 || info.adopted || info.level >= 4 {
                continue;
            }
            let (Ok(unhook), Ok(writable)) = (
                self.entry_address(parent, index),
                self.direct_map_update(table, true),
            ) else {
                log::error!("pmap: cannot unhook empty table {table}; it stays");
                continue;
            };
            updates.push(MmuUpdate::new(unhook, 0, MMU_NORMAL_PT_UPDATE));
            steps.push(TableStep::Unhook { table });
            updates.push(writable);
            steps.push(TableStep::MakeWritable { table });
            let parent_wire = planned_wire.entry(parent).or_insert_with(|| {
                self.tables
                    .get(&parent)
                    .map_or(0, |parent_info| parent_info.wire)
            });
            *parent_wire = parent_wire.saturating_sub(1);
            if let Some(parent_info) = self.tables.get(&parent) {
                queue.insert((parent_info.level, parent), ());
            }
        }
        if updates.is_empty() {
            return Vec::new();
        }
        let done = match self.hypervisor.mmu_update(&updates, DomId::SELF) {
            Ok(()) => steps.len(),
            Err(failure) => {
                log::error!("pmap: unhooking empty page tables: {failure}");
                failure.done.min(steps.len())
            }
        };
        let (applied, not_applied) = steps.split_at(done);
        self.apply_table_steps(applied);
        let mut free = Vec::new();
        for step in applied {
            if let TableStep::MakeWritable { table } = *step {
                free.push(table);
            }
        }
        if let Some(TableStep::MakeWritable { table }) = not_applied.first() {
            log::error!("pmap: table {table} unhooked but still read-only; not freed");
        }
        free
    }

    /// One TLB flush (when `flush` or when frames are to be freed: no stale translation may
    /// go through a freed table), then the frames go back to the allocator.
    pub(super) fn flush_and_free(
        &mut self,
        flush: bool,
        frames: Vec<Pfn>,
    ) -> Result<(), PmapError> {
        if !flush && frames.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.hypervisor.mmuext_op(&[MmuextOp::tlb_flush_all()]) {
            log::error!(
                "pmap: TLB flush failed ({error}); {} table frame(s) not freed",
                frames.len()
            );
            return Err(PmapError::Mmuext(error));
        }
        for frame in frames {
            self.frames.free(frame);
        }
        Ok(())
    }

    /// Invalidates one page's translation on every vcpu (after changing a present entry).
    pub(super) fn flush_page(&mut self, address: VirtAddr) -> Result<(), PmapError> {
        self.hypervisor
            .mmuext_op(&[MmuextOp::invlpg_all(address.as_u64())])
            .map_err(PmapError::Mmuext)
    }
}
