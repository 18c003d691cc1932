//! `gntdev-bench`: Linux's cost of mapping granted pages into a process (gntdev), per page map+unmap, for the lab's `grant` bench to compare grantsvc with.
//!
//! dom0 grants the pages to itself (gntalloc, granted to dom0) and maps them back through
//! gntdev, as a Linux backend maps a peer's pages: the map ioctl, `mmap`, a read of every
//! page, `munmap`, the unmap ioctl. Rows and rounds mirror the kernel's `grant-floor`
//! scenario: every batch, then one-page calls in flight; each round samples every row once;
//! a sample covers at least [`PAGES_PER_SAMPLE`] pages.

use crate::bench_args::GntdevBenchOptions;
use crate::gntalloc::GrantedPages;
use crate::gntdev::{Gntdev, Mapped};
use grantsvc::ids::{DomId, GrantRef};
use std::hint::black_box;
use std::time::Instant;

/// The kernel's `grantsvc::pmap::PAGES_PER_SAMPLE`.
const PAGES_PER_SAMPLE: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Batch(usize),
    OnePageCalls(usize),
}

impl Shape {
    fn pages(self) -> usize {
        match self {
            Shape::Batch(pages) | Shape::OnePageCalls(pages) => pages,
        }
    }
}

pub fn run(options: &GntdevBenchOptions) -> Result<String, String> {
    let mut shapes: Vec<Shape> = options
        .batches
        .iter()
        .map(|&pages| Shape::Batch(pages))
        .collect();
    if options.in_flight > 0 {
        shapes.push(Shape::OnePageCalls(options.in_flight));
    }
    let largest = shapes.iter().map(|shape| shape.pages()).max().unwrap_or(1);
    let pages = GrantedPages::allocate(DomId::DOM0, largest as u32, true).map_err(|error| {
        format!("granting {largest} pages to dom0 through gntalloc: {error} (its limit: /sys/module/xen_gntalloc/parameters/limit)")
    })?;
    let refs = pages.refs().to_vec();
    let mut gntdev = Gntdev::open().map_err(|error| format!("opening /dev/xen/gntdev: {error}"))?;
    // One untimed round: the first run of each path pays for what is cold.
    for shape in &shapes {
        cycle(&mut gntdev, &refs, *shape)?;
    }
    let mut samples: Vec<Vec<u64>> = shapes.iter().map(|_| Vec::new()).collect();
    for _ in 0..options.rounds {
        for (shape, samples) in shapes.iter().zip(samples.iter_mut()) {
            let cycles = PAGES_PER_SAMPLE.div_ceil(shape.pages());
            let started = Instant::now();
            for _ in 0..cycles {
                cycle(&mut gntdev, &refs, *shape)?;
            }
            let nanoseconds = started.elapsed().as_nanos() as u64;
            samples.push(nanoseconds / (cycles * shape.pages()) as u64);
        }
    }
    for (shape, samples) in shapes.iter().zip(samples.iter_mut()) {
        samples.sort_unstable();
        let (kind, count) = match shape {
            Shape::Batch(pages) => ("batch", pages),
            Shape::OnePageCalls(pages) => ("calls", pages),
        };
        println!(
            "gntdev: row {kind} {count} {} {} {}",
            samples.first().copied().unwrap_or(0),
            samples.get(samples.len() / 2).copied().unwrap_or(0),
            samples.last().copied().unwrap_or(0)
        );
    }
    pages
        .release()
        .map_err(|error| format!("ending the grants: {error}"))?;
    Ok(format!(
        "{} rows, {} rounds, {largest} pages of dom0 mapped through gntdev",
        shapes.len(),
        options.rounds
    ))
}

/// One map + touch + unmap cycle of the first `shape.pages()` refs.
fn cycle(gntdev: &mut Gntdev, refs: &[GrantRef], shape: Shape) -> Result<(), String> {
    let refs = refs
        .get(..shape.pages())
        .ok_or("fewer refs than the row's pages")?;
    let failed = |what: &str, error: std::io::Error| {
        format!("gntdev {what} of {} page(s): {error}", refs.len())
    };
    match shape {
        Shape::Batch(_) => {
            let mapped = gntdev
                .map(DomId::DOM0, refs)
                .map_err(|error| failed("map", error))?;
            black_box(mapped.touch());
            gntdev
                .unmap(mapped)
                .map_err(|error| failed("unmap", error))?;
        }
        Shape::OnePageCalls(_) => {
            let mut all: Vec<Mapped> = Vec::with_capacity(refs.len());
            for grant_ref in refs {
                all.push(
                    gntdev
                        .map(DomId::DOM0, std::slice::from_ref(grant_ref))
                        .map_err(|error| failed("map", error))?,
                );
            }
            for mapped in &all {
                black_box(mapped.touch());
            }
            for mapped in all {
                gntdev
                    .unmap(mapped)
                    .map_err(|error| failed("unmap", error))?;
            }
        }
    }
    Ok(())
}
