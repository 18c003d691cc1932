//! `grant-bench`: cost per page of grant map + unmap, batched versus one hypercall per page, timed with the TSC scaled by Xen's factor and printed as a table.
//!
//! It asserts nothing about speed: it passes when the benchmark ran to the end without an
//! error and left nothing mapped.

use super::self_grants::{outcome, pmap_and_table, Baseline, SelfGrants};
use super::Outcome;
use crate::kernel::booted::Kernel;
use crate::kernel::xen::time;
use alloc::format;
use alloc::string::String;
use grantsvc::pmap::{grant_map_benchmark, BENCH_BATCHES};

/// Map + unmap rounds per row and path.
const ROUNDS: u32 = 64;

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("grant-bench", body(kernel))
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let (pmap, table) = pmap_and_table(kernel)?;
    let before = Baseline::take(pmap);
    let largest = BENCH_BATCHES.iter().copied().max().unwrap_or(1);
    let grants = SelfGrants::new(kernel, table, largest, false)?;
    grants.fill(0x11)?;
    let mut clock = || time::interval_clock_ns().unwrap_or(0);
    // One untimed round first: under QEMU's TCG the first run of each code path pays for its
    // translation, which would otherwise land in the first row.
    grant_map_benchmark(&mut pmap.lock(), grants.domain, &grants.refs, 1, &mut clock)
        .map_err(|error| format!("warm-up: {error:?}"))?;
    let started = clock();
    let rows = grant_map_benchmark(
        &mut pmap.lock(),
        grants.domain,
        &grants.refs,
        ROUNDS,
        &mut clock,
    )
    .map_err(|error| format!("benchmark: {error:?}"))?;
    let elapsed_ms = (clock() - started) / 1_000_000;
    if rows.len() != BENCH_BATCHES.len() {
        return Err(format!(
            "{} rows for {} batch sizes",
            rows.len(),
            BENCH_BATCHES.len()
        ));
    }
    log::info!(
        "grant-bench: grant map + unmap of self-granted pages, ns per page (TSC scaled by Xen's factor), {ROUNDS} rounds each, {elapsed_ms} ms in all"
    );
    log::info!("grant-bench: | pages | batched ns/page | one hypercall per page ns/page | per-page / batched |");
    log::info!("grant-bench: |------:|----------------:|-------------------------------:|-------------------:|");
    for row in &rows {
        let ratio = row.speedup_hundredths();
        log::info!(
            "grant-bench: | {:>5} | {:>15} | {:>30} | {:>14}.{:02}x |",
            row.pages,
            row.batched_ticks_per_page,
            row.per_page_ticks_per_page,
            ratio / 100,
            ratio % 100
        );
    }
    grants.expect_none_in_use()?;
    grants.expect(0x11)?;
    grants.finish()?;
    let restored = before.check_restored(pmap)?;
    Ok(format!("benchmark complete; {restored}"))
}
