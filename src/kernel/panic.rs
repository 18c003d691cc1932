//! The panic handler: message and location on the console, drain it, then crash the domain.

use super::console;
use super::xen::sched;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};
use grantsvc::abi::sched::ShutdownReason;

static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if PANICKING.swap(true, Ordering::SeqCst) {
        // A panic while reporting a panic: say nothing more, just stop.
        sched::shutdown(ShutdownReason::Crash);
    }
    match info.location() {
        Some(location) => console::write_emergency(format_args!(
            "grantsvc: PANIC: {} at {}:{}:{}\n",
            info.message(),
            location.file(),
            location.line(),
            location.column()
        )),
        None => console::write_emergency(format_args!("grantsvc: PANIC: {}\n", info.message())),
    }
    console::drain();
    sched::shutdown(ShutdownReason::Crash)
}
