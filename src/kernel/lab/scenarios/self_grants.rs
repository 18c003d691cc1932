//! Scenario support: pages of our own granted to ourselves, their byte patterns, and the checks that nothing stays mapped.

use super::Outcome;
use crate::kernel::address_space::KernelPmap;
use crate::kernel::booted::Kernel;
use crate::kernel::lab::own_grants::{self, OwnGrantTable, RefError};
use crate::kernel::xen::grant_entries::EntryError;
use crate::kernel::xen::own_pages::OwnPages;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::abi::grant_table::gtf;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::pmap::{PageRange, PmapStats};

/// The kernel's pmap lock, as scenarios use it.
pub type PmapLock = &'static spin::Mutex<KernelPmap>;

/// The pmap and our grant table, or why a scenario cannot run.
pub fn pmap_and_table(
    kernel: &Kernel,
) -> Result<(PmapLock, &'static spin::Mutex<OwnGrantTable>), String> {
    let pmap = kernel.pmap;
    let table = own_grants::table(pmap).map_err(|error| format!("our grant table: {error}"))?;
    Ok((pmap, table))
}

/// A scenario's outcome from its body's result.
pub fn outcome(name: &str, result: Result<String, String>) -> Outcome {
    match result {
        Ok(detail) => {
            log::info!("{name}: {detail}");
            Outcome::Pass
        }
        Err(reason) => Outcome::Fail(reason),
    }
}

/// The byte at `offset` of page `page` of the pattern `seed`.
pub fn pattern_byte(seed: u8, page: usize, offset: usize) -> u8 {
    seed ^ (page as u8).wrapping_mul(31) ^ (offset as u8).wrapping_mul(7) ^ (offset >> 8) as u8
}

/// One page of the pattern `seed`.
pub fn pattern_page(seed: u8, page: usize) -> Vec<u8> {
    (0..PAGE_SIZE)
        .map(|offset| pattern_byte(seed, page, offset))
        .collect()
}

/// Entries in one L1 table: the pages one fresh L1 translates.
const PAGES_PER_TABLE: u64 = 512;

/// Reserves the chosen-VA space up to the next 2 MiB boundary, so that the ranges the pmap
/// hands out next start in a fresh L1 table, which the scenario's own mappings then create
/// and their removal frees. Give the spacer back with [`release_spacer`].
pub fn start_fresh_table(pmap: PmapLock) -> Result<Option<PageRange>, String> {
    let mut locked = pmap.lock();
    let probe = locked.allocate_va(1).ok_or("no address space")?;
    let index = probe.start().table_index(1) as u64;
    locked
        .free_va(probe)
        .map_err(|error| format!("freeing a probe range: {error:?}"))?;
    if index == 0 {
        return Ok(None);
    }
    locked
        .allocate_va(PAGES_PER_TABLE - index)
        .map(Some)
        .ok_or_else(|| String::from("no address space for a spacer"))
}

/// Gives a spacer from [`start_fresh_table`] back.
pub fn release_spacer(pmap: PmapLock, spacer: Option<PageRange>) -> Result<(), String> {
    match spacer {
        Some(range) => pmap
            .lock()
            .free_va(range)
            .map_err(|error| format!("freeing the spacer: {error:?}")),
        None => Ok(()),
    }
}

/// Counters that must come back after a scenario: the pmap's and the free frames.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    pub stats: PmapStats,
    pub free_frames: u64,
}

impl Baseline {
    /// The counters now.
    pub fn take(pmap: PmapLock) -> Baseline {
        // One lock: a guard made in a struct expression lives to the end of the statement.
        let locked = pmap.lock();
        Baseline {
            stats: locked.stats(),
            free_frames: locked.frames().free_frames(),
        }
    }

    /// Fails unless no grant page or region is live, no unmap failed, and page-table pages
    /// and free frames are as they were.
    pub fn check_restored(&self, pmap: PmapLock) -> Result<String, String> {
        // Empty page tables the pmap keeps for reuse go back first, so that the books compare.
        pmap.lock().reclaim_empty_tables();
        let now = Baseline::take(pmap);
        let (before, after) = (self.stats, now.stats);
        if after.live_grant_pages != 0 || after.live_regions != 0 {
            return Err(format!(
                "{} grant page(s) in {} region(s) still mapped",
                after.live_grant_pages, after.live_regions
            ));
        }
        if after.unmap_failures != before.unmap_failures {
            return Err(format!(
                "{} grant unmap(s) failed",
                after.unmap_failures - before.unmap_failures
            ));
        }
        if after.page_table_pages != before.page_table_pages {
            return Err(format!(
                "{} page-table pages before, {} after",
                before.page_table_pages, after.page_table_pages
            ));
        }
        if now.free_frames != self.free_frames {
            return Err(format!(
                "{} free frames before, {} after",
                self.free_frames, now.free_frames
            ));
        }
        Ok(format!(
            "no grant page live, {} page-table pages as before, {} free frames as before, {} maps and {} unmaps",
            after.page_table_pages,
            now.free_frames,
            after.maps - before.maps,
            after.unmaps - before.unmaps
        ))
    }
}

/// Pages of ours, each granted to ourselves through its own ref.
pub struct SelfGrants {
    pub pages: OwnPages,
    pub refs: Vec<GrantRef>,
    pub domain: DomId,
    table: &'static spin::Mutex<OwnGrantTable>,
}

impl SelfGrants {
    /// `count` fresh pages granted read-write (or read-only) to our own domain.
    pub fn new(
        kernel: &Kernel,
        table: &'static spin::Mutex<OwnGrantTable>,
        count: usize,
        readonly: bool,
    ) -> Result<SelfGrants, String> {
        let pages = OwnPages::allocate(kernel.pmap, count)
            .ok_or_else(|| format!("could not allocate {count} pages of our own"))?;
        let mut grants = SelfGrants {
            pages,
            refs: Vec::with_capacity(count),
            domain: table.lock().domain(),
            table,
        };
        let mut table = grants.table.lock();
        for index in 0..count {
            let grant_ref = table
                .allocate_ref()
                .ok_or_else(|| format!("our grant table has no free ref for page {index}"))?;
            grants.refs.push(grant_ref);
            table
                .grant(grant_ref, grants.domain, &grants.pages, index, readonly)
                .map_err(|error| format!("granting page {index}: {error}"))?;
        }
        drop(table);
        Ok(grants)
    }

    /// Writes the pattern `seed` into every page through the direct map.
    pub fn fill(&self, seed: u8) -> Result<(), String> {
        for page in 0..self.pages.len() {
            self.pages
                .write(page, 0, &pattern_page(seed, page))
                .map_err(|error| format!("writing page {page}: {error}"))?;
        }
        Ok(())
    }

    /// Fails unless every page holds the pattern `seed` (read through the direct map).
    pub fn expect(&self, seed: u8) -> Result<(), String> {
        let mut buffer = alloc::vec![0u8; PAGE_SIZE];
        for page in 0..self.pages.len() {
            self.pages
                .read(page, 0, &mut buffer)
                .map_err(|error| format!("reading page {page}: {error}"))?;
            if let Some(offset) = first_difference(&buffer, seed, page) {
                return Err(format!(
                    "page {page} (pfn {:?}) byte {offset} reads {:#04x}, pattern {seed:#04x} has {:#04x}",
                    self.pages.pfn(page),
                    buffer.get(offset).copied().unwrap_or(0),
                    pattern_byte(seed, page, offset)
                ));
            }
        }
        Ok(())
    }

    /// The flags (`GTF_*`) of the ref of page `index`.
    pub fn flags(&self, index: usize) -> Result<u16, String> {
        let grant_ref = *self.refs.get(index).ok_or("no such page")?;
        self.table
            .lock()
            .flags(grant_ref)
            .map_err(|error| format!("{error}"))
    }

    /// Fails if any ref is still pinned by a mapping (`GTF_reading` / `GTF_writing`).
    pub fn expect_none_in_use(&self) -> Result<(), String> {
        for index in 0..self.refs.len() {
            let flags = self.flags(index)?;
            if flags & (gtf::READING | gtf::WRITING) != 0 {
                return Err(format!(
                    "grant ref {} still in use by a mapping (flags {flags:#06x})",
                    self.refs.get(index).map_or(0, |grant_ref| grant_ref.get())
                ));
            }
        }
        Ok(())
    }

    /// Ends access through page `index`'s ref (the scenario may then grant it anew).
    pub fn end_access(&self, index: usize) -> Result<(), String> {
        let grant_ref = *self.refs.get(index).ok_or("no such page")?;
        self.table
            .lock()
            .end_access(grant_ref, &self.pages, index)
            .map_err(|error| format!("ending ref {grant_ref}: {error}"))
    }

    /// Grants page `index` to our own domain anew through its ref, read-only or not.
    pub fn grant_again(&self, index: usize, readonly: bool) -> Result<(), String> {
        let grant_ref = *self.refs.get(index).ok_or("no such page")?;
        self.table
            .lock()
            .grant(grant_ref, self.domain, &self.pages, index, readonly)
            .map_err(|error| format!("granting ref {grant_ref}: {error}"))
    }

    /// Ends access through every ref still granted and gives the refs and pages back. A ref
    /// that cannot be ended is still mapped somewhere: its page is then kept out of the
    /// allocator (the pages count their grants) rather than reused.
    pub fn finish(self) -> Result<(), String> {
        let mut table = self.table.lock();
        let mut busy = Vec::new();
        for (index, &grant_ref) in self.refs.iter().enumerate() {
            match table.end_access(grant_ref, &self.pages, index) {
                // Ended here, or by the scenario before (a revoked ref grants nothing).
                Ok(()) | Err(RefError::Entry(EntryError::NotGranted { .. })) => {
                    if let Err(error) = table.free_ref(grant_ref) {
                        busy.push(format!("{error}"));
                    }
                }
                Err(error) => busy.push(format!("{error}")),
            }
        }
        drop(table);
        drop(self.pages);
        if busy.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "ending access failed for {} ref(s): {}",
                busy.len(),
                busy.join("; ")
            ))
        }
    }
}

/// The first offset where `page_bytes` differs from page `page` of the pattern `seed`.
pub fn first_difference(page_bytes: &[u8], seed: u8, page: usize) -> Option<usize> {
    page_bytes
        .iter()
        .enumerate()
        .position(|(offset, &byte)| byte != pattern_byte(seed, page, offset))
}

/// A small deterministic pseudo-random sequence (xorshift64), for sizes and offsets.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next_value(&mut self) -> u64 {
        let mut value = self.0;
        value ^= value << 13;
        value ^= value >> 7;
        value ^= value << 17;
        self.0 = value;
        value
    }

    /// A value in `low..=high`.
    pub fn in_range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_value() % (high - low + 1)
    }
}
