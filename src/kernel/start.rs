//! The boot sequence, from a copy of start_info to the booted `Kernel` it hands over.
//!
//! It imports neither the service nor the lab: the binary's root decides what runs on the
//! `Kernel` it returns.

use super::boot::entry;
use super::boot::heap;
use super::booted::Kernel;
use super::xen::{platform, ring_pages, sched, shared_info};
use super::{address_space, console, event_wait, logger};
use alloc::string::String;
use grantsvc::abi::sched::ShutdownReason;
use grantsvc::boot_info::{BootInfo, BootInfoError};
use grantsvc::cmdline::CommandLine;
use grantsvc::frame_alloc::BitmapFrameAllocator;

/// Boots: validate start_info, map shared_info, install traps, console and logger, print the
/// banner and summary, take over memory and events, and hand over the booted kernel.
pub fn start(recorded: Result<&'static BootInfo, BootInfoError>) -> Kernel {
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

    // A copy kept for the domain's life, so that boot_info can move into the Kernel while the
    // parsed words (the lab build keeps them in the Kernel) borrow the text.
    let command_line_text: &'static str = String::from(boot_info.command_line()).leak();
    let command_line = CommandLine::parse(command_line_text);
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
    let Some(mut frames) =
        BitmapFrameAllocator::new(boot_info.first_free_pfn(), boot_info.end_pfn())
    else {
        panic!("no free frames after Xen's bootstrap area");
    };
    log::debug!(
        "frame allocator: pfns {}..{:#x} free",
        boot_info.first_free_pfn(),
        boot_info.nr_pages()
    );
    let heap_frames = heap::reserve_frames(&mut frames);
    let pmap = match address_space::initialise(boot_info, frames) {
        Ok((pmap, adopted)) => {
            log::info!(
                "pmap: adopted Xen's {} page-table pages; direct map extended by {} pages to all {} pfns with {} new page-table pages",
                adopted.adopted_tables,
                adopted.pages_added,
                boot_info.nr_pages(),
                adopted.tables_added
            );
            pmap
        }
        Err(error) => panic!("the pmap could not take over the address space: {error}"),
    };
    match heap_frames.and_then(|reserved| heap::grow(reserved, pmap)) {
        Ok(bytes) => log::info!("heap: {} KiB of the domain's free frames", bytes / 1024),
        Err(error) => log::warn!("heap: only the bootstrap arena: {error}"),
    }

    match event_wait::initialise() {
        Ok(timer_port) => log::debug!("event upcall registered; timer on port {timer_port}"),
        Err(error) => panic!("registering the event upcall failed: {error}"),
    }

    Kernel {
        boot_info,
        pmap,
        #[cfg(feature = "lab")]
        lab_words: command_line.lab,
    }
}

/// Reports a boot failure before the console ring exists, then crashes.
fn fatal_early(arguments: core::fmt::Arguments<'_>) -> ! {
    console::write_emergency(arguments);
    console::drain();
    sched::shutdown(ShutdownReason::Crash)
}
