//! Simulated grant tables and our maptrack: GNTTABOP_map/unmap_grant_ref with Xen's checks and statuses.

use super::domain::{GrantEntry, GrantEntryState};
use super::machine::{normalise, sim_mfn, Maptrack, SimXen, SIM_DOMID};
use crate::abi::grant_table::{gntmap, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantStatus};
use crate::abi::mmu::pte;
use crate::addr::{MachineAddr, Mfn, Pfn};
use crate::hypervisor::XenError;
use crate::ids::{DomId, GrantRef};

/// Ending access failed because a mapping of the grant is still alive (GTF_reading/writing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StillMapped;

impl SimXen {
    /// `granter` grants `grantee` access to its machine frame `frame`; returns the ref.
    pub fn grant_access(
        &mut self,
        granter: DomId,
        frame: Mfn,
        grantee: DomId,
        readonly: bool,
    ) -> GrantRef {
        let granter = normalise(granter);
        let Some(domain) = self.domains.get_mut(&granter) else {
            return GrantRef::new(u32::MAX);
        };
        domain.grants.push(GrantEntry {
            state: GrantEntryState::Permitted {
                frame,
                grantee: normalise(grantee),
                readonly,
            },
            readers: 0,
            writers: 0,
            eagain_left: 0,
            unmap_failures_left: 0,
        });
        GrantRef::new(domain.grants.len() as u32 - 1)
    }

    /// Our own frame `frame` granted to ourselves (what the kernel's lab scenarios do).
    pub fn grant_own_frame(&mut self, frame: Pfn, readonly: bool) -> GrantRef {
        let mfn = self
            .p2m
            .get(frame.get() as usize)
            .copied()
            .unwrap_or(sim_mfn(0));
        self.grant_access(SIM_DOMID, mfn, SIM_DOMID, readonly)
    }

    /// Adds an entry that was never filled in (`GTF_invalid`).
    pub fn add_invalid_grant(&mut self, granter: DomId) -> GrantRef {
        let granter = normalise(granter);
        let Some(domain) = self.domains.get_mut(&granter) else {
            return GrantRef::new(u32::MAX);
        };
        domain.grants.push(GrantEntry {
            state: GrantEntryState::Invalid,
            readers: 0,
            writers: 0,
            eagain_left: 0,
            unmap_failures_left: 0,
        });
        GrantRef::new(domain.grants.len() as u32 - 1)
    }

    /// The granter ends access; refused while a mapping lives, as for a real granter.
    pub fn revoke(&mut self, granter: DomId, grant_ref: GrantRef) -> Result<(), StillMapped> {
        let Some(entry) = self.entry_mut(granter, grant_ref) else {
            return Ok(());
        };
        if entry.readers + entry.writers > 0 {
            return Err(StillMapped);
        }
        entry.state = GrantEntryState::Revoked;
        Ok(())
    }

    /// The next `times` maps of this ref answer `GNTST_eagain`.
    pub fn inject_eagain(&mut self, granter: DomId, grant_ref: GrantRef, times: u32) {
        if let Some(entry) = self.entry_mut(granter, grant_ref) {
            entry.eagain_left = times;
        }
    }

    /// The next `times` unmaps of mappings of this ref fail with `GNTST_general_error`.
    pub fn inject_unmap_failure(&mut self, granter: DomId, grant_ref: GrantRef, times: u32) {
        if let Some(entry) = self.entry_mut(granter, grant_ref) {
            entry.unmap_failures_left = times;
        }
    }

    /// Live mappings through `grant_ref` of `granter` (read-only + writable).
    pub fn active_mappings(&self, granter: DomId, grant_ref: GrantRef) -> u32 {
        self.domain(granter)
            .and_then(|domain| domain.grants.get(grant_ref.get() as usize))
            .map_or(0, |entry| entry.readers + entry.writers)
    }

    /// Handles in use in our maptrack.
    pub fn maptrack_in_use(&self) -> usize {
        self.maptrack.len()
    }

    /// Sets the maptrack limit (to test exhaustion).
    pub fn set_maptrack_limit(&mut self, limit: usize) {
        self.maptrack_limit = limit;
    }

    fn entry_mut(&mut self, granter: DomId, grant_ref: GrantRef) -> Option<&mut GrantEntry> {
        self.domains
            .get_mut(&normalise(granter))?
            .grants
            .get_mut(grant_ref.get() as usize)
    }

    pub(super) fn map_grants(&mut self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        self.calls.grant_map += 1;
        self.calls.grant_map_ops += ops.len() as u64;
        if let Some(error) = self.fail_next_grant_map.take() {
            return Err(error);
        }
        for op in ops.iter_mut() {
            match self.map_one(op) {
                Ok(handle) => {
                    op.status = GrantStatus::Okay.to_raw();
                    op.handle = handle;
                }
                Err(status) => op.status = status.to_raw(),
            }
        }
        Ok(())
    }

    fn map_one(&mut self, op: &GnttabMapGrantRef) -> Result<u32, GrantStatus> {
        if op.flags & gntmap::HOST_MAP == 0 || op.flags & gntmap::CONTAINS_PTE == 0 {
            // The simulation supports PTE-address host mappings only: all the pmap makes.
            return Err(GrantStatus::GeneralError);
        }
        let granter = DomId::new(op.dom).ok_or(GrantStatus::BadDomain)?;
        if !self.domains.contains_key(&granter) {
            return Err(GrantStatus::BadDomain);
        }
        if self.maptrack.len() >= self.maptrack_limit {
            // Xen 4.17 map_grant_ref: "Failed to obtain maptrack handle" -> GNTST_no_space.
            return Err(GrantStatus::NoSpace);
        }
        let readonly = op.flags & gntmap::READONLY != 0;
        let entry = self
            .entry_mut(granter, GrantRef::new(op.ref_))
            .ok_or(GrantStatus::BadGntref)?;
        if entry.eagain_left > 0 {
            entry.eagain_left -= 1;
            return Err(GrantStatus::Eagain);
        }
        let frame = match entry.state {
            GrantEntryState::Permitted {
                frame,
                grantee,
                readonly: granted_readonly,
            } if grantee == SIM_DOMID && (readonly || !granted_readonly) => frame,
            _ => return Err(GrantStatus::GeneralError),
        };
        // GNTMAP_contains_pte: an 8-aligned, not-present entry of one of our L1 tables.
        let host = MachineAddr::new(op.host_addr).ok_or(GrantStatus::GeneralError)?;
        if host.get() % 8 != 0 {
            return Err(GrantStatus::GeneralError);
        }
        let table = host.frame();
        let index = (host.page_offset() / 8) as usize;
        match self.frames.get(table.get() as usize) {
            Some(table_frame)
                if table_frame.owner == SIM_DOMID && table_frame.table_level == Some(1) => {}
            _ => return Err(GrantStatus::GeneralError),
        }
        if self.read_raw(table, index) & pte::PRESENT != 0 {
            return Err(GrantStatus::GeneralError);
        }
        let handle = (0u32..)
            .find(|handle| !self.maptrack.contains_key(handle))
            .unwrap_or(u32::MAX);
        let mut value = frame.base().get()
            | pte::PRESENT
            | pte::ACCESSED
            | pte::DIRTY
            | pte::NO_EXECUTE
            | pte::USER;
        if !readonly {
            value |= pte::WRITABLE;
        }
        self.write_raw(table, index, value);
        self.grant_ptes.insert(host, handle);
        self.maptrack.insert(
            handle,
            Maptrack {
                granter,
                grant_ref: GrantRef::new(op.ref_),
                host_addr: host,
                readonly,
            },
        );
        if let Some(entry) = self.entry_mut(granter, GrantRef::new(op.ref_)) {
            if readonly {
                entry.readers += 1;
            } else {
                entry.writers += 1;
            }
        }
        Ok(handle)
    }

    pub(super) fn unmap_grants(&mut self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        self.calls.grant_unmap += 1;
        self.calls.grant_unmap_ops += ops.len() as u64;
        for op in ops.iter_mut() {
            op.status = match self.unmap_one(op) {
                Ok(()) => GrantStatus::Okay.to_raw(),
                Err(status) => status.to_raw(),
            };
        }
        Ok(())
    }

    fn unmap_one(&mut self, op: &GnttabUnmapGrantRef) -> Result<(), GrantStatus> {
        let mapping = *self
            .maptrack
            .get(&op.handle)
            .ok_or(GrantStatus::BadHandle)?;
        if let Some(entry) = self.entry_mut(mapping.granter, mapping.grant_ref) {
            if entry.unmap_failures_left > 0 {
                entry.unmap_failures_left -= 1;
                return Err(GrantStatus::GeneralError);
            }
        }
        let host = MachineAddr::new(op.host_addr).ok_or(GrantStatus::GeneralError)?;
        if host != mapping.host_addr || self.grant_ptes.get(&host) != Some(&op.handle) {
            return Err(GrantStatus::GeneralError);
        }
        self.write_raw(host.frame(), (host.page_offset() / 8) as usize, 0);
        self.grant_ptes.remove(&host);
        self.maptrack.remove(&op.handle);
        if let Some(entry) = self.entry_mut(mapping.granter, mapping.grant_ref) {
            if mapping.readonly {
                entry.readers = entry.readers.saturating_sub(1);
            } else {
                entry.writers = entry.writers.saturating_sub(1);
            }
        }
        Ok(())
    }
}
