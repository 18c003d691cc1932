//! The simulated PV MMU: page types, reference counts and Xen's validation of every `mmu_update`, plus the Hypervisor impl.

use super::inspect::Violation;
use super::machine::{normalise, SimXen, SIM_DOMID};
use crate::abi::grant_table::{GnttabMapGrantRef, GnttabUnmapGrantRef};
use crate::abi::mmu::{
    mmuext, pte, MmuUpdate, MmuextOp, MMU_NORMAL_PT_UPDATE, MMU_PT_UPDATE_NO_TRANSLATE,
    MMU_PT_UPDATE_PRESERVE_AD,
};
use crate::addr::{MachineAddr, Mfn, Pfn};
use crate::hypervisor::{Hypervisor, MmuUpdateError, XenError};
use crate::ids::DomId;
use crate::pmap::{direct_map_address, XEN_L4_SLOTS};

impl SimXen {
    /// Validates a frame as a table of `level`: every present entry must be acceptable, and
    /// takes the references its entries hold (undone on failure).
    pub(super) fn promote(&mut self, table: Mfn, level: u32) -> Result<(), XenError> {
        let frame = self
            .frames
            .get(table.get() as usize)
            .ok_or(XenError::EINVAL)?;
        if frame.writable_refs > 0 || frame.owner != SIM_DOMID {
            return Err(XenError::EINVAL);
        }
        for index in 0..512 {
            if level == 4 && XEN_L4_SLOTS.contains(&index) {
                continue;
            }
            let entry = self.read_raw(table, index);
            if let Err(error) = self.take_entry(level, entry, SIM_DOMID, MMU_NORMAL_PT_UPDATE) {
                for undo in 0..index {
                    if level == 4 && XEN_L4_SLOTS.contains(&undo) {
                        continue;
                    }
                    let entry = self.read_raw(table, undo);
                    self.drop_entry(level, entry, table, undo);
                }
                return Err(error);
            }
        }
        if let Some(frame) = self.frames.get_mut(table.get() as usize) {
            frame.table_level = Some(level);
        }
        Ok(())
    }

    /// Takes the reference a new entry of a `level` table holds; refuses what Xen refuses.
    fn take_entry(
        &mut self,
        level: u32,
        entry: u64,
        owner: DomId,
        command: u64,
    ) -> Result<(), XenError> {
        if entry & pte::PRESENT == 0 {
            return Ok(());
        }
        let mut target = Mfn::of_page_table_entry(entry);
        if level == 1 {
            let domain = self.domains.get(&owner).ok_or(XenError::ESRCH)?;
            if domain.translated && command != MMU_PT_UPDATE_NO_TRANSLATE {
                // A translated domain's plain updates carry guest frame numbers.
                target = *domain
                    .frames
                    .get(target.get() as usize)
                    .ok_or(XenError::EINVAL)?;
            }
            let frame = self
                .frames
                .get_mut(target.get() as usize)
                .ok_or(XenError::EINVAL)?;
            if frame.owner != owner {
                return Err(XenError::EINVAL);
            }
            if entry & pte::WRITABLE != 0 {
                if frame.table_level.is_some() {
                    return Err(XenError::EINVAL);
                }
                frame.writable_refs += 1;
            }
            return Ok(());
        }
        if entry & pte::HUGE != 0 {
            return Err(XenError::EINVAL);
        }
        let frame = self
            .frames
            .get(target.get() as usize)
            .ok_or(XenError::EINVAL)?;
        match frame.table_level {
            Some(existing) if existing == level - 1 => {}
            Some(_) => return Err(XenError::EINVAL),
            None => self.promote(target, level - 1)?,
        }
        if let Some(frame) = self.frames.get_mut(target.get() as usize) {
            frame.table_refs += 1;
        }
        Ok(())
    }

    /// Drops the reference an old entry held. Dropping a grant PTE this way is the implicit
    /// unmap: recorded as a violation (a release Xen would leak the grant; so does the sim).
    fn drop_entry(&mut self, level: u32, entry: u64, table: Mfn, index: usize) {
        if entry & pte::PRESENT == 0 {
            return;
        }
        let target = Mfn::of_page_table_entry(entry);
        if level == 1 {
            let address = MachineAddr::new_truncate(table.base().get() + index as u64 * 8);
            if let Some(handle) = self.grant_ptes.remove(&address) {
                self.violations.push(Violation::ImplicitGrantUnmap {
                    pte: address,
                    handle,
                });
                return;
            }
            if entry & pte::WRITABLE != 0 {
                if let Some(frame) = self.frames.get_mut(target.get() as usize) {
                    frame.writable_refs = frame.writable_refs.saturating_sub(1);
                }
            }
            return;
        }
        let Some(frame) = self.frames.get_mut(target.get() as usize) else {
            return;
        };
        frame.table_refs = frame.table_refs.saturating_sub(1);
        if frame.table_refs == 0 {
            // No longer used as a table: Xen drops the references its entries held.
            frame.table_level = None;
            for child in 0..512 {
                let entry = self.read_raw(target, child);
                self.drop_entry(level - 1, entry, target, child);
            }
        }
    }

    fn update_one(&mut self, update: &MmuUpdate, foreign: DomId) -> Result<(), XenError> {
        let command = update.command();
        if ![
            MMU_NORMAL_PT_UPDATE,
            MMU_PT_UPDATE_PRESERVE_AD,
            MMU_PT_UPDATE_NO_TRANSLATE,
        ]
        .contains(&command)
        {
            return Err(XenError::ENOSYS);
        }
        let address = update.pte_address();
        if address.get() % 8 != 0 {
            return Err(XenError::EINVAL);
        }
        let table = address.frame();
        let index = (address.page_offset() / 8) as usize;
        let frame = self
            .frames
            .get(table.get() as usize)
            .ok_or(XenError::EINVAL)?;
        let level = match frame.table_level {
            Some(level) if frame.owner == SIM_DOMID => level,
            _ => return Err(XenError::EINVAL),
        };
        if level == 4 && XEN_L4_SLOTS.contains(&index) {
            return Err(XenError::EPERM);
        }
        let owner = if level == 1 {
            normalise(foreign)
        } else {
            SIM_DOMID
        };
        let mut value = update.val;
        if level == 1 && value & pte::PRESENT != 0 {
            // 64-bit PV kernels run in ring 3: Xen makes their mappings user-accessible.
            value |= pte::USER;
        }
        let old = self.read_raw(table, index);
        if level == 1 && self.grant_ptes.contains_key(&address) && old != value {
            let handle = self.grant_ptes.get(&address).copied().unwrap_or(0);
            self.violations.push(Violation::ImplicitGrantUnmap {
                pte: address,
                handle,
            });
            return Err(XenError::EPERM);
        }
        self.take_entry(level, value, owner, command)?;
        self.drop_entry(level, old, table, index);
        self.write_raw(table, index, value);
        Ok(())
    }

    /// Our machine frame of pseudo-physical frame `frame`.
    fn machine(&self, frame: Pfn) -> Option<Mfn> {
        self.p2m.get(frame.get() as usize).copied()
    }
}

impl Hypervisor for SimXen {
    fn mmu_update(&mut self, updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError> {
        self.calls.mmu_update += 1;
        self.calls.mmu_update_entries += updates.len() as u64;
        let injected = self.fail_next_mmu_update.take();
        for (done, update) in updates.iter().enumerate() {
            let result = match injected {
                Some((index, error)) if index == done => Err(error),
                _ => self.update_one(update, foreign),
            };
            if let Err(error) = result {
                return Err(MmuUpdateError { error, done });
            }
        }
        Ok(())
    }

    fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<(), XenError> {
        self.calls.mmuext_op += 1;
        for op in ops {
            match op.cmd {
                mmuext::TLB_FLUSH_LOCAL | mmuext::TLB_FLUSH_ALL => self.calls.tlb_flushes += 1,
                mmuext::INVLPG_LOCAL | mmuext::INVLPG_ALL => self.calls.page_flushes += 1,
                _ => return Err(XenError::ENOSYS),
            }
        }
        Ok(())
    }

    fn grant_map(&mut self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        self.map_grants(ops)
    }

    fn grant_unmap(&mut self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        self.unmap_grants(ops)
    }

    fn read_pte(&self, table: Pfn, index: usize) -> u64 {
        if index >= 512 {
            return 0;
        }
        self.machine(table)
            .map_or(0, |mfn| self.read_raw(mfn, index))
    }

    fn zero_frame(&mut self, frame: Pfn) {
        let Some(mfn) = self.machine(frame) else {
            self.violations.push(Violation::BadZero(frame));
            return;
        };
        // The kernel zeroes through the writable direct map: that mapping must exist.
        let writable = direct_map_address(frame)
            .and_then(|address| self.translate(address, true))
            .is_some_and(|(target, _)| target == mfn);
        if !writable {
            self.violations.push(Violation::BadZero(frame));
            return;
        }
        if let Some(frame) = self.frames.get_mut(mfn.get() as usize) {
            frame.data.clear();
        }
    }

    fn pfn_to_mfn(&self, frame: Pfn) -> Option<Mfn> {
        self.machine(frame)
    }

    fn mfn_to_pfn(&self, frame: Mfn) -> Option<Pfn> {
        self.m2p.get(frame.get() as usize).copied().flatten()
    }
}
