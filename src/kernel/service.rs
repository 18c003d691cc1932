//! The service loop grantsvc runs until the toolstack stops it: xenstore presence, published counters, and the orderly shutdown.
//!
//! Each turn waits for an event or the next timer (never spinning), pumps the xenstore ring,
//! handles watch events and republishes the counters when they changed (rate-limited). A
//! `control/shutdown` request from `xl shutdown` / `xl reboot` is acknowledged by clearing the
//! node, then every peer session is closed (its grants unmapped) before the domain goes with
//! the matching shutdown reason.

use super::events;
use super::start::Kernel;
use super::xen::sched;
use super::xenstore::{WatchOwner, Xenstore, XenstoreError};
use super::{console, peers};
use alloc::string::{String, ToString};
use grantsvc::abi::sched::ShutdownReason;
use grantsvc::domain_control::{CounterPublisher, ServiceCounters, ServiceState, ShutdownRequest};
use grantsvc::events::TimerDeadlines;
use grantsvc::ids::DomId;
use xenstore::TransactionId;

/// Counters are rewritten at most this often.
const PUBLISH_INTERVAL_NS: u64 = 1_000_000_000;
/// The watch owner key of `control/shutdown`.
const CONTROL_OWNER: WatchOwner = 0;
const SHUTDOWN_TOKEN: &str = "grantsvc-control-shutdown";
const NONE: TransactionId = TransactionId::NONE;
/// Rounds of watch events handled in one turn before the loop looks at other work.
const WATCH_ROUNDS: usize = 16;

/// The run loop's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Publish counters held back by the rate limit.
    Publish,
}

/// The service's xenstore presence.
struct Presence {
    store: Xenstore,
    publisher: CounterPublisher,
    /// False once publishing failed in a way that will not heal (logged once).
    publishing: bool,
}

impl Presence {
    /// Reads who we are, announces the shutdown features and watches `control/shutdown`.
    fn announce(kernel: &Kernel) -> Result<Presence, XenstoreError> {
        let mut store = Xenstore::connect(kernel.boot_info)?;
        let domid_text = store.read_string(NONE, "domid")?;
        let own = domid_text.parse::<u16>().ok().and_then(DomId::new);
        let home = match own {
            Some(domid) => store.get_domain_path(domid)?,
            None => {
                log::warn!("xenstore: domid {domid_text:?} is not a domain id");
                String::from("(unknown)")
            }
        };
        log::info!("xenstore: domain {domid_text}, home {home}");
        for feature in ["control/feature-poweroff", "control/feature-reboot"] {
            if let Err(error) = store.write(NONE, feature, b"1") {
                log::warn!("xenstore: writing {feature}: {error}");
            }
        }
        store.watch("control/shutdown", SHUTDOWN_TOKEN, CONTROL_OWNER)?;
        log::info!("watching control/shutdown: xl shutdown and xl reboot stop the service cleanly");
        match own {
            Some(domid) => peers::start(&mut store, domid, &home),
            None => log::error!("xenstore: our domid is unknown: no peer is served"),
        }
        Ok(Presence {
            store,
            publisher: CounterPublisher::new(PUBLISH_INTERVAL_NS),
            publishing: true,
        })
    }

    /// Publishes what changed; returns when to try again if the rate limit held it back.
    fn publish(&mut self, counters: &ServiceCounters) -> Option<u64> {
        if !self.publishing {
            return None;
        }
        let now = events::now_ns();
        let nodes = match self.publisher.due(counters, now) {
            Ok(nodes) => nodes,
            Err(retry_at) => return Some(retry_at),
        };
        if nodes.is_empty() {
            return None;
        }
        for (path, value) in &nodes {
            if let Err(error) = self.store.write(NONE, path, value.as_bytes()) {
                log::error!(
                    "xenstore: publishing {path}: {error}; counters are no longer published"
                );
                self.publishing = false;
                return None;
            }
        }
        self.publisher.published(*counters, now);
        None
    }

    /// Hands watch events to their owners, also those that arrive meanwhile (peers' handlers
    /// wait for replies), for at most [`WATCH_ROUNDS`] rounds. Returns whether
    /// `control/shutdown` changed, and whether events are left for the next turn.
    fn dispatch_watch_events(&mut self) -> (bool, bool) {
        let mut control_changed = false;
        for _ in 0..WATCH_ROUNDS {
            let events = self.store.take_watch_events();
            if events.is_empty() {
                return (control_changed, false);
            }
            for (owner, event) in events {
                if owner == CONTROL_OWNER {
                    control_changed = true;
                } else if !peers::on_watch_event(&mut self.store, owner, &event) {
                    log::debug!("xenstore: watch event {} for nobody", event.path);
                }
            }
        }
        (control_changed, true)
    }

    /// A shutdown request, if `control/shutdown` changed and holds one.
    fn shutdown_request(&mut self, control_changed: bool) -> Option<ShutdownRequest> {
        if !control_changed {
            return None;
        }
        let value = match self.store.read(NONE, "control/shutdown") {
            Ok(value) => value,
            Err(error) if error.is_not_found() => return None,
            Err(error) => {
                log::warn!("xenstore: reading control/shutdown: {error}");
                return None;
            }
        };
        let request = ShutdownRequest::parse(&value);
        if request.is_none() && !value.is_empty() {
            log::warn!(
                "control/shutdown holds {:?}, not a request grantsvc knows; ignored",
                value.escape_ascii().to_string()
            );
        }
        request
    }

    /// Tells the toolstack the request was seen, by clearing the node (as Linux does).
    fn acknowledge(&mut self) {
        if let Err(error) = self.store.write(NONE, "control/shutdown", b"") {
            log::warn!("xenstore: acknowledging the shutdown request: {error}");
        }
    }
}

/// The counters as they are now.
fn current_counters(state: ServiceState) -> ServiceCounters {
    let mut counters = peers::counters();
    counters.state = state;
    counters
}

/// Runs the service until the toolstack stops it.
pub fn run(kernel: &Kernel) -> ! {
    log::info!("service running: waiting for events");
    let mut presence = match Presence::announce(kernel) {
        Ok(presence) => Some(presence),
        Err(error) => {
            log::error!(
                "xenstore unusable ({error}): running without it; only xl destroy stops the domain"
            );
            None
        }
    };
    let mut timers: TimerDeadlines<Timer> = TimerDeadlines::new();
    loop {
        let ready = events::take_ready();
        peers::on_events(&ready);
        let mut more_work = false;
        if let Some(presence) = presence.as_mut() {
            presence.store.pump();
            let (control_changed, events_left) = presence.dispatch_watch_events();
            more_work = events_left;
            if let Some(request) = presence.shutdown_request(control_changed) {
                match request.reason() {
                    Some(reason) => {
                        presence.acknowledge();
                        stop(presence, request, reason);
                    }
                    None => {
                        log::warn!(
                            "control/shutdown asks for {}: not supported, ignored",
                            request.name()
                        );
                        presence.acknowledge();
                    }
                }
            }
            timers.cancel(Timer::Publish);
            if let Some(retry_at) = presence.publish(&current_counters(ServiceState::Running)) {
                timers.arm(Timer::Publish, retry_at);
            }
        }
        let _expired = timers.take_expired(events::now_ns());
        if !more_work {
            let deadline = match (timers.earliest(), peers::deadline()) {
                (Some(timer), Some(peer)) => Some(timer.min(peer)),
                (timer, peer) => timer.or(peer),
            };
            events::wait(deadline);
        }
    }
}

/// The orderly stop: close every peer session (unmapping their grants), publish the final
/// counters, drain the console, then shut down with `reason`.
fn stop(presence: &mut Presence, request: ShutdownRequest, reason: ShutdownReason) -> ! {
    log::info!(
        "shutdown: the toolstack asks for {}; closing peer sessions",
        request.name()
    );
    presence.publish(&current_counters(ServiceState::Stopping));
    let closed = peers::close_all(Some(&mut presence.store));
    let counters = current_counters(ServiceState::Stopped);
    log::info!(
        "shutdown: {closed} peer session(s) closed; {} grant page(s) still mapped, {} unmapped since boot",
        counters.mapped_pages,
        counters.unmaps
    );
    presence.publish(&counters);
    log::info!("shutdown: {}", request.name());
    if !console::drain() {
        log::warn!("console not drained before shutdown");
    }
    sched::shutdown(reason)
}
