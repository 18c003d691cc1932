//! enter_gnt: mapping a peer's grant refs at chosen addresses through their PTE machine addresses, batched, every status checked.

use super::core::Walk;
use super::grant_list::{GrantPage, GrantRegion, RegionId};
use super::layout::PageRange;
use super::{GrantMapError, Pmap, UnmapCause};
use crate::abi::grant_table::{gntmap, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantStatus};
use crate::addr::{MachineAddr, Pfn, VirtAddr};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::{Hypervisor, XenError};
use crate::ids::{DomId, GrantHandle, GrantRef};
use alloc::vec;
use alloc::vec::Vec;

/// The most pages one grant region may hold: 16 MiB, well above any ring or request a Xen
/// protocol shares (a vchan ring of order 11 is 512 pages, a blkif indirect request 256
/// segments), and far below the default maptrack limit (262,144), so one peer cannot make a
/// single request exhaust our handles.
pub const MAX_REGION_PAGES: usize = 4096;

/// The most ops per grant hypercall. Xen takes a batch of any length (it preempts itself
/// with continuations), so this bounds our side only: 512 ops are exactly one L1 table's
/// entries and a 12 KiB op array, and a 512-page region still maps in one hypercall.
pub const MAX_GRANT_BATCH: usize = 512;

/// Retries of ops that returned `GNTST_eagain` (the peer's page is paged out or being
/// shared); the backoff hook waits between them. Then the status is reported.
pub const MAX_EAGAIN_RETRIES: u32 = 16;

/// A status value Xen never writes: marks ops the hypercall did not reach.
const STATUS_NOT_REACHED: i16 = 1;

/// One grant page to unmap: its PTE address, handle, and where it lives.
#[derive(Clone, Copy)]
pub(super) struct UnmapItem {
    pub host_addr: MachineAddr,
    pub handle: GrantHandle,
    pub grant_ref: GrantRef,
    pub table: Pfn,
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// Maps `refs` of `peer` at consecutive pages from `address`: the L1 tables are created
    /// first, then Xen writes each PTE itself (`GNTMAP_contains_pte`), all refs in one
    /// `GNTTABOP_map_grant_ref` (per [`MAX_GRANT_BATCH`] pages). Everything is checked before
    /// anything is mapped; on any failure the pages that did map are unmapped again.
    pub fn enter_gnt(
        &mut self,
        address: VirtAddr,
        peer: DomId,
        refs: &[GrantRef],
        readonly: bool,
    ) -> Result<RegionId, GrantMapError> {
        self.enter_gnt_batched(address, peer, refs, readonly, MAX_GRANT_BATCH)
    }

    /// [`Pmap::enter_gnt`] with at most `batch` ops per hypercall (1 reproduces the seed's one
    /// hypercall per page, for the benchmark).
    pub fn enter_gnt_batched(
        &mut self,
        address: VirtAddr,
        peer: DomId,
        refs: &[GrantRef],
        readonly: bool,
        batch: usize,
    ) -> Result<RegionId, GrantMapError> {
        let range = self.check_grant_request(address, refs)?;
        let addresses: Vec<VirtAddr> = (0..range.pages()).filter_map(|i| range.page(i)).collect();
        self.ensure_tables(&addresses)
            .map_err(GrantMapError::PageTables)?;
        let mut targets = Vec::with_capacity(addresses.len());
        for &page in &addresses {
            match self.walk(page) {
                Ok(Walk::Leaf { table, index, .. }) => match self.entry_address(table, index) {
                    Ok(host_addr) => targets.push((table, host_addr)),
                    Err(error) => return Err(self.abandon_tables(&addresses, error)),
                },
                Ok(Walk::Missing) => {
                    let error = super::PmapError::UnknownTable(page);
                    return Err(self.abandon_tables(&addresses, error));
                }
                Err(error) => return Err(self.abandon_tables(&addresses, error)),
            }
        }
        let mut flags = gntmap::HOST_MAP | gntmap::CONTAINS_PTE;
        if readonly {
            flags |= gntmap::READONLY;
        }
        let mut handles: Vec<Option<GrantHandle>> = vec![None; refs.len()];
        let batch = batch.clamp(1, MAX_GRANT_BATCH);
        let mut failure = None;
        let mut start = 0;
        while start < refs.len() && failure.is_none() {
            let end = refs.len().min(start + batch);
            let pending: Vec<usize> = (start..end).collect();
            failure = self
                .map_with_retries(pending, peer, refs, &targets, flags, &mut handles)
                .err();
            start = end;
        }
        if let Some(failure) = failure {
            let left_mapped = self.roll_back(address, peer, readonly, refs, &targets, &handles);
            return Err(match failure {
                MapFailure::Grant { grant_ref, status } => GrantMapError::Grant {
                    peer,
                    grant_ref,
                    status,
                    left_mapped,
                },
                MapFailure::Hypercall(error) => GrantMapError::Hypercall { error, left_mapped },
            });
        }
        let id = self.grants.next_id();
        let pages = refs
            .iter()
            .zip(&handles)
            .filter_map(|(grant_ref, handle)| {
                handle.map(|handle| GrantPage {
                    grant_ref: *grant_ref,
                    handle,
                })
            })
            .collect();
        self.grants.insert(GrantRegion {
            id,
            start: address,
            peer,
            readonly,
            pages,
        });
        Ok(id)
    }

    /// The refusals that come before anything is touched.
    fn check_grant_request(
        &self,
        address: VirtAddr,
        refs: &[GrantRef],
    ) -> Result<PageRange, GrantMapError> {
        if refs.is_empty() {
            return Err(GrantMapError::Empty);
        }
        if refs.len() > MAX_REGION_PAGES {
            return Err(GrantMapError::TooLarge {
                pages: refs.len(),
                limit: MAX_REGION_PAGES,
            });
        }
        let range = PageRange::new(address, refs.len() as u64).ok_or(GrantMapError::BadRange)?;
        if range.touches_xen_slots() {
            return Err(GrantMapError::XenSlots);
        }
        if let Some(region_start) = self.grants.overlapping(&range) {
            return Err(GrantMapError::OverlapsRegion { region_start });
        }
        let occupied = self
            .present_leaves(&range)
            .map_err(GrantMapError::PageTables)?;
        if let Some(leaf) = occupied.first() {
            return Err(GrantMapError::AlreadyMapped(leaf.address));
        }
        Ok(range)
    }

    /// Frees tables created for a request that then could not be mapped.
    fn abandon_tables(&mut self, addresses: &[VirtAddr], error: super::PmapError) -> GrantMapError {
        let tables: Vec<Pfn> = addresses
            .iter()
            .filter_map(|&page| match self.walk(page) {
                Ok(Walk::Leaf { table, .. }) => Some(table),
                _ => None,
            })
            .collect();
        let to_free = self.release_empty_tables(tables);
        let _ = self.flush_and_free(false, to_free);
        GrantMapError::PageTables(error)
    }

    /// Maps the ops at `pending` in one hypercall, retrying those that said `GNTST_eagain`.
    fn map_with_retries(
        &mut self,
        mut pending: Vec<usize>,
        peer: DomId,
        refs: &[GrantRef],
        targets: &[(Pfn, MachineAddr)],
        flags: u32,
        handles: &mut [Option<GrantHandle>],
    ) -> Result<(), MapFailure> {
        let mut attempt = 0;
        loop {
            let mut ops: Vec<GnttabMapGrantRef> = Vec::with_capacity(pending.len());
            for &index in &pending {
                let (Some(grant_ref), Some((_, host_addr))) = (refs.get(index), targets.get(index))
                else {
                    continue;
                };
                ops.push(GnttabMapGrantRef {
                    host_addr: host_addr.get(),
                    flags,
                    ref_: grant_ref.get(),
                    dom: peer.get(),
                    status: STATUS_NOT_REACHED,
                    handle: u32::MAX,
                    dev_bus_addr: 0,
                });
            }
            let result = self.hypervisor.grant_map(&mut ops);
            let mut again = Vec::new();
            let mut failure = None;
            for (op, &index) in ops.iter().zip(&pending) {
                if op.status == 0 {
                    if let Some(slot) = handles.get_mut(index) {
                        *slot = Some(GrantHandle::new(op.handle));
                    }
                    if let Some((table, _)) = targets.get(index) {
                        if let Some(info) = self.tables.get_mut(table) {
                            info.wire += 1;
                        }
                    }
                    self.counters.maps += 1;
                    continue;
                }
                if op.status == STATUS_NOT_REACHED {
                    if let Err(error) = result {
                        failure.get_or_insert(MapFailure::Hypercall(error));
                    }
                    continue;
                }
                let status = GrantStatus::from_raw(op.status);
                if status == GrantStatus::Eagain {
                    again.push(index);
                } else {
                    failure.get_or_insert(MapFailure::Grant {
                        grant_ref: GrantRef::new(op.ref_),
                        status,
                    });
                }
            }
            if let Err(error) = result {
                failure.get_or_insert(MapFailure::Hypercall(error));
            }
            if let Some(failure) = failure {
                return Err(failure);
            }
            let Some(&first_again) = again.first() else {
                return Ok(());
            };
            attempt += 1;
            if attempt > MAX_EAGAIN_RETRIES {
                return Err(MapFailure::Grant {
                    grant_ref: refs.get(first_again).copied().unwrap_or(GrantRef::new(0)),
                    status: GrantStatus::Eagain,
                });
            }
            self.counters.eagain_retries += 1;
            if let Some(backoff) = self.backoff.as_mut() {
                backoff(attempt);
            }
            pending = again;
        }
    }

    /// Unmaps what a failed request did map. Pages whose unmap fails stay mapped and go into
    /// the grant list (as regions of their own runs) so that `remove` can retry them.
    fn roll_back(
        &mut self,
        address: VirtAddr,
        peer: DomId,
        readonly: bool,
        refs: &[GrantRef],
        targets: &[(Pfn, MachineAddr)],
        handles: &[Option<GrantHandle>],
    ) -> usize {
        let mut items = Vec::new();
        let mut positions = Vec::new();
        for (index, handle) in handles.iter().enumerate() {
            if let (Some(handle), Some((table, host_addr)), Some(grant_ref)) =
                (handle, targets.get(index), refs.get(index))
            {
                items.push(UnmapItem {
                    host_addr: *host_addr,
                    handle: *handle,
                    grant_ref: *grant_ref,
                    table: *table,
                });
                positions.push(index);
            }
        }
        let results = self.unmap_grants(&items);
        let mut keep = vec![false; refs.len()];
        let mut left = 0;
        for ((result, &index), item) in results.iter().zip(&positions).zip(&items) {
            if let Err(cause) = result {
                log::error!(
                    "pmap: rollback of grant ref {} of domain {peer} failed: {cause:?}; kept mapped",
                    item.grant_ref
                );
                if let Some(slot) = keep.get_mut(index) {
                    *slot = true;
                }
                left += 1;
            }
        }
        if left > 0 {
            let id = self.grants.next_id();
            let region = GrantRegion {
                id,
                start: address,
                peer,
                readonly,
                pages: refs
                    .iter()
                    .zip(handles)
                    .map(|(grant_ref, handle)| GrantPage {
                        grant_ref: *grant_ref,
                        handle: handle.unwrap_or(GrantHandle::new(u32::MAX)),
                    })
                    .collect(),
            };
            for piece in region.keep_runs(&keep) {
                self.grants.insert(piece);
            }
        }
        let tables: Vec<Pfn> = targets.iter().map(|(table, _)| *table).collect();
        let to_free = self.release_empty_tables(tables);
        let _ = self.flush_and_free(false, to_free);
        left
    }

    /// `GNTTABOP_unmap_grant_ref` over `items` in batches of [`MAX_GRANT_BATCH`], every status
    /// checked; books each success (wire count, counter) and returns one result per item.
    pub(super) fn unmap_grants(&mut self, items: &[UnmapItem]) -> Vec<Result<(), UnmapCause>> {
        let mut results = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_GRANT_BATCH) {
            let mut ops: Vec<GnttabUnmapGrantRef> = chunk
                .iter()
                .map(|item| GnttabUnmapGrantRef {
                    host_addr: item.host_addr.get(),
                    dev_bus_addr: 0,
                    handle: item.handle.get(),
                    status: STATUS_NOT_REACHED,
                })
                .collect();
            let call: Result<(), XenError> = self.hypervisor.grant_unmap(&mut ops);
            for (op, item) in ops.iter().zip(chunk) {
                let result = if op.status == 0 {
                    if let Some(info) = self.tables.get_mut(&item.table) {
                        info.wire = info.wire.saturating_sub(1);
                    }
                    self.counters.unmaps += 1;
                    Ok(())
                } else if op.status == STATUS_NOT_REACHED {
                    Err(UnmapCause::GrantHypercall(
                        call.err().unwrap_or(XenError::EFAULT),
                    ))
                } else {
                    Err(UnmapCause::Grant {
                        grant_ref: item.grant_ref,
                        status: GrantStatus::from_raw(op.status),
                    })
                };
                if result.is_err() {
                    self.counters.unmap_failures += 1;
                }
                results.push(result);
            }
        }
        results
    }
}

/// The first failure of a map batch, before the rollback count is known.
enum MapFailure {
    Grant {
        grant_ref: GrantRef,
        status: GrantStatus,
    },
    Hypercall(XenError),
}
