//! The grant map+unmap benchmark the kernel runs in the lab: cost per page, batched versus one hypercall per page.
//!
//! Compiled only with the `lab` feature (and in host tests): the production image carries no
//! benchmark.

use super::{GrantMapError, Pmap, RemoveError};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::{DomId, GrantRef};
use alloc::vec::Vec;

/// The batch sizes issue 3 asks about.
pub const BENCH_BATCHES: [usize; 4] = [1, 8, 64, 512];

/// One row: clock ticks per page for a map + unmap cycle of `pages` pages (the median round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BenchRow {
    pub pages: usize,
    /// One `enter_gnt` and one `remove` for all the pages.
    pub batched_ticks_per_page: u64,
    /// Each page mapped and unmapped with its own hypercalls, as the seed does.
    pub per_page_ticks_per_page: u64,
}

impl BenchRow {
    /// How many times cheaper per page the batched path is, in hundredths (250 = 2.5x).
    pub fn speedup_hundredths(&self) -> u64 {
        (self.per_page_ticks_per_page * 100)
            .checked_div(self.batched_ticks_per_page)
            .unwrap_or(0)
    }
}

/// A failure during the benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchError {
    NoAddressSpace,
    Map(GrantMapError),
    Remove(RemoveError),
}

/// Maps and unmaps the first `pages` of `refs` (granted by `peer`) `rounds` times for each
/// batch size in [`BENCH_BATCHES`] that `refs` can fill, once batched and once a page per
/// hypercall (alternating, round by round), timing each round with `clock` (any monotonic tick source: the kernel passes the TSC or
/// Xen system time). Prints nothing and asserts nothing about speed: the caller prints.
pub fn grant_map_benchmark<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    peer: DomId,
    refs: &[GrantRef],
    rounds: u32,
    clock: &mut dyn FnMut() -> u64,
) -> Result<Vec<BenchRow>, BenchError> {
    let mut rows = Vec::new();
    let rounds = rounds.max(1);
    for pages in BENCH_BATCHES {
        let Some(refs) = refs.get(..pages) else {
            break;
        };
        let range = pmap
            .allocate_va(pages as u64)
            .ok_or(BenchError::NoAddressSpace)?;
        // One map + unmap cycle of all the pages, batched or a page per hypercall.
        let cycle = |pmap: &mut Pmap<H, A>, batch: usize| -> Result<(), BenchError> {
            if batch == 1 {
                for (index, grant_ref) in refs.iter().enumerate() {
                    let page = range.page(index as u64).ok_or(BenchError::NoAddressSpace)?;
                    pmap.enter_gnt_batched(page, peer, &[*grant_ref], false, 1)
                        .map_err(BenchError::Map)?;
                }
                for index in 0..pages as u64 {
                    let page = range.page(index).ok_or(BenchError::NoAddressSpace)?;
                    let one = super::PageRange::new(page, 1).ok_or(BenchError::NoAddressSpace)?;
                    pmap.remove(one).map_err(BenchError::Remove)?;
                }
            } else {
                pmap.enter_gnt(range.start(), peer, refs, false)
                    .map_err(BenchError::Map)?;
                pmap.remove(range).map_err(BenchError::Remove)?;
            }
            Ok(())
        };
        // The two ways alternate round by round and each figure is the median round, so that
        // a burst of load on the host (under emulation, other guests and builds share the
        // cores) lands on both alike and cannot skew one mean.
        let mut batched_rounds = Vec::with_capacity(rounds as usize);
        let mut per_page_rounds = Vec::with_capacity(rounds as usize);
        for _ in 0..rounds {
            let started = clock();
            cycle(pmap, super::MAX_GRANT_BATCH)?;
            let between = clock();
            cycle(pmap, 1)?;
            let ended = clock();
            batched_rounds.push(between.saturating_sub(started));
            per_page_rounds.push(ended.saturating_sub(between));
        }
        let batched = median(&mut batched_rounds) / pages as u64;
        let per_page = median(&mut per_page_rounds) / pages as u64;
        let _ = pmap.free_va(range);
        rows.push(BenchRow {
            pages,
            batched_ticks_per_page: batched,
            per_page_ticks_per_page: per_page,
        });
    }
    Ok(rows)
}

/// The median of `samples` (the upper one of the middle two for an even count; 0 when empty).
fn median(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or(0)
}
