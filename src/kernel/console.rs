//! The PV console: the output ring of the console page, notified through its event channel.
//!
//! Lines go into the ring Xen's console daemon (xenconsoled) reads, so they show in `xl console`
//! and the daemon's log. A full ring makes the writer notify and wait, bounded; if the daemon
//! stops consuming the console is marked stalled and later output is dropped (and counted)
//! instead of hanging the kernel. Before a self-initiated shutdown, `drain` waits until the
//! daemon has taken everything. Before the ring is known, output goes to `console_io`, which
//! a release build of Xen refuses for a domU: it is a best-effort fallback only.

use super::xen::shared_region::SharedRegion;
use super::xen::{event_channel, platform, sched, time};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use grantsvc::abi::console::{OFFSET_OUT, OFFSET_OUT_CONS, OFFSET_OUT_PROD, OUT_RING_SIZE};
use grantsvc::console_ring::{ByteRing, RingIndices};
use grantsvc::ids::EvtchnPort;
use grantsvc::shared_memory::SharedMemory;

/// How long a writer or `drain` waits for the daemon to make progress.
const PATIENCE_NS: u64 = 3_000_000_000;
/// The same patience counted in yields, for when Xen's time is not available.
const PATIENCE_YIELDS: u32 = 200_000;

/// The console page and its event channel.
struct ConsoleRing {
    page: SharedRegion,
    port: EvtchnPort,
}

static RING: spin::Once<ConsoleRing> = spin::Once::new();
/// Serialises whole lines; the panic path writes without it.
static LINE_LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// Set when the daemon stopped consuming: writes stop waiting for space.
static STALLED: AtomicBool = AtomicBool::new(false);
/// Set when the ring indices were found inconsistent: the ring is no longer used.
static BROKEN: AtomicBool = AtomicBool::new(false);
static DROPPED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Starts writing to the console ring in `page`, notifying `port`.
pub fn install(page: SharedRegion, port: EvtchnPort) {
    RING.call_once(|| ConsoleRing { page, port });
}

/// Bytes dropped because the ring was full and the daemon did not consume in time.
#[cfg(feature = "lab")]
pub fn dropped_bytes() -> u64 {
    DROPPED_BYTES.load(Ordering::Relaxed)
}

/// The out ring's (consumer, producer), if the ring is installed.
#[cfg(feature = "lab")]
pub fn out_indices() -> Option<RingIndices> {
    let ring = RING.get()?;
    Some(RingIndices {
        consumer: ring.page.load_u32(OFFSET_OUT_CONS).ok()?,
        producer: ring.page.load_u32(OFFSET_OUT_PROD).ok()?,
    })
}

/// The out ring's geometry (checked at compile time).
const OUT_RING: ByteRing = match ByteRing::new(OUT_RING_SIZE as u32) {
    Some(ring) => ring,
    None => panic!("the console out ring size is a power of two"),
};

/// Waits until `progress` says yes, yielding the CPU; false if PATIENCE passed first.
fn wait_for(mut progress: impl FnMut() -> bool) -> bool {
    let deadline = time::system_time_ns().map(|now| now.saturating_add(PATIENCE_NS));
    let mut yields = 0u32;
    loop {
        if progress() {
            return true;
        }
        match (deadline, time::system_time_ns()) {
            (Some(deadline), Some(now)) if now >= deadline => return false,
            (None, _) | (_, None) if yields >= PATIENCE_YIELDS => return false,
            _ => {}
        }
        yields = yields.saturating_add(1);
        sched::yield_now();
    }
}

impl ConsoleRing {
    fn indices(&self) -> Option<RingIndices> {
        Some(RingIndices {
            consumer: self.page.load_u32(OFFSET_OUT_CONS).ok()?,
            producer: self.page.load_u32(OFFSET_OUT_PROD).ok()?,
        })
    }

    fn notify(&self) {
        // Nothing useful to do if the notification fails: the daemon also polls.
        let _ = event_channel::send(self.port);
    }

    /// Puts `bytes` into the ring, waiting (bounded) for space.
    fn write(&self, mut bytes: &[u8]) {
        let ring = OUT_RING;
        while !bytes.is_empty() && !BROKEN.load(Ordering::Relaxed) {
            let Some(indices) = self.indices() else {
                BROKEN.store(true, Ordering::Relaxed);
                break;
            };
            let Ok(plan) = ring.plan_write(indices, bytes.len()) else {
                BROKEN.store(true, Ordering::Relaxed);
                break;
            };
            if plan.length() == 0 {
                if STALLED.load(Ordering::Relaxed) {
                    break;
                }
                self.notify();
                let consumer = indices.consumer;
                let moved = wait_for(|| self.indices().is_none_or(|now| now.consumer != consumer));
                if !moved {
                    STALLED.store(true, Ordering::Relaxed);
                    break;
                }
                continue;
            }
            let (first, rest) = bytes.split_at(plan.first.1);
            let (second, remaining) = rest.split_at(plan.second.1);
            let copied = self
                .page
                .write_bytes(OFFSET_OUT + plan.first.0, first)
                .is_ok()
                && self
                    .page
                    .write_bytes(OFFSET_OUT + plan.second.0, second)
                    .is_ok();
            // The release store publishes the bytes before the new producer index.
            if !copied
                || self
                    .page
                    .store_u32(OFFSET_OUT_PROD, plan.new_index)
                    .is_err()
            {
                BROKEN.store(true, Ordering::Relaxed);
                break;
            }
            if STALLED.load(Ordering::Relaxed) && indices.consumer != indices.producer {
                // The daemon took bytes since it stalled: trust it again.
                STALLED.store(false, Ordering::Relaxed);
            }
            bytes = remaining;
        }
        DROPPED_BYTES.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.notify();
    }

    /// Waits until the daemon has consumed everything; false if it did not in time.
    fn drain(&self) -> bool {
        loop {
            let Some(indices) = self.indices() else {
                return false;
            };
            match OUT_RING.queued(indices) {
                Err(_) => return false,
                Ok(0) => return true,
                Ok(_) => {}
            }
            self.notify();
            let consumer = indices.consumer;
            let moved = wait_for(|| self.indices().is_none_or(|now| now.consumer != consumer));
            if !moved {
                return false;
            }
        }
    }
}

/// Writes raw bytes: to the ring once installed, to `console_io` before.
fn write_unlocked(bytes: &[u8]) {
    match RING.get() {
        Some(ring) if !BROKEN.load(Ordering::Relaxed) => ring.write(bytes),
        _ => {
            let _ = platform::console_io_write(bytes);
        }
    }
}

/// A `fmt::Write` sink over the console, used with the line lock held (or by the panic path).
struct Sink;

impl Write for Sink {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_unlocked(text.as_bytes());
        Ok(())
    }
}

/// Writes one formatted message as a unit (callers end it with a newline).
pub fn write_fmt(arguments: fmt::Arguments<'_>) {
    let _line = LINE_LOCK.lock();
    let _ = Sink.write_fmt(arguments);
}

/// Writes a message without taking the line lock: for the panic and trap paths, which may
/// have interrupted a writer holding it. Also mirrored to `console_io` for Xen's own log
/// (debug builds of Xen print it).
pub fn write_emergency(arguments: fmt::Arguments<'_>) {
    let _ = Sink.write_fmt(arguments);
    if RING.get().is_some() {
        let mut mirror = ConsoleIoSink;
        let _ = mirror.write_fmt(arguments);
    }
}

/// `console_io` as a `fmt::Write` sink.
struct ConsoleIoSink;

impl Write for ConsoleIoSink {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let _ = platform::console_io_write(text.as_bytes());
        Ok(())
    }
}

/// Waits (bounded) until the console daemon has read everything written; true if it did.
pub fn drain() -> bool {
    RING.get().is_some_and(ConsoleRing::drain)
}
