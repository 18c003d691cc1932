//! `scenario=<name>`: the in-kernel halves of lab scenarios, in one registry.
//!
//! A scenario is a function from the booted kernel to an outcome. The kernel prints
//! `scenario <name>: PASS` or `scenario <name>: FAIL: <reason>` and powers off; an unknown
//! name is logged with the list of known ones. New scenarios are added to `SCENARIOS`.

use crate::kernel::booted::Kernel;
use alloc::string::String;

mod console_flood;
mod foreign;
mod grant_bench;
mod grant_errors;
mod grant_floor;
mod grant_map;
mod mixed_remove;
mod self_grants;
mod xenstore_operations;

/// What a scenario concluded.
pub enum Outcome {
    Pass,
    Fail(String),
}

/// One registered scenario.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(&Kernel) -> Outcome,
}

/// Every scenario the kernel knows.
const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "console-flood",
        run: console_flood::run,
    },
    Scenario {
        name: "xenstore",
        run: xenstore_operations::run,
    },
    Scenario {
        name: "grant-map",
        run: grant_map::run,
    },
    Scenario {
        name: "grant-errors",
        run: grant_errors::run,
    },
    Scenario {
        name: "pmap-mixed-remove",
        run: mixed_remove::run,
    },
    Scenario {
        name: "pmap-foreign",
        run: foreign::run,
    },
    Scenario {
        name: "grant-bench",
        run: grant_bench::run,
    },
    Scenario {
        name: "grant-floor",
        run: grant_floor::run,
    },
];

/// Runs the scenario called `name` and prints its result line.
pub fn run(name: &str, kernel: &Kernel) {
    let Some(scenario) = SCENARIOS.iter().find(|scenario| scenario.name == name) else {
        log::error!("scenario {name}: unknown; known scenarios:");
        for scenario in SCENARIOS {
            log::error!("  {}", scenario.name);
        }
        return;
    };
    log::info!("scenario {name}: start");
    match (scenario.run)(kernel) {
        Outcome::Pass => log::info!("scenario {name}: PASS"),
        Outcome::Fail(reason) => log::error!("scenario {name}: FAIL: {reason}"),
    }
}
