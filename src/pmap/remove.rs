//! remove: the one way to unmap. Grant pages through GNTTABOP_unmap_grant_ref, ordinary pages through mmu_update, each page once.

use super::error::check_range;
use super::grant_map::UnmapItem;
use super::layout::PageRange;
use super::{Pmap, RemoveError, RemoveSummary, UnmapCause, UnmapFailure};
use crate::abi::mmu::{MmuUpdate, MMU_NORMAL_PT_UPDATE};
use crate::addr::{Pfn, VirtAddr};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::DomId;
use alloc::collections::{BTreeMap, BTreeSet};
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
        let leaves = self.present_leaves(&range).map_err(RemoveError::Refused)?;
        let mut grant_items = Vec::new();
        // For each grant item: (region start, page index in region, address).
        let mut grant_places: Vec<(VirtAddr, usize, VirtAddr)> = Vec::new();
        let mut ordinary = Vec::new();
        for leaf in &leaves {
            let host_addr = self
                .entry_address(leaf.table, leaf.index)
                .map_err(RemoveError::Refused)?;
            match self.grants.find(leaf.address) {
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
                    grant_places.push((region.start, index, leaf.address));
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
        let results = self.unmap_grants(&grant_items);
        let mut removed_by_region: BTreeMap<VirtAddr, Vec<usize>> = BTreeMap::new();
        for (result, (region_start, index, address)) in results.into_iter().zip(grant_places) {
            match result {
                Ok(()) => {
                    summary.grant_pages += 1;
                    removed_by_region
                        .entry(region_start)
                        .or_default()
                        .push(index);
                }
                Err(cause) => failures.push(UnmapFailure { address, cause }),
            }
        }
        for (start, removed) in removed_by_region {
            let Some(region) = self.grants.take(start) else {
                continue;
            };
            let mut keep = vec![true; region.pages.len()];
            for index in removed {
                if let Some(slot) = keep.get_mut(index) {
                    *slot = false;
                }
            }
            for piece in region.keep_runs(&keep) {
                self.grants.insert(piece);
            }
        }

        // Ordinary pages: one batch; a refused entry is reported and the rest retried.
        let mut next = 0;
        while next < ordinary.len() {
            let updates: Vec<MmuUpdate> = ordinary[next..]
                .iter()
                .map(|(update, _, _)| *update)
                .collect();
            let (done, error) = match self.hypervisor.mmu_update(&updates, DomId::SELF) {
                Ok(()) => (updates.len(), None),
                Err(failure) => (failure.done.min(updates.len()), Some(failure.error)),
            };
            for (_, address, table) in &ordinary[next..next + done] {
                if let Some(info) = self.tables.get_mut(table) {
                    info.wire = info.wire.saturating_sub(1);
                }
                self.foreign.remove(&address.as_u64());
                summary.ordinary_pages += 1;
            }
            next += done;
            if let (Some(error), Some((_, address, _))) = (error, ordinary.get(next)) {
                failures.push(UnmapFailure {
                    address: *address,
                    cause: UnmapCause::PteUpdate(error),
                });
                next += 1;
            }
        }

        let touched: BTreeSet<Pfn> = Self::tables_of(&leaves);
        let to_free = self.release_empty_tables(touched);
        summary.page_tables_freed = to_free.len() as u64;
        // Xen flushes for grant unmaps itself; cleared ordinary entries and unhooked tables
        // need this one flush.
        if let Err(error) = self.flush_and_free(summary.ordinary_pages > 0, to_free) {
            summary.page_tables_freed = 0;
            log::error!("pmap: remove of {:?}: {error}", range);
        }
        if failures.is_empty() {
            Ok(summary)
        } else {
            failures.sort_by_key(|failure| failure.address);
            Err(RemoveError::Incomplete { summary, failures })
        }
    }
}
