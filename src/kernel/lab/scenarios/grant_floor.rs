//! `grant-floor`: issue 10's map+unmap benchmark against the floor, on pages dom0 grants us: per page `enter_gnt` + `remove` versus the bare grant hypercalls on the same PTEs, interleaved, printed as one line per row.
//!
//! dom0 (`grantsvc-peer grant-hold`) grants the pages and publishes their refs under
//! `/local/domain/0/data/grant-floor/<our domid>/`: `refs/0`, `refs/1`, ... (space-separated
//! decimal refs, 512 a node: well inside xenstore's 4 KiB value) and then `pages`, the count, which says the list is
//! complete. The scenario waits for `pages`, reads the refs, runs `floor_benchmark` for the
//! batch sizes of [`FLOOR_BATCHES`] and [`FLOOR_IN_FLIGHT`] one-page calls, and prints each
//! row as `grant-floor: row <shape> <pages> pmap <min> <median> <max> raw <min> <median> <max>
//! paired <ratio> dropped <samples> retaken <samples>` in ns per page (TSC scaled by Xen's
//! factor; the ratio is the median of each round's pmap/raw, see `FloorRow`; samples timed
//! implausibly short are retaken or dropped, see `MIN_TICKS_PER_PAGE`), which the lab's `grant`
//! bench turns into its table. It asserts nothing about speed: it passes when every cycle
//! succeeded and nothing stays mapped.

use super::self_grants::{outcome, Baseline};
use super::Outcome;
use crate::kernel::booted::Kernel;
use crate::kernel::event_wait;
use crate::kernel::store_connection::Xenstore;
use crate::kernel::xen::time;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::peer::value::parse_u32;
use grantsvc::pmap::{floor_benchmark, FloorShape, FLOOR_BATCHES, FLOOR_IN_FLIGHT};
use xenstore::TransactionId;

/// Interleaved rounds: each is one sample of every row, both ways.
const ROUNDS: u32 = 10;
/// How long dom0 may take to publish the refs.
const PATIENCE_NS: u64 = 120_000_000_000;
const POLL_NS: u64 = 100_000_000;
const NONE: TransactionId = TransactionId::NONE;

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("grant-floor", body(kernel))
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let refs = published_refs(kernel)?;
    let pmap = kernel.pmap;
    let before = Baseline::take(pmap);
    // TSC ticks, converted to ns once per figure (see `time::tsc_ticks`).
    let mut clock = time::tsc_ticks;
    // One untimed round first: under QEMU's TCG the first run of each code path pays for its
    // translation.
    floor_benchmark(
        &mut pmap.lock(),
        DomId::DOM0,
        &refs,
        &FLOOR_BATCHES,
        FLOOR_IN_FLIGHT,
        1,
        &mut clock,
    )
    .map_err(|error| format!("warm-up: {error:?}"))?;
    let started = clock();
    let rows = floor_benchmark(
        &mut pmap.lock(),
        DomId::DOM0,
        &refs,
        &FLOOR_BATCHES,
        FLOOR_IN_FLIGHT,
        ROUNDS,
        &mut clock,
    )
    .map_err(|error| format!("benchmark: {error:?}"))?;
    let ns = |ticks: u64| time::ticks_to_ns(ticks).unwrap_or(0);
    let elapsed_ms = ns(clock().saturating_sub(started)) / 1_000_000;
    log::info!(
        "grant-floor: {} dom0-granted pages, {ROUNDS} interleaved rounds, {elapsed_ms} ms; ns per page map+unmap (min median max)",
        refs.len()
    );
    for row in &rows {
        let (shape, pages) = match row.shape {
            FloorShape::Batch(pages) => ("batch", pages),
            FloorShape::OnePageCalls(pages) => ("calls", pages),
        };
        log::info!(
            "grant-floor: row {shape} {pages} pmap {} {} {} raw {} {} {} paired {}.{:03} dropped {} retaken {}",
            ns(row.pmap.min),
            ns(row.pmap.median),
            ns(row.pmap.max),
            ns(row.raw.min),
            ns(row.raw.median),
            ns(row.raw.max),
            row.paired_ratio_thousandths / 1000,
            row.paired_ratio_thousandths % 1000,
            row.dropped,
            row.retaken
        );
    }
    let expected = FLOOR_BATCHES.len() + 1;
    if rows.len() != expected {
        return Err(format!(
            "{} rows, not {expected}: {} refs cannot fill every batch",
            rows.len(),
            refs.len()
        ));
    }
    let restored = before.check_restored(pmap)?;
    Ok(format!("benchmark complete; {restored}"))
}

/// The refs dom0 published for us, once it has published them all.
fn published_refs(kernel: &Kernel) -> Result<Vec<GrantRef>, String> {
    let mut store =
        Xenstore::connect(kernel.boot_info).map_err(|error| format!("xenstore: {error}"))?;
    let domid = store
        .read_string(NONE, "domid")
        .map_err(|error| format!("reading our domid: {error}"))?;
    let base = format!("/local/domain/0/data/grant-floor/{domid}");
    let deadline = event_wait::now_ns().saturating_add(PATIENCE_NS);
    let count = loop {
        match store.read(NONE, &format!("{base}/pages")) {
            Ok(value) => break number(&value, "pages")? as usize,
            Err(error) if event_wait::now_ns() >= deadline => {
                return Err(format!("{base}/pages did not appear: {error}"))
            }
            Err(_) => {
                let _ = store.take_watch_events();
                event_wait::wait(Some(event_wait::now_ns().saturating_add(POLL_NS)));
            }
        }
    };
    let mut refs = Vec::with_capacity(count);
    let mut node = 0;
    while refs.len() < count {
        let path = format!("{base}/refs/{node}");
        let value = store
            .read(NONE, &path)
            .map_err(|error| format!("reading {path}: {error}"))?;
        let before = refs.len();
        for word in value
            .split(|byte| *byte == b' ')
            .filter(|word| !word.is_empty())
        {
            refs.push(GrantRef::new(number(word, &path)?));
        }
        if refs.len() == before {
            return Err(format!("{path} holds no ref"));
        }
        node += 1;
    }
    if refs.len() != count {
        return Err(format!("{} refs published for {count} pages", refs.len()));
    }
    log::info!("grant-floor: {count} refs of dom0 read from {base}");
    Ok(refs)
}

fn number(value: &[u8], what: &str) -> Result<u32, String> {
    parse_u32(value).map_err(|_| format!("{what}: {:?} is not a number", value.escape_ascii()))
}
