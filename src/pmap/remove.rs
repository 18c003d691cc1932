//! remove: the one way to unmap. Grant pages through GNTTABOP_unmap_grant_ref, ordinary pages through mmu_update, each page once.

use super::error::check_range;
use super::grant_list::GrantRegion;
use super::grant_map::UnmapItem;
use super::layout::PageRange;
use super::scratch;
use super::{Pmap, RemoveError, RemoveSummary, UnmapCause, UnmapFailure};
use crate::abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE};
use crate::addr::{MachineAddr, Pfn, VirtAddr};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::DomId;
use alloc::vec;
use alloc::vec::Vec;

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// Unmaps everything in `range`. The range is walked once: each present page is either a
    /// page of a grant region (found in O(log n), unmapped by handle in one batched
    /// `GNTTABOP_unmap_grant_ref`) or an ordinary/foreign page (cleared in one `mmu_update`).
    /// Then empty page tables are unhooked, the TLB is flushed once, and their frames freed.
    /// A page whose unmap fails stays mapped and accounted, and is listed in the error.
    pub fn remove(&mut self, range: PageRange) -> Result<RemoveSummary, RemoveError> {
        check_range(&range).map_err(RemoveError::Refused)?;
        if let Some(outcome) = self.remove_one_region(&range) {
            return outcome;
        }
        self.remove_walking(range)
    }

    /// [`Pmap::remove`] of any range other than exactly one grant region: the range's present
    /// entries walked. Out of line (`inline(never)`), so that the code of the usual one-region
    /// call stays on few pages (under emulation each code page touched after Xen's TLB flush
    /// of a grant unmap costs a refill, README issue 10).
    #[inline(never)]
    fn remove_walking(&mut self, range: PageRange) -> Result<RemoveSummary, RemoveError> {
        let pages = call_pages(&range);
        let mut leaves = scratch::take(&mut self.scratch.buffers(pages).leaves);
        self.visit_present_leaves(&range, |leaf| {
            leaves.push(leaf);
            true
        })
        .map_err(RemoveError::Refused)?;
        let mut grant_items = scratch::take(&mut self.scratch.buffers(pages).unmap_items);
        // For each grant item: the start of its region and its page index there.
        let mut grant_places = scratch::take(&mut self.scratch.buffers(pages).unmap_places);
        let mut ordinary = Vec::new();
        // Consecutive leaves share their L1 table and mostly their region: each is looked up
        // once per run rather than once per page.
        let mut table_base: Option<(Pfn, MachineAddr)> = None;
        let mut region: Option<&GrantRegion> = None;
        for leaf in &leaves {
            let base = match table_base {
                Some((table, base)) if table == leaf.table => base,
                _ => {
                    let base = self.table_base(leaf.table).map_err(RemoveError::Refused)?;
                    table_base = Some((leaf.table, base));
                    base
                }
            };
            let host_addr = base
                .checked_add(leaf.index as u64 * 8)
                .ok_or(RemoveError::Refused(super::PmapError::BadRange))?;
            if region.is_none_or(|known| known.page_at(leaf.address).is_none()) {
                region = self.grants.find_out_of_line(leaf.address);
            }
            match region {
                Some(region) => {
                    let Some((index, page)) = region.page_at(leaf.address) else {
                        continue;
                    };
                    grant_items.push(UnmapItem {
                        host_addr,
                        handle: page.handle,
                        grant_ref: page.grant_ref,
                        table: leaf.table,
                    });
                    grant_places.push((region.start, index));
                }
                None => ordinary.push((
                    MmuUpdate::new(host_addr, 0, MMU_NORMAL_PT_UPDATE),
                    leaf.address,
                    leaf.table,
                )),
            }
        }
        let mut summary = RemoveSummary::default();
        let mut failures = Vec::new();

        // Grant pages: by handle, never by touching their PTEs.
        let mut results = scratch::take(&mut self.scratch.buffers(pages).unmap_results);
        let grant_table_emptied = self.unmap_grants(&grant_items, &mut results);
        // Items are in address order, so each region's items are consecutive.
        let mut first = 0;
        while first < results.len() {
            let Some(&(region_start, _)) = grant_places.get(first) else {
                break;
            };
            let mut end = first;
            let mut removed = 0;
            while let Some(&(start, index)) = grant_places.get(end) {
                if start != region_start {
                    break;
                }
                match results.get(end) {
                    Some(Ok(())) => removed += 1,
                    Some(Err(cause)) => insert_in_order(
                        &mut failures,
                        UnmapFailure {
                            address: region_start
                                .checked_add_pages(index as u64)
                                .unwrap_or(region_start),
                            cause: *cause,
                        },
                    ),
                    None => {}
                }
                end += 1;
            }
            summary.grant_pages += removed as u64;
            // One result per item, so both ranges exist.
            if let (true, Some(places), Some(outcomes)) = (
                removed > 0,
                grant_places.get(first..end),
                results.get(first..end),
            ) {
                self.forget_grant_pages(region_start, removed, places, outcomes);
            }
            first = end;
        }
        let buffers = self.scratch.buffers(pages);
        scratch::give_back(&mut buffers.unmap_results, results);
        scratch::give_back(&mut buffers.unmap_items, grant_items);
        scratch::give_back(&mut buffers.unmap_places, grant_places);

        // Ordinary pages: one batch; a refused entry is reported and the rest retried.
        let mut next = 0;
        while let Some(left) = ordinary.get(next..).filter(|left| !left.is_empty()) {
            let updates: Vec<MmuUpdate> = left.iter().map(|(update, _, _)| *update).collect();
            let (done, error) = match self.hypervisor.mmu_update(&updates, DomId::SELF) {
                Ok(()) => (updates.len(), None),
                Err(failure) => (failure.done.min(updates.len()), Some(failure.error)),
            };
            for (_, address, table) in left.iter().take(done) {
                if let Some(info) = self.tables.get_mut(table) {
                    info.wire = info.wire.saturating_sub(1);
                }
                self.foreign.remove(&address.as_u64());
                summary.ordinary_pages += 1;
            }
            next += done;
            if let (Some(error), Some((_, address, _))) = (error, ordinary.get(next)) {
                insert_in_order(
                    &mut failures,
                    UnmapFailure {
                        address: *address,
                        cause: UnmapCause::PteUpdate(error),
                    },
                );
                next += 1;
            }
        }

        let ordinary_cleared = summary.ordinary_pages > 0;
        summary.page_tables_freed = self.release_after_remove(
            &range,
            leaves.iter().map(|leaf| leaf.table),
            grant_table_emptied || ordinary_cleared,
            ordinary_cleared,
        );
        scratch::give_back(&mut self.scratch.buffers(pages).leaves, leaves);
        if failures.is_empty() {
            Ok(summary)
        } else {
            Err(RemoveError::Incomplete { summary, failures })
        }
    }

    /// [`Pmap::remove`] of a range that is exactly one grant region, the driver's usual call:
    /// every page of the range is a page of the region (a region's pages are all mapped and
    /// regions do not overlap), so its PTE addresses come from the region and the L1 table
    /// look-up alone, without reading the entries or looking for ordinary pages. `None` when
    /// the range is anything else (or a table of the region is missing), for the general path.
    fn remove_one_region(
        &mut self,
        range: &PageRange,
    ) -> Option<Result<RemoveSummary, RemoveError>> {
        let pages = call_pages(range);
        let mut items = scratch::take(&mut self.scratch.buffers(pages).unmap_items);
        if self.one_region_items(range, &mut items).is_none() {
            scratch::give_back(&mut self.scratch.buffers(pages).unmap_items, items);
            return None;
        }
        let mut results = scratch::take(&mut self.scratch.buffers(pages).unmap_results);
        let table_emptied = self.unmap_grants(&items, &mut results);
        let removed = results.iter().filter(|result| result.is_ok()).count();
        let mut summary = RemoveSummary {
            grant_pages: removed as u64,
            ..RemoveSummary::default()
        };
        let mut failures = Vec::new();
        if removed == results.len() {
            if let Some(region) = self.grants.take(range.start()) {
                self.scratch.recycle_pages(region.pages);
            }
        } else {
            let mut places = scratch::take(&mut self.scratch.buffers(pages).unmap_places);
            places.extend((0..results.len()).map(|index| (range.start(), index)));
            for (index, result) in results.iter().enumerate() {
                if let (Err(cause), Some(address)) = (result, range.page(index as u64)) {
                    failures.push(UnmapFailure {
                        address,
                        cause: *cause,
                    });
                }
            }
            if removed > 0 {
                self.forget_grant_pages(range.start(), removed, &places, &results);
            }
            scratch::give_back(&mut self.scratch.buffers(pages).unmap_places, places);
        }
        scratch::give_back(&mut self.scratch.buffers(pages).unmap_results, results);
        summary.page_tables_freed = self.release_after_remove(
            range,
            items.iter().map(|item| item.table),
            table_emptied,
            false,
        );
        scratch::give_back(&mut self.scratch.buffers(pages).unmap_items, items);
        Some(if failures.is_empty() {
            Ok(summary)
        } else {
            Err(RemoveError::Incomplete { summary, failures })
        })
    }

    /// The unmap items of the grant region that is exactly `range`, in page order; `None`
    /// when `range` is not one region or a table of it is missing.
    fn one_region_items(&self, range: &PageRange, items: &mut Vec<UnmapItem>) -> Option<()> {
        let region = self.grants.find(range.start())?;
        if region.start != range.start() || region.pages.len() as u64 != range.pages() {
            return None;
        }
        let mut table: Option<(Pfn, MachineAddr)> = None;
        for (offset, page) in region.pages.iter().enumerate() {
            let address = range.page(offset as u64)?;
            let index = address.table_index(1);
            // Pages are consecutive: a new L1 table begins at entry 0.
            if index == 0 || table.is_none() {
                table = Some(self.l1_table(address).ok()??);
            }
            let (table, base) = table?;
            items.push(UnmapItem {
                host_addr: base.checked_add(index as u64 * 8)?,
                handle: page.handle,
                grant_ref: page.grant_ref,
                table,
            });
        }
        Some(())
    }

    /// The end of a remove of `range`: when `release` (a grant unmap emptied a table it could
    /// not keep, or ordinary pages were cleared), the L1 `tables` the pages were in (in address
    /// order), once each, are released; then one TLB flush when `flush` (cleared ordinary
    /// entries; Xen flushes for grant unmaps itself) or tables were unhooked, and their frames
    /// are freed. Returns how many tables were freed. The grant unmaps keep the tables they
    /// empty while the bound allows, so a range of grant pages only usually releases nothing.
    fn release_after_remove(
        &mut self,
        range: &PageRange,
        tables: impl Iterator<Item = Pfn>,
        release: bool,
        flush: bool,
    ) -> u64 {
        let mut to_free = Vec::new();
        if release {
            let pages = call_pages(range);
            let mut touched = scratch::take(&mut self.scratch.buffers(pages).tables);
            touched.extend(tables);
            touched.dedup();
            to_free = self.release_empty_tables(touched.iter().copied());
            scratch::give_back(&mut self.scratch.buffers(pages).tables, touched);
        }
        let freed = to_free.len() as u64;
        match self.flush_and_free(flush, to_free) {
            Ok(()) => freed,
            Err(error) => {
                log::error!(
                    "pmap: remove of {} page(s) at {}: {error}",
                    range.pages(),
                    range.start()
                );
                0
            }
        }
    }

    /// Drops the `removed` unmapped pages of the region at `region_start` from the grant list:
    /// the whole region when all went (its page vector kept for the next region), else the
    /// region split into the runs that stay.
    fn forget_grant_pages(
        &mut self,
        region_start: VirtAddr,
        removed: usize,
        places: &[(VirtAddr, usize)],
        results: &[Result<(), UnmapCause>],
    ) {
        let Some(region) = self.grants.take_out_of_line(region_start) else {
            return;
        };
        if removed == region.pages.len() {
            self.scratch.recycle_pages(region.pages);
            return;
        }
        let mut keep = vec![true; region.pages.len()];
        for ((_, index), result) in places.iter().zip(results) {
            if result.is_ok() {
                if let Some(slot) = keep.get_mut(*index) {
                    *slot = false;
                }
            }
        }
        for piece in region.keep_runs(&keep) {
            self.grants.insert_out_of_line(piece);
        }
    }
}

/// The pages of `range` as a buffer size (a range's pages bound every buffer of its remove).
fn call_pages(range: &PageRange) -> usize {
    usize::try_from(range.pages()).unwrap_or(usize::MAX)
}

/// Puts `failure` in address order among `failures`, after any at the same address. Each way's
/// failures (grant, ordinary) are found in address order, so most go at the end; failures are
/// Xen refusing an unmap, an error path; the library's stable sort was 3.6 KB of code for this
/// one type (issue 10).
fn insert_in_order(failures: &mut Vec<UnmapFailure>, failure: UnmapFailure) {
    let at = failures.partition_point(|earlier| earlier.address <= failure.address);
    failures.insert(at, failure);
}
