//! Runs what the lab's command-line words ask for: `panic`, `fault`, `scenario=`, `share-peer=`, `selftest`, in that order of precedence.

use super::{deliberate, scenarios, selftest, share_peer};
use crate::kernel::booted::Kernel;
use crate::kernel::console;
use crate::kernel::xen::sched;
use grantsvc::abi::sched::ShutdownReason;

/// Runs the lab run the command line asks for; returns only when it asks for none, so that
/// the service runs as in the production image.
pub fn run_requested(kernel: &Kernel) {
    let words = &kernel.lab_words;
    if words.deliberate_panic {
        deliberate::panic_now();
    }
    if words.deliberate_fault {
        deliberate::fault_now();
    }
    if let Some(name) = words.scenario {
        scenarios::run(name, kernel);
        power_off();
    }
    if let Some(pages) = words.share_peer {
        share_peer::run(kernel, pages);
    }
    if words.selftest {
        if selftest::run(kernel) {
            power_off();
        }
        log::error!("self-test failed: crashing the domain so the failure is visible");
        console::drain();
        sched::shutdown(ShutdownReason::Crash);
    }
}

/// Drains the console and powers the domain off.
fn power_off() -> ! {
    log::info!("powering off");
    if !console::drain() {
        log::warn!("console not drained before poweroff");
    }
    sched::shutdown(ShutdownReason::Poweroff)
}
