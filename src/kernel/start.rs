//! The boot sequence, from a copy of start_info to the mode the command line asks for.

use super::boot::{entry, traps};
use super::xen::{platform, ring_pages, sched, shared_info};
use super::{
    address_space, console, events, logger, memory, scenarios, selftest, service, share_peer,
};
use alloc::string::String;
use grantsvc::abi::sched::ShutdownReason;
use grantsvc::boot_info::{BootInfo, BootInfoError};
use grantsvc::cmdline::CommandLine;

/// The unmapped address the `fault` switch reads: inside the pmap's chosen-VA region, which
/// nothing maps at boot.
const DELIBERATE_FAULT_ADDRESS: u64 = 0xffff_c0ff_dead_0000;

/// The kernel's state after boot, handed to self-tests and scenarios.
pub struct Kernel {
    /// The one record of start_info (`xen::start_of_day`).
    pub boot_info: &'static BootInfo,
}

/// Boots: validate start_info, map shared_info, install traps, console and logger, print the
/// banner and summary, then do what the command line says.
pub fn start(recorded: Result<&'static BootInfo, BootInfoError>) -> ! {
    let boot_info = match recorded {
        Ok(boot_info) => boot_info,
        Err(error) => fatal_early(format_args!("grantsvc: refusing start_info: {error}\n")),
    };
    if let Err(error) = shared_info::map() {
        fatal_early(format_args!(
            "grantsvc: mapping shared_info at {} failed: {error}\n",
            boot_info.shared_info()
        ));
    }
    if let Err(error) = platform::set_trap_table() {
        fatal_early(format_args!("grantsvc: set_trap_table failed: {error}\n"));
    }
    let console_problem = match ring_pages::console() {
        Ok(page) => {
            console::install(page, boot_info.console_port());
            None
        }
        Err(error) => Some(error),
    };

    // A copy, so that boot_info can move into the Kernel while the parsed words borrow it.
    let command_line_text = String::from(boot_info.command_line());
    let command_line = CommandLine::parse(&command_line_text);
    logger::initialise(command_line.log_level);
    // The banner and summary are written whatever the log level: the lab looks for them.
    console::write_fmt(format_args!(
        "grantsvc {} - Xen PV x86-64 grant-mapping driver domain\n",
        env!("CARGO_PKG_VERSION")
    ));
    console::write_fmt(format_args!("{}\n", boot_info.summary()));
    if let Some(error) = console_problem {
        log::error!("console ring unusable ({error}); writing through console_io");
    }
    for problem in command_line.problems() {
        log::warn!("command line: {problem}");
    }
    if command_line.problems_dropped() > 0 {
        log::warn!(
            "command line: {} more problem(s) not shown",
            command_line.problems_dropped()
        );
    }
    let (major, minor, extra) = platform::xen_version();
    let extra_length = extra
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(extra.len());
    log::info!(
        "running on Xen {major}.{minor}{}",
        extra.get(..extra_length).unwrap_or(&[]).escape_ascii()
    );
    if let Err(error) = entry::unmap_stack_guard() {
        log::warn!("could not unmap the stack guard page: {error}");
    }
    if !memory::initialise(boot_info) {
        panic!("no free frames after Xen's bootstrap area");
    }
    log::debug!(
        "frame allocator: pfns {}..{:#x} free",
        boot_info.first_free_pfn(),
        boot_info.nr_pages()
    );
    match address_space::initialise(boot_info) {
        Ok(adopted) => log::info!(
            "pmap: adopted Xen's {} page-table pages; direct map extended by {} pages to all {} pfns with {} new page-table pages",
            adopted.adopted_tables,
            adopted.pages_added,
            boot_info.nr_pages(),
            adopted.tables_added
        ),
        Err(error) => panic!("the pmap could not take over the address space: {error}"),
    }

    match events::initialise() {
        Ok(timer_port) => log::debug!("event upcall registered; timer on port {timer_port}"),
        Err(error) => panic!("registering the event upcall failed: {error}"),
    }

    let kernel = Kernel { boot_info };
    if command_line.deliberate_panic {
        panic!("deliberate panic requested on the command line");
    }
    if command_line.deliberate_fault {
        log::info!("deliberate page fault requested: reading {DELIBERATE_FAULT_ADDRESS:#x}");
        let value = traps::read_byte_expecting_fault(DELIBERATE_FAULT_ADDRESS);
        panic!("reading {DELIBERATE_FAULT_ADDRESS:#x} did not fault (read {value:#x})");
    }
    if let Some(name) = command_line.scenario {
        scenarios::run(name, &kernel);
        power_off();
    }
    if let Some(pages) = command_line.share_peer {
        share_peer::run(&kernel, pages);
    }
    if command_line.selftest {
        if selftest::run(&kernel) {
            power_off();
        }
        log::error!("self-test failed: crashing the domain so the failure is visible");
        console::drain();
        sched::shutdown(ShutdownReason::Crash);
    }
    service::run(&kernel)
}

/// Drains the console and powers the domain off.
pub fn power_off() -> ! {
    log::info!("powering off");
    if !console::drain() {
        log::warn!("console not drained before poweroff");
    }
    sched::shutdown(ShutdownReason::Poweroff)
}

/// Reports a boot failure before the console ring exists, then crashes.
fn fatal_early(arguments: core::fmt::Arguments<'_>) -> ! {
    console::write_emergency(arguments);
    console::drain();
    sched::shutdown(ShutdownReason::Crash)
}
