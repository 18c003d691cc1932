//! Event channels in the kernel: the upcall's handler, the ports ready for the run loop, and waiting without spinning.
//!
//! Outside the upcall the kernel runs with vcpu 0's `evtchn_upcall_mask` set (a PV guest's
//! "interrupts off"), so the upcall can only arrive where the kernel waits: `SCHEDOP_block`
//! unmasks events and checks for pending ones atomically inside Xen (no lost wakeup, as
//! Mini-OS's `block_domain` relies on), the upcall runs on the way out of the hypercall, and the
//! waiter masks again. The upcall only marks ports in a lock-free set; the run loop takes them.
//! Timers are Xen's one-shot timer (`set_timer_op`), which raises `VIRQ_TIMER` on its own port.
// Driven by peers (they fire their ports when they like): nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::xen::shared_info::{self, SharedInfoBitmaps};
use super::xen::{event_channel, platform, sched, time};
use core::sync::atomic::{AtomicU64, Ordering};
use grantsvc::abi::event_channel::VIRQ_TIMER;
use grantsvc::event_delivery::{scan_pending, ReadyPorts, ReadySnapshot};
use grantsvc::hypervisor::XenError;
use grantsvc::ids::EvtchnPort;

static READY: ReadyPorts = ReadyPorts::new();
static TIMER_PORT: spin::Once<EvtchnPort> = spin::Once::new();
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static DELIVERED: AtomicU64 = AtomicU64::new(0);
static BLOCKS: AtomicU64 = AtomicU64::new(0);

/// Binds the timer's virtual interrupt and registers the upcall entry. Events stay masked
/// until the first wait.
pub fn initialise() -> Result<EvtchnPort, XenError> {
    let timer_port = event_channel::bind_virq(VIRQ_TIMER, 0)?;
    TIMER_PORT.call_once(|| timer_port);
    platform::set_callbacks()?;
    Ok(timer_port)
}

/// The Rust half of the event upcall: events are masked, every register is saved.
pub fn on_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    collect();
}

/// Moves pending, unmasked ports from shared_info into the ready set. Runs in the upcall or
/// with events masked, never both at once.
fn collect() {
    let summary = scan_pending(&SharedInfoBitmaps, |port| {
        READY.mark(port);
    });
    DELIVERED.fetch_add(u64::from(summary.delivered), Ordering::Relaxed);
}

/// Every port that fired since the last call, without waiting.
pub fn take_ready() -> ReadySnapshot {
    collect();
    READY.take()
}

/// True when some port fired that no one has taken yet (looked for now, without waiting).
pub fn any_ready() -> bool {
    collect();
    READY.any()
}

/// The timer's port, once [`initialise`] bound it.
pub fn timer_port() -> Option<EvtchnPort> {
    TIMER_PORT.get().copied()
}

/// Takes `port` alone if it fired, leaving other ports for the run loop.
pub fn take_port(port: EvtchnPort) -> bool {
    collect();
    READY.take_port(port)
}

/// Waits until some port is ready or Xen's clock reaches `deadline_ns` (`None`: no timeout).
/// Returns at once when a port is already ready. Takes nothing.
pub fn wait(deadline_ns: Option<u64>) {
    collect();
    if READY.any() {
        return;
    }
    block_until(deadline_ns);
}

/// Waits until `port` fires (taking it, and only it) or the deadline passes; true if it fired.
pub fn wait_for_port(port: EvtchnPort, deadline_ns: u64) -> bool {
    loop {
        if take_port(port) {
            return true;
        }
        if now_ns() >= deadline_ns {
            return false;
        }
        block_until(Some(deadline_ns));
    }
}

/// How much later than a deadline the one-shot timer is armed. Xen runs a timer up to its
/// `timer_slop` (50 us by default) early, and under TCG the system time read after the
/// wake-up can lag Xen's: a wake-up just before the deadline finds nothing due and costs the
/// run loop a second turn for the same deadline. A millisecond late is nothing to the timers
/// that wait here (the half-second liveness check, purges, publication, xenstore timeouts).
const TIMER_LATENESS_NS: u64 = 1_000_000;

/// One `SCHEDOP_block`, woken by any event or by the timer just after `deadline_ns`.
fn block_until(deadline_ns: Option<u64>) {
    if let Some(deadline) = deadline_ns {
        if now_ns() >= deadline {
            return;
        }
        if let Err(error) = platform::set_timer_op(deadline.saturating_add(TIMER_LATENESS_NS)) {
            // Without a timer, a bounded wait must not sleep: give the CPU away instead.
            log::warn!("set_timer_op({deadline}) failed: {error}; yielding");
            sched::yield_now();
            return;
        }
    }
    BLOCKS.fetch_add(1, Ordering::Relaxed);
    // Xen clears the upcall mask and blocks only if nothing is pending; on the way back the
    // upcall runs if something is. Then mask again: outside waits the kernel runs masked.
    sched::block();
    shared_info::set_upcall_mask(true);
    if deadline_ns.is_some() {
        // The one-shot timer belongs to this wait only: a deadline nothing waits for any more
        // must not fire later (0 cancels it).
        if let Err(error) = platform::set_timer_op(0) {
            log::debug!("cancelling the timer failed: {error}");
        }
    }
    collect();
}

/// Xen system time in nanoseconds (0 if shared_info is not mapped, which `start` rules out).
pub fn now_ns() -> u64 {
    time::system_time_ns().unwrap_or(0)
}

/// (upcalls taken, ports delivered, blocks) since boot.
#[cfg(feature = "lab")]
pub fn counters() -> (u64, u64, u64) {
    (
        UPCALLS.load(Ordering::Relaxed),
        DELIVERED.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    )
}
