//! The pmap's counters, as the kernel publishes them (maps, unmaps, live grant pages and regions, page-table pages).

use super::Pmap;
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;

/// A snapshot of the pmap's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmapStats {
    /// Grant pages mapped since boot.
    pub maps: u64,
    /// Grant pages unmapped since boot.
    pub unmaps: u64,
    /// Grant unmaps Xen refused (those pages stayed mapped).
    pub unmap_failures: u64,
    /// `GNTST_eagain` retries.
    pub eagain_retries: u64,
    /// Grant pages mapped now.
    pub live_grant_pages: u64,
    /// Grant regions mapped now.
    pub live_regions: u64,
    /// Page-table pages in the tree now (Xen's and ours).
    pub page_table_pages: u64,
    /// Of those, empty ones kept hooked for the next mappings (at most 64).
    pub empty_tables_kept: u64,
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// The counters now, each kept as operations go (O(1): the service reads them every turn).
    pub fn stats(&self) -> PmapStats {
        PmapStats {
            maps: self.counters.maps,
            unmaps: self.counters.unmaps,
            unmap_failures: self.counters.unmap_failures,
            eagain_retries: self.counters.eagain_retries,
            live_grant_pages: self.grants.page_count() as u64,
            live_regions: self.grants.region_count() as u64,
            page_table_pages: self.tables.len() as u64,
            empty_tables_kept: self.kept_empty_tables as u64,
        }
    }
}
