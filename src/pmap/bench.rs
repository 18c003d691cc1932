//! The grant map+unmap benchmark the kernel runs in the lab: cost per page, batched versus one hypercall per page.
//!
//! Compiled only with the `lab` feature (and in host tests): the production image carries no
//! benchmark.

use super::{GrantMapError, PageRange, Pmap, PmapError, RemoveError};
use crate::abi::grant_table::{gntmap, GnttabMapGrantRef, GnttabUnmapGrantRef};
use crate::addr::{MachineAddr, Pfn};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::{Hypervisor, XenError};
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
    /// The page tables of a row's range could not be walked.
    Tables(PmapError),
    /// A raw grant hypercall failed as a whole.
    RawHypercall(XenError),
    /// A raw map op failed.
    RawStatus {
        grant_ref: GrantRef,
        status: i16,
    },
    /// A raw unmap op failed: the page stays mapped at the PTE `host_addr`.
    RawUnmapStatus {
        status: i16,
        host_addr: u64,
    },
    /// The clock went backwards during every attempt at one sample.
    ClockWentBackwards,
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
                    let one = PageRange::new(page, 1).ok_or(BenchError::NoAddressSpace)?;
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

/// Issue 10's batch sizes for the benchmark against raw hypercalls.
pub const FLOOR_BATCHES: [usize; 5] = [1, 8, 64, 512, 2048];

/// One-page calls in flight in the benchmark's last row: that many one-page regions mapped
/// with one call each, then removed with one call each.
pub const FLOOR_IN_FLIGHT: usize = 512;

/// A timed sample maps and unmaps at least this many pages: smaller batches repeat their
/// cycle, so that one reading of the clock does not time a single microsecond-long cycle.
/// Under Miri (`make miri`), where each cycle takes tenths of a second to interpret, the host
/// tests of the benchmark's bookkeeping run with samples of 64 pages.
pub const PAGES_PER_SAMPLE: usize = if cfg!(miri) { 64 } else { 512 };

/// Attempts at one sample while the clock goes backwards or times it implausibly short.
const CLOCK_ATTEMPTS: u32 = 3;

/// Fewer clock ticks than this per page cannot time a grant map+unmap (Xen's work alone is
/// hundreds of ns a page): such a sample was cut short by the clock, not by the work (last
/// session's raw minimums of 0 ns under TCG, the vcpu likely moved between processors whose
/// counters differ), so it is taken again, and dropped if every attempt is so.
pub const MIN_TICKS_PER_PAGE: u64 = 10;

/// How the pages of one benchmark row are mapped and unmapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorShape {
    /// All the pages in one call (one hypercall per [`super::MAX_GRANT_BATCH`] pages).
    Batch(usize),
    /// Each page its own call, all mapped before any is unmapped.
    OnePageCalls(usize),
}

impl FloorShape {
    /// Pages one cycle maps.
    pub fn pages(&self) -> usize {
        match *self {
            FloorShape::Batch(pages) | FloorShape::OnePageCalls(pages) => pages,
        }
    }

    /// Cycles one sample runs: at least [`PAGES_PER_SAMPLE`] pages.
    fn cycles_per_sample(&self) -> usize {
        PAGES_PER_SAMPLE.div_ceil(self.pages().max(1))
    }
}

/// The least, median and greatest sample, in clock ticks per page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    pub min: u64,
    pub median: u64,
    pub max: u64,
}

impl Spread {
    /// The spread of `samples` (ticks per page); all zero when there are none.
    pub fn of(samples: &mut [u64]) -> Spread {
        samples.sort_unstable();
        Spread {
            min: samples.first().copied().unwrap_or(0),
            median: median(samples),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

/// One row of the benchmark against raw hypercalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorRow {
    pub shape: FloorShape,
    /// `enter_gnt` + `remove`.
    pub pmap: Spread,
    /// `GNTTABOP_map_grant_ref` + `GNTTABOP_unmap_grant_ref` alone on the same PTEs.
    pub raw: Spread,
    /// The median over rounds of each round's pmap sample over its raw sample, in thousandths:
    /// the two samples of a round are taken back to back, so host drift between rounds (other
    /// guests, builds) cancels out of each ratio.
    pub paired_ratio_thousandths: u64,
    /// Samples (of either way) dropped because every attempt at them timed fewer than
    /// [`MIN_TICKS_PER_PAGE`] ticks a page; the spreads and ratios are of the others.
    pub dropped: u32,
    /// Samples taken again after an implausible or backwards clock reading.
    pub retaken: u32,
}

/// Where one benchmark row maps: its address range and, for the raw calls, each page's PTE.
struct RowPlace {
    shape: FloorShape,
    range: PageRange,
    targets: Vec<(Pfn, MachineAddr)>,
}

/// The benchmark against the floor (issue 10): per page map + unmap through the pmap
/// (`enter_gnt` + `remove`) and through the bare grant hypercalls issued on the same PTEs,
/// for each of `batches` that `refs` (granted to us by `peer`) can fill and for `in_flight`
/// one-page calls (0: no such row). Every row gets its own address range for the whole run;
/// its page tables are made by one untimed pmap cycle first and stay (the pmap keeps empty
/// grant-region tables), so both ways write the same entries. Rounds interleave everything:
/// each round runs every row once both ways, the order of the two ways alternating from
/// round to round, so that drift on the host hits both alike. The raw calls book nothing in
/// the pmap: they map and unmap within one cycle, and a failure of theirs ends the run with
/// the row's range left allocated (never reused) rather than handed back with pages in it.
pub fn floor_benchmark<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    peer: DomId,
    refs: &[GrantRef],
    batches: &[usize],
    in_flight: usize,
    rounds: u32,
    clock: &mut dyn FnMut() -> u64,
) -> Result<Vec<FloorRow>, BenchError> {
    let mut shapes: Vec<FloorShape> = batches
        .iter()
        .filter(|&&pages| pages > 0 && pages <= refs.len())
        .map(|&pages| FloorShape::Batch(pages))
        .collect();
    if in_flight > 0 && in_flight <= refs.len() {
        shapes.push(FloorShape::OnePageCalls(in_flight));
    }
    let mut places = Vec::with_capacity(shapes.len());
    for shape in shapes {
        let range = pmap
            .allocate_va(shape.pages() as u64)
            .ok_or(BenchError::NoAddressSpace)?;
        let mut place = RowPlace {
            shape,
            range,
            targets: Vec::new(),
        };
        pmap_cycle(pmap, peer, refs, &place)?;
        pmap.page_table_targets(&range, &mut place.targets)
            .map_err(BenchError::Tables)?;
        places.push(place);
    }
    let mut ops = RawOps::default();
    let rounds = rounds.max(1) as usize;
    // Per row, each round's pmap and raw sample (`None`: dropped), and the samples retaken.
    let mut samples: Vec<RowSamples> = places
        .iter()
        .map(|_| RowSamples {
            pmap: Vec::with_capacity(rounds),
            raw: Vec::with_capacity(rounds),
            retaken: 0,
        })
        .collect();
    for round in 0..rounds {
        for (place, row) in places.iter().zip(samples.iter_mut()) {
            let cycles = place.shape.cycles_per_sample();
            let pages = (cycles * place.shape.pages()) as u64;
            let pmap_first = round % 2 == 0;
            for through_pmap in [pmap_first, !pmap_first] {
                // A clock that went backwards or took implausibly few ticks (the vcpu moved
                // to a processor whose counter differs) times nothing: that sample is taken
                // again; one that only ever went backwards ends the run.
                let mut went_forward = false;
                let mut per_page = None;
                for attempt in 0..CLOCK_ATTEMPTS {
                    if attempt > 0 {
                        row.retaken += 1;
                    }
                    let started = clock();
                    for _ in 0..cycles {
                        if through_pmap {
                            pmap_cycle(pmap, peer, refs, place)?;
                        } else {
                            raw_cycle(pmap, peer, refs, place, &mut ops)?;
                        }
                    }
                    let Some(elapsed) = clock().checked_sub(started) else {
                        continue;
                    };
                    went_forward = true;
                    if elapsed / pages >= MIN_TICKS_PER_PAGE {
                        per_page = Some(elapsed / pages);
                        break;
                    }
                }
                if !went_forward {
                    return Err(BenchError::ClockWentBackwards);
                }
                if through_pmap {
                    row.pmap.push(per_page);
                } else {
                    row.raw.push(per_page);
                }
            }
        }
    }
    let mut rows = Vec::with_capacity(places.len());
    for (place, row) in places.into_iter().zip(samples) {
        let _ = pmap.free_va(place.range);
        rows.push(row.into_floor_row(place.shape));
    }
    Ok(rows)
}

/// One row's samples while the benchmark runs.
struct RowSamples {
    pmap: Vec<Option<u64>>,
    raw: Vec<Option<u64>>,
    retaken: u32,
}

impl RowSamples {
    /// The spreads of the samples kept, and the paired ratio of the rounds that kept both.
    fn into_floor_row(self, shape: FloorShape) -> FloorRow {
        let mut ratios: Vec<u64> = self
            .pmap
            .iter()
            .zip(&self.raw)
            .filter_map(|(through_pmap, raw)| {
                Some(through_pmap.as_ref()?.saturating_mul(1000) / (*raw.as_ref()?).max(1))
            })
            .collect();
        let dropped = self
            .pmap
            .iter()
            .chain(&self.raw)
            .filter(|sample| sample.is_none());
        let dropped = dropped.count() as u32;
        let mut pmap: Vec<u64> = self.pmap.into_iter().flatten().collect();
        let mut raw: Vec<u64> = self.raw.into_iter().flatten().collect();
        FloorRow {
            shape,
            pmap: Spread::of(&mut pmap),
            raw: Spread::of(&mut raw),
            paired_ratio_thousandths: median(&mut ratios),
            dropped,
            retaken: self.retaken,
        }
    }
}

/// One map + unmap cycle of a row through the pmap.
fn pmap_cycle<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    peer: DomId,
    refs: &[GrantRef],
    place: &RowPlace,
) -> Result<(), BenchError> {
    let pages = place.shape.pages();
    let refs = refs.get(..pages).ok_or(BenchError::NoAddressSpace)?;
    match place.shape {
        FloorShape::Batch(_) => {
            pmap.enter_gnt(place.range.start(), peer, refs, false)
                .map_err(BenchError::Map)?;
            pmap.remove(place.range).map_err(BenchError::Remove)?;
        }
        FloorShape::OnePageCalls(_) => {
            for (index, grant_ref) in refs.iter().enumerate() {
                let page = place
                    .range
                    .page(index as u64)
                    .ok_or(BenchError::NoAddressSpace)?;
                pmap.enter_gnt(page, peer, core::slice::from_ref(grant_ref), false)
                    .map_err(BenchError::Map)?;
            }
            for index in 0..pages as u64 {
                let page = place.range.page(index).ok_or(BenchError::NoAddressSpace)?;
                let one = PageRange::new(page, 1).ok_or(BenchError::NoAddressSpace)?;
                pmap.remove(one).map_err(BenchError::Remove)?;
            }
        }
    }
    Ok(())
}

/// The op arrays of the raw calls, kept across cycles (the floor allocates nothing either).
#[derive(Default)]
struct RawOps {
    map: Vec<GnttabMapGrantRef>,
    unmap: Vec<GnttabUnmapGrantRef>,
}

/// One map + unmap cycle of a row through the bare hypercalls: the same ops `enter_gnt`
/// issues (`GNTMAP_host_map | GNTMAP_contains_pte` on the row's PTEs, at most
/// [`super::MAX_GRANT_BATCH`] per call for a batch, one per call otherwise), then unmaps by
/// the handles Xen returned. Every status is checked; a failed map unmaps what did map first.
fn raw_cycle<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    peer: DomId,
    refs: &[GrantRef],
    place: &RowPlace,
    ops: &mut RawOps,
) -> Result<(), BenchError> {
    let per_call = match place.shape {
        FloorShape::Batch(_) => super::MAX_GRANT_BATCH,
        FloorShape::OnePageCalls(_) => 1,
    };
    ops.map.clear();
    ops.map.extend(
        refs.iter()
            .zip(&place.targets)
            .map(|(grant_ref, (_, host_addr))| GnttabMapGrantRef {
                host_addr: host_addr.get(),
                flags: gntmap::HOST_MAP | gntmap::CONTAINS_PTE,
                ref_: grant_ref.get(),
                dom: peer.get(),
                status: RAW_NOT_REACHED,
                handle: u32::MAX,
                dev_bus_addr: 0,
            }),
    );
    let mut failure = None;
    for chunk in ops.map.chunks_mut(per_call) {
        if let Err(error) = pmap.hypervisor.grant_map(chunk) {
            failure = Some(BenchError::RawHypercall(error));
            break;
        }
    }
    ops.unmap.clear();
    for op in &ops.map {
        if op.status == 0 {
            ops.unmap.push(GnttabUnmapGrantRef {
                host_addr: op.host_addr,
                dev_bus_addr: 0,
                handle: op.handle,
                status: RAW_NOT_REACHED,
            });
        } else if failure.is_none() {
            failure = Some(BenchError::RawStatus {
                grant_ref: GrantRef::new(op.ref_),
                status: op.status,
            });
        }
    }
    for chunk in ops.unmap.chunks_mut(per_call) {
        if let Err(error) = pmap.hypervisor.grant_unmap(chunk) {
            return Err(BenchError::RawHypercall(error));
        }
    }
    if let Some(op) = ops.unmap.iter().find(|op| op.status != 0) {
        return Err(BenchError::RawUnmapStatus {
            status: op.status,
            host_addr: op.host_addr,
        });
    }
    failure.map_or(Ok(()), Err)
}

/// A status Xen never writes: marks raw ops the hypercall did not reach.
const RAW_NOT_REACHED: i16 = 1;
