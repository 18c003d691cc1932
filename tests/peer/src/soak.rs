//! `grantsvc-peer soak`: many connect/map/revoke cycles of one grant-share device in one process, each cycle's phases timed here in dom0, with min/median/max and the slowest cycles reported.
//!
//! A cycle is: publish (dom0 grants, allocates a port, creates the directories, writes the
//! frontend's nodes), connect (grantsvc maps, checks, answers and writes Connected), check (dom0
//! reads the results and the pages), close (dom0 writes Closing, grantsvc unmaps and writes
//! Closed with mapped-pages 0), tear down (dom0 removes the nodes, the port and the grants).
//! The waits poll the backend's state at a short interval, so a cycle's time is grantsvc's
//! answer time plus at most one interval per wait.

use crate::evtchn::EventChannels;
use crate::share_device::{Answer, DeviceId, ShareDevice, XenbusState};
use crate::store::Store;
use grantsvc::ids::DomId;
use std::time::{Duration, Instant};

/// Options of `soak`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoakOptions {
    pub domid: DomId,
    pub cycles: u32,
    pub pages: u32,
    pub device: DeviceId,
    /// Bound on each wait for grantsvc (a stalled cycle is measured, not cut short, below it).
    pub timeout: Duration,
    /// How often a wait re-reads the backend's state.
    pub poll: Duration,
    /// The verdict fails when the slowest cycle takes this long or longer.
    pub max_cycle: Duration,
    /// How many of the slowest cycles to print with their phases.
    pub show_slowest: usize,
}

/// Failed cycles after which the soak stops.
const MAX_FAILED_CYCLES: usize = 10;

/// The phases of one cycle, in order, as printed.
pub const PHASES: [&str; 5] = ["publish", "connect", "check", "close", "tear-down"];

/// One cycle's phase durations (same order as [`PHASES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub number: u32,
    pub phases: [Duration; 5],
}

impl Cycle {
    pub fn total(&self) -> Duration {
        self.phases.iter().sum()
    }

    /// "cycle 17: 143 ms (publish 12, connect 80, check 3, close 40, tear-down 8)".
    pub fn describe(&self) -> String {
        let phases: Vec<String> = PHASES
            .iter()
            .zip(self.phases.iter())
            .map(|(name, took)| format!("{name} {}", took.as_millis()))
            .collect();
        format!(
            "cycle {}: {} ms ({})",
            self.number,
            self.total().as_millis(),
            phases.join(", ")
        )
    }
}

/// Min, median and max cycle time, and the `slowest` slowest cycles, slowest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures {
    pub min: Duration,
    pub median: Duration,
    pub max: Duration,
    pub slowest: Vec<Cycle>,
}

/// The figures of `cycles` (None for none).
pub fn figures(cycles: &[Cycle], slowest: usize) -> Option<Figures> {
    let mut by_time: Vec<&Cycle> = cycles.iter().collect();
    by_time.sort_by_key(|cycle| std::cmp::Reverse(cycle.total()));
    let max = by_time.first()?.total();
    let min = by_time.last()?.total();
    // The lower median for an even count: a figure that some cycle really took.
    let median = by_time.get(by_time.len() / 2)?.total();
    Some(Figures {
        min,
        median,
        max,
        slowest: by_time.into_iter().take(slowest).cloned().collect(),
    })
}

/// Polls the backend's state until it is `wanted`; Err says what was seen instead.
fn wait_for(
    store: &mut Store,
    device: &ShareDevice,
    wanted: &[XenbusState],
    options: &SoakOptions,
) -> Result<XenbusState, String> {
    let deadline = Instant::now() + options.timeout;
    let mut last = None;
    loop {
        last = device.backend_state(store)?.or(last);
        if let Some(state) = last.filter(|state| wanted.contains(state)) {
            return Ok(state);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "backend still at {} after {} s, waiting for {wanted:?}",
                last.map_or("no state".to_string(), |state| state.to_string()),
                options.timeout.as_secs()
            ));
        }
        std::thread::sleep(options.poll);
    }
}

/// One cycle with device number `options.device`; Err names the phase and what was wrong.
fn cycle(
    store: &mut Store,
    channels: &EventChannels,
    options: &SoakOptions,
    number: u32,
) -> Result<Cycle, String> {
    let mut phases = [Duration::ZERO; 5];
    let mut started = Instant::now();
    let mut lap = |phases: &mut [Duration; 5], index: usize| {
        if let Some(slot) = phases.get_mut(index) {
            *slot = started.elapsed();
        }
        started = Instant::now();
    };
    let seed = number.wrapping_mul(2_654_435_761) ^ 0x50a4;
    let device = ShareDevice::publish(
        store,
        channels,
        options.domid,
        options.device,
        options.pages,
        seed,
    )
    .map_err(|error| format!("publish: {error}"))?;
    lap(&mut phases, 0);
    let outcome = (|| {
        let state = wait_for(
            store,
            &device,
            &[XenbusState::Connected, XenbusState::Closed],
            options,
        )
        .map_err(|error| format!("connect: {error}"))?;
        lap(&mut phases, 1);
        match device.judge(store, state)? {
            Answer::Served => {}
            other => return Err(format!("check: {other:?}")),
        }
        lap(&mut phases, 2);
        device.revoke(store)?;
        wait_for(store, &device, &[XenbusState::Closed], options)
            .map_err(|error| format!("close: {error}"))?;
        match device.backend_mapped_pages(store)?.as_deref() {
            Some("0") => {}
            other => return Err(format!("close: backend mapped-pages {other:?}, not 0")),
        }
        lap(&mut phases, 3);
        Ok(())
    })();
    let released = device.tear_down(store, channels);
    outcome?;
    released.map_err(|error| format!("tear-down: {error}"))?;
    lap(&mut phases, 4);
    Ok(Cycle { number, phases })
}

/// Runs `soak`; Ok is the verdict's summary, Err the failure's reason (with the figures so far).
pub fn run(options: &SoakOptions) -> Result<String, String> {
    let mut store = Store::open()?;
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let mut cycles = Vec::with_capacity(options.cycles as usize);
    let mut failed: Vec<String> = Vec::new();
    let started = Instant::now();
    for number in 1..=options.cycles {
        // A failed cycle is counted and the soak goes on (its figures are what the lab paid
        // for), until so many failed that going on proves nothing more.
        match cycle(&mut store, &channels, options, number) {
            Ok(done) => cycles.push(done),
            Err(error) => {
                println!("grantsvc-peer: soak: cycle {number} failed: {error}");
                failed.push(format!("cycle {number}: {error}"));
            }
        }
        if failed.len() >= MAX_FAILED_CYCLES {
            break;
        }
        if number % 100 == 0 {
            // The figures so far, in case the lab's timeout ends the soak before its report.
            let so_far = figures(&cycles, 1).map_or(String::new(), |found| {
                format!(
                    "; so far min {} ms, median {} ms, slowest {}",
                    found.min.as_millis(),
                    found.median.as_millis(),
                    found.slowest.first().map_or(String::new(), Cycle::describe)
                )
            });
            println!(
                "grantsvc-peer: soak: {number} cycles done in {} s, {} failed{so_far}",
                started.elapsed().as_secs(),
                failed.len()
            );
        }
    }
    if !failed.is_empty() {
        report(&cycles, options);
        return Err(format!(
            "{} of {} cycles failed ({} run in {} s); first: {}",
            failed.len(),
            options.cycles,
            cycles.len() + failed.len(),
            started.elapsed().as_secs(),
            failed.join("; ").chars().take(600).collect::<String>()
        ));
    }
    let figures = report(&cycles, options).ok_or("no cycles run")?;
    let summary = format!(
        "{} cycles of {} page(s) with d{} in {} s: min {} ms, median {} ms, max {} ms",
        cycles.len(),
        options.pages,
        options.domid,
        started.elapsed().as_secs(),
        figures.min.as_millis(),
        figures.median.as_millis(),
        figures.max.as_millis()
    );
    if figures.max >= options.max_cycle {
        let slowest = figures
            .slowest
            .first()
            .map_or(String::new(), Cycle::describe);
        return Err(format!(
            "{summary}; the slowest cycle took >= {} ms: {slowest}",
            options.max_cycle.as_millis()
        ));
    }
    Ok(summary)
}

/// Prints the figures and the slowest cycles' phases; returns the figures.
fn report(cycles: &[Cycle], options: &SoakOptions) -> Option<Figures> {
    let figures = figures(cycles, options.show_slowest)?;
    println!(
        "grantsvc-peer: soak figures: cycles {} min-ms {} median-ms {} max-ms {}",
        cycles.len(),
        figures.min.as_millis(),
        figures.median.as_millis(),
        figures.max.as_millis()
    );
    for slow in &figures.slowest {
        println!("grantsvc-peer: soak slowest: {}", slow.describe());
    }
    Some(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cycle(number: u32, connect_ms: u64) -> Cycle {
        let mut phases = [Duration::from_millis(1); 5];
        phases[1] = Duration::from_millis(connect_ms);
        Cycle { number, phases }
    }

    #[test]
    fn figures_are_min_median_max_and_the_slowest_first() {
        let cycles = [cycle(1, 96), cycle(2, 10_000), cycle(3, 46), cycle(4, 196)];
        let found = figures(&cycles, 2).unwrap();
        assert_eq!(found.min, Duration::from_millis(50));
        assert_eq!(found.median, Duration::from_millis(100));
        assert_eq!(found.max, Duration::from_millis(10_004));
        assert_eq!(
            found
                .slowest
                .iter()
                .map(|cycle| cycle.number)
                .collect::<Vec<_>>(),
            [2, 4]
        );
        assert_eq!(
            found.slowest[0].describe(),
            "cycle 2: 10004 ms (publish 1, connect 10000, check 1, close 1, tear-down 1)"
        );
        assert_eq!(figures(&[], 3), None);
    }
}
