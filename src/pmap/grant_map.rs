//! enter_gnt: mapping a peer's grant refs at chosen addresses through their PTE machine addresses, batched, every status checked.

use super::core::Walk;
use super::grant_list::{GrantPage, GrantRegion, RegionId, RegionPages};
use super::layout::{bytes_per_entry, PageRange, ENTRIES_PER_TABLE};
use super::scratch;
use super::{GrantMapError, Pmap, UnmapCause};
use crate::abi::grant_table::{gntmap, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantStatus};
use crate::abi::mmu::pte;
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
#[derive(Clone, Copy, Debug)]
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
        let range = check_grant_request(address, refs)?;
        let size = refs.len();
        let mut targets = scratch::take(&mut self.scratch.buffers(size).targets);
        if self.free_entries(&range, &mut targets)? == Entries::TablesMissing {
            self.make_tables(&range, &mut targets)?;
        }
        let mut flags = gntmap::HOST_MAP | gntmap::CONTAINS_PTE;
        if readonly {
            flags |= gntmap::READONLY;
        }
        let mut handles = scratch::take(&mut self.scratch.buffers(size).handles);
        handles.resize(refs.len(), None);
        let mut pending = scratch::take(&mut self.scratch.buffers(size).pending);
        let batch = batch.clamp(1, MAX_GRANT_BATCH);
        let mut failure = None;
        let mut start = 0;
        while start < refs.len() && failure.is_none() {
            let end = refs.len().min(start + batch);
            pending.clear();
            pending.extend(start..end);
            failure = self
                .map_with_retries(&mut pending, peer, refs, &targets, flags, &mut handles)
                .err();
            start = end;
        }
        scratch::give_back(&mut self.scratch.buffers(size).pending, pending);
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
        let page_of = |(grant_ref, handle): (&GrantRef, &Option<GrantHandle>)| {
            handle.map(|handle| GrantPage {
                grant_ref: *grant_ref,
                handle,
            })
        };
        // Every handle is there (no failure): a one-page region needs no vector.
        let one = match (refs, handles.as_slice()) {
            ([grant_ref], [handle]) => page_of((grant_ref, handle)),
            _ => None,
        };
        let pages = match one {
            Some(page) => RegionPages::One(page),
            None => {
                let mut pages = self.scratch.page_vector(refs.len());
                pages.extend(refs.iter().zip(&handles).filter_map(page_of));
                RegionPages::Many(pages)
            }
        };
        scratch::give_back(&mut self.scratch.buffers(size).targets, targets);
        scratch::give_back(&mut self.scratch.buffers(size).handles, handles);
        self.grants.insert(GrantRegion {
            id,
            start: address,
            peer,
            readonly,
            pages,
        });
        Ok(id)
    }

    /// For each page of `range`: its L1 table and the machine address of its entry, with one
    /// walk per L1 table (the entries of one table are consecutive). The benchmark's raw
    /// hypercalls aim at these entries.
    #[cfg(any(test, feature = "lab"))]
    pub(super) fn page_table_targets(
        &self,
        range: &PageRange,
        targets: &mut Vec<(Pfn, MachineAddr)>,
    ) -> Result<(), super::PmapError> {
        let mut done = 0;
        while done < range.pages() {
            let page = range.page(done).ok_or(super::PmapError::BadRange)?;
            let Walk::Leaf { table, index, .. } = self.walk(page)? else {
                return Err(super::PmapError::UnknownTable(page));
            };
            let first = self.entry_address(table, index)?;
            let in_table = (ENTRIES_PER_TABLE - index) as u64;
            let count = in_table.min(range.pages() - done);
            for offset in 0..count {
                let host_addr = first
                    .checked_add(offset * 8)
                    .ok_or(super::PmapError::BadRange)?;
                targets.push((table, host_addr));
            }
            done += count;
        }
        Ok(())
    }

    /// Checks that every page of `range` is unmapped and appends, for each, its L1 table and
    /// the machine address of its entry: one look-up of each L1 table the range touches (none
    /// when it is the one remembered from the last call), then a read of each entry unless the
    /// table has none live. Pages of spans whose L1 table is missing are free and get no
    /// target: the caller makes the tables and asks again. Refuses a range with a page mapped, naming the grant region it overlaps
    /// if it does (a region's pages are all mapped, so a region in the range always shows as
    /// a present entry), else the first mapped page.
    // Inlined: the steady map+unmap path calls it, and under emulation each call and return
    // is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
    #[inline(always)]
    fn free_entries(
        &self,
        range: &PageRange,
        targets: &mut Vec<(Pfn, MachineAddr)>,
    ) -> Result<Entries, GrantMapError> {
        let mut found = Entries::AllFree;
        let mut done = 0;
        while done < range.pages() {
            let page = range.page(done).ok_or(GrantMapError::BadRange)?;
            let index = page.table_index(1);
            let count = ((ENTRIES_PER_TABLE - index) as u64).min(range.pages() - done);
            done += count;
            let Some((table, base)) = self.l1_table(page).map_err(GrantMapError::PageTables)?
            else {
                found = Entries::TablesMissing;
                continue;
            };
            // A table with no live entry (its wire count, which the pmap keeps equal to the
            // table's present entries) has nothing to refuse, and its entries are not read:
            // each read goes to the table's page through the direct map, under emulation one
            // more distinct page per call after Xen's TLB flush (README, issue 10).
            let empty = self.tables.get(&table).is_some_and(|info| info.wire == 0);
            for offset in 0..count as usize {
                let entry = if empty {
                    0
                } else {
                    self.hypervisor.read_pte(table, index + offset)
                };
                let host_addr = base.checked_add((index + offset) as u64 * 8);
                let (true, Some(host_addr)) = (entry & pte::PRESENT == 0, host_addr) else {
                    return Err(self.occupied(range, page, offset));
                };
                targets.push((table, host_addr));
            }
        }
        Ok(found)
    }

    /// Makes the L1 tables `range` lacks and collects every page's target into the emptied
    /// `targets` again. Out of line, as are the other paths a steady map+unmap cycle does not
    /// take (`occupied`, `roll_back`): the usual call's code then sits on fewer pages, each of
    /// which costs a refill under emulation after Xen's TLB flush of a grant unmap (README,
    /// issue 10).
    #[inline(never)]
    fn make_tables(
        &mut self,
        range: &PageRange,
        targets: &mut Vec<(Pfn, MachineAddr)>,
    ) -> Result<(), GrantMapError> {
        let spans = l1_spans(range);
        self.ensure_tables(&spans)
            .map_err(GrantMapError::PageTables)?;
        targets.clear();
        match self.free_entries(range, targets) {
            Ok(Entries::AllFree) => Ok(()),
            Ok(Entries::TablesMissing) => {
                let error = super::PmapError::UnknownTable(range.start());
                Err(self.abandon_tables(&spans, error))
            }
            Err(GrantMapError::PageTables(error)) => Err(self.abandon_tables(&spans, error)),
            Err(error) => Err(error),
        }
    }

    /// The refusal of a request whose range has a present entry at `offset` pages from `page`.
    #[inline(never)]
    fn occupied(&self, range: &PageRange, page: VirtAddr, offset: usize) -> GrantMapError {
        if let Some(region_start) = self.grants.overlapping(range) {
            return GrantMapError::OverlapsRegion { region_start };
        }
        match page.checked_add_pages(offset as u64) {
            Some(address) => GrantMapError::AlreadyMapped(address),
            None => GrantMapError::BadRange,
        }
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
        pending: &mut Vec<usize>,
        peer: DomId,
        refs: &[GrantRef],
        targets: &[(Pfn, MachineAddr)],
        flags: u32,
        handles: &mut [Option<GrantHandle>],
    ) -> Result<(), MapFailure> {
        let size = pending.len();
        let mut ops = scratch::take(&mut self.scratch.buffers(size).map_ops);
        let mut again = scratch::take(&mut self.scratch.buffers(size).again);
        let result = self.map_pending(
            pending,
            &mut ops,
            &mut again,
            (peer, refs, targets, flags),
            handles,
        );
        scratch::give_back(&mut self.scratch.buffers(size).map_ops, ops);
        scratch::give_back(&mut self.scratch.buffers(size).again, again);
        result
    }

    fn map_pending(
        &mut self,
        pending: &mut Vec<usize>,
        ops: &mut Vec<GnttabMapGrantRef>,
        again: &mut Vec<usize>,
        (peer, refs, targets, flags): (DomId, &[GrantRef], &[(Pfn, MachineAddr)], u32),
        handles: &mut [Option<GrantHandle>],
    ) -> Result<(), MapFailure> {
        let mut attempt = 0;
        loop {
            ops.clear();
            for &index in pending.iter() {
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
            let result = self.hypervisor.grant_map(ops);
            again.clear();
            let mut failure = None;
            // Wire counts rise once per run of pages in the same table, not once per page.
            let mut run: Option<(Pfn, u32)> = None;
            for (op, &index) in ops.iter().zip(pending.iter()) {
                if op.status == 0 {
                    if let Some(slot) = handles.get_mut(index) {
                        *slot = Some(GrantHandle::new(op.handle));
                    }
                    if let Some(&(table, _)) = targets.get(index) {
                        match run.as_mut() {
                            Some((current, count)) if *current == table => *count += 1,
                            _ => {
                                if let Some((done, count)) = run.replace((table, 1)) {
                                    self.add_wires(done, count);
                                }
                            }
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
            if let Some((table, count)) = run {
                self.add_wires(table, count);
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
            core::mem::swap(pending, again);
        }
    }

    /// Unmaps what a failed request did map. Pages whose unmap fails stay mapped and go into
    /// the grant list (as regions of their own runs) so that `remove` can retry them.
    #[inline(never)]
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
        let mut results = Vec::new();
        self.unmap_grants(&items, &mut results);
        let mut keep = vec![false; refs.len()];
        let mut left = 0;
        for ((result, &index), item) in results.iter().zip(&positions).zip(&items) {
            if let Err(cause) = result {
                log::error!(
                    "pmap: rollback of grant ref {} of domain {peer} failed: {cause}; kept mapped",
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
                    .collect::<Vec<_>>()
                    .into(),
            };
            for piece in region.keep_runs(&keep) {
                self.grants.insert_out_of_line(piece);
            }
        }
        let tables: Vec<Pfn> = targets.iter().map(|(table, _)| *table).collect();
        let to_free = self.release_empty_tables(tables);
        let _ = self.flush_and_free(false, to_free);
        left
    }

    /// `GNTTABOP_unmap_grant_ref` over `items` in batches of [`MAX_GRANT_BATCH`], every status
    /// checked; books each success (wire count, counter) and appends one result per item to
    /// `results`. Xen flushes the TLBs of our vcpus itself after the unmaps of each batch
    /// (`common/grant_table.c`, `gnttab_flush_tlb` on the domain's dirty cpu mask), so no
    /// flush of ours follows. True when a table emptied and was not kept (see
    /// [`Pmap::drop_wire`]): `release_empty_tables` has work to do.
    pub(super) fn unmap_grants(
        &mut self,
        items: &[UnmapItem],
        results: &mut Vec<Result<(), UnmapCause>>,
    ) -> bool {
        let mut emptied = false;
        let size = items.len().min(MAX_GRANT_BATCH);
        let mut ops = scratch::take(&mut self.scratch.buffers(size).unmap_ops);
        for chunk in items.chunks(MAX_GRANT_BATCH) {
            ops.clear();
            ops.extend(chunk.iter().map(|item| GnttabUnmapGrantRef {
                host_addr: item.host_addr.get(),
                dev_bus_addr: 0,
                handle: item.handle.get(),
                status: STATUS_NOT_REACHED,
            }));
            let call: Result<(), XenError> = self.hypervisor.grant_unmap(&mut ops);
            // Wire counts drop once per run of pages in the same table, not once per page.
            let mut run: Option<(Pfn, u32)> = None;
            for (op, item) in ops.iter().zip(chunk) {
                let result = if op.status == 0 {
                    match run.as_mut() {
                        Some((table, count)) if *table == item.table => *count += 1,
                        _ => {
                            if let Some((table, count)) = run.replace((item.table, 1)) {
                                emptied |= self.drop_wire(table, count);
                            }
                        }
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
            if let Some((table, count)) = run {
                emptied |= self.drop_wire(table, count);
            }
        }
        scratch::give_back(&mut self.scratch.buffers(size).unmap_ops, ops);
        emptied
    }
}

/// One address in each L1 table's span that `range` touches (a region of at most
/// [`MAX_REGION_PAGES`] pages touches at most 9), for `ensure_tables`.
fn l1_spans(
    range: &PageRange,
) -> heapless::Vec<VirtAddr, { MAX_REGION_PAGES / ENTRIES_PER_TABLE + 1 }> {
    let span = bytes_per_entry(2);
    let mut spans = heapless::Vec::new();
    let mut cursor = range.start().as_u64();
    while cursor < range.end_raw() {
        let Some(address) = VirtAddr::try_new(cursor) else {
            break;
        };
        if spans.push(address).is_err() {
            break;
        }
        cursor = (cursor / span + 1) * span;
    }
    spans
}

/// The refusals that come before anything is touched.
fn check_grant_request(address: VirtAddr, refs: &[GrantRef]) -> Result<PageRange, GrantMapError> {
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
    if !range.inside_chosen_region() {
        return Err(GrantMapError::OutsideChosenRegion);
    }
    Ok(range)
}

/// What [`Pmap::free_entries`] found of a range's page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entries {
    /// Every L1 table is there: each page has its target.
    AllFree,
    /// Some L1 tables are missing; their pages have no target yet.
    TablesMissing,
}

/// The first failure of a map batch, before the rollback count is known.
enum MapFailure {
    Grant {
        grant_ref: GrantRef,
        status: GrantStatus,
    },
    Hypercall(XenError),
}
