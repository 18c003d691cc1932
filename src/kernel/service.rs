//! The service grantsvc runs until the toolstack stops it: one value that owns the xenstore connection, the pmap handle and every protocol's sessions, and the loop that drives it.
//!
//! There are no service-wide globals and no lock order to remember: the [`Service`] value
//! owns what the loop needs and lends it down (to a protocol, then to the executor); nothing
//! calls back up. Each turn takes the ports that fired, hands them to the sessions, handles
//! queued watch events, runs the liveness check when due, and republishes the counters when
//! they changed (rate-limited). It blocks only when nothing is queued - no fired port, no watch
//! event or reply already read - until the earliest deadline something waits for; work that
//! only a timer's expiry found is logged as a warning. Once serving, the loop waits for no
//! xenstore round trip: the backend-root scans, vchan discovery, the read of
//! `control/shutdown` and the sessions' node reads, writes and transactions are requests in
//! flight whose replies are handed over as they arrive, so no peer waits for another's; only
//! start-up and the orderly stop's last flush wait. A `control/shutdown` request from
//! `xl shutdown` / `xl reboot` is acknowledged by clearing the node, then every peer session
//! is closed (its grants unmapped) before the domain goes with the matching shutdown reason.
// Driven by peers (their watch events, the replies carrying their nodes): nothing here may panic.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::block_backend::{self, BlockBackend};
use super::boot::heap;
use super::booted::Kernel;
use super::console;
use super::event_wait;
use super::peer_executor::PmapHandle;
use super::share_backend::{self, ShareBackend};
use super::store_connection::{WatchOwner, Xenstore, XenstoreError};
use super::vchan_client::{self, VchanClient};
use super::xen::sched;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::abi::sched::ShutdownReason;
use grantsvc::domain_control::{ShutdownRequest, ShutdownWatch, CONTROL_SHUTDOWN};
use grantsvc::event_delivery::{
    found_only_at_timer, next_wait, NextWait, QueuedWork, ReadySnapshot, TimerDeadlines,
};
use grantsvc::ids::DomId;
use grantsvc::peer::counters::{CounterPublisher, ServiceCounters, ServiceState};
use grantsvc::peer::liveness::LivenessSchedule;
use xenstore::{Operation, RequestId, TransactionId};

/// Counters are rewritten at most this often.
const PUBLISH_INTERVAL_NS: u64 = 1_000_000_000;
/// The watch owner key of `control/shutdown`.
const CONTROL_OWNER: WatchOwner = 0;
/// The watch owner key of `@releaseDomain`.
const RELEASE_OWNER: WatchOwner = 0x5245_0001;
const SHUTDOWN_TOKEN: &str = "grantsvc-control-shutdown";
const RELEASE_TOKEN: &str = "grantsvc-release-domain";
/// How long start-up waits for `@releaseDomain`'s registration event.
const RELEASE_PROBE_NS: u64 = 200_000_000;
const NONE: TransactionId = TransactionId::NONE;
/// How long the orderly stop waits for its last writes to be answered.
const FLUSH_PATIENCE_NS: u64 = 2_000_000_000;
/// Rounds of watch events handled in one turn before the loop looks at other work.
const WATCH_ROUNDS: usize = 16;

/// The run loop's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// Publish counters held back by the rate limit.
    Publish,
}

/// Everything the service owns.
pub struct Service {
    store: Xenstore,
    /// `None` when the pmap could not be set up: no peer is served.
    pmap: Option<PmapHandle>,
    share: Option<ShareBackend>,
    vchan: Option<VchanClient>,
    block: Option<BlockBackend>,
    publisher: CounterPublisher,
    /// False once publishing failed in a way that will not heal (logged once).
    publishing: bool,
    liveness: LivenessSchedule,
    timers: TimerDeadlines<Timer>,
    /// Work was left for the next turn.
    unfinished: bool,
    /// The counters' writes in flight (nothing waits for them).
    publish_requests: Vec<RequestId>,
    /// `control/shutdown`'s read and acknowledgements in flight.
    shutdown: ShutdownWatch,
    /// Turns of the loop since boot (`stats` answers it: an idle service must not spin).
    turns: u64,
}

/// What one turn saw, for the next turn's decision.
#[derive(Clone, Copy, Debug, Default)]
struct Wake {
    /// The loop blocked until this deadline.
    deadline: Option<u64>,
}

impl Service {
    /// Reads who we are, announces the shutdown features, watches `control/shutdown` and
    /// `@releaseDomain`, and starts the peer protocols.
    fn start(kernel: &Kernel) -> Result<Service, XenstoreError> {
        let mut store = Xenstore::connect(kernel.boot_info)?;
        let domid_text = store.read_string(NONE, "domid")?;
        let own = domid_text.parse::<u16>().ok().and_then(DomId::new);
        let home = match own {
            Some(domid) => store.get_domain_path(domid)?,
            None => {
                log::warn!(
                    "xenstore: domid \"{}\" is not a domain id",
                    domid_text.as_bytes().escape_ascii()
                );
                String::from("(unknown)")
            }
        };
        log::info!("xenstore: domain {domid_text}, home {home}");
        for feature in ["control/feature-poweroff", "control/feature-reboot"] {
            if let Err(error) = store.write(NONE, feature, b"1") {
                log::warn!("xenstore: writing {feature}: {error}");
            }
        }
        store.watch(CONTROL_SHUTDOWN, SHUTDOWN_TOKEN, CONTROL_OWNER)?;
        log::info!("watching control/shutdown: xl shutdown and xl reboot stop the service cleanly");
        probe_release_domain(&mut store);
        let pmap = Some(kernel.pmap);
        if pmap.is_none() {
            log::error!("no pmap: no peer is served");
        }
        let (share, vchan, block) = match (own, pmap) {
            (Some(domid), Some(_)) => (
                ShareBackend::start(&mut store, domid, &home),
                VchanClient::start(&mut store, domid),
                BlockBackend::start(&mut store, domid, &home, heap::frame_heap_bytes() as u64),
            ),
            (None, _) => {
                log::error!("xenstore: our domid is unknown: no peer is served");
                (None, None, None)
            }
            _ => (None, None, None),
        };
        Ok(Service {
            store,
            pmap,
            share,
            vchan,
            block,
            publisher: CounterPublisher::new(PUBLISH_INTERVAL_NS),
            publishing: true,
            liveness: LivenessSchedule::default(),
            timers: TimerDeadlines::new(),
            unfinished: false,
            publish_requests: Vec::new(),
            shutdown: ShutdownWatch::default(),
            turns: 0,
        })
    }

    /// The counters as they are now.
    fn counters(&self, state: ServiceState) -> ServiceCounters {
        let mut counters = ServiceCounters::new();
        counters.state = state;
        if let Some(share) = &self.share {
            counters.peers += share.sessions() as u64;
            counters.faults += share.faults();
        }
        if let Some(vchan) = &self.vchan {
            counters.peers += vchan.sessions() as u64;
            counters.faults += vchan.faults();
        }
        if let Some(block) = &self.block {
            counters.peers += block.sessions() as u64;
            counters.faults += block.faults();
        }
        if let Some(pmap) = self.pmap {
            let stats = pmap.lock().stats();
            counters.mapped_regions = stats.live_regions;
            counters.mapped_pages = stats.live_grant_pages;
            counters.maps = stats.maps;
            counters.unmaps = stats.unmaps;
        }
        let (in_use, peak) = heap::in_use_and_peak();
        counters.heap_in_use = in_use as u64;
        counters.heap_peak = peak as u64;
        counters.loop_turns = self.turns;
        counters
    }

    /// Sessions with a bound port, over every protocol.
    fn bound_sessions(&self) -> usize {
        self.share.as_ref().map_or(0, ShareBackend::bound_sessions)
            + self.vchan.as_ref().map_or(0, VchanClient::bound_sessions)
            + self.block.as_ref().map_or(0, BlockBackend::bound_sessions)
    }

    /// Publishes what changed; arms the publish timer if the rate limit held it back.
    fn publish(&mut self, counters: &ServiceCounters) {
        self.timers.cancel(Timer::Publish);
        if !self.publishing {
            return;
        }
        let now = event_wait::now_ns();
        let nodes = match self.publisher.due(counters, now) {
            Ok(nodes) => nodes,
            Err(retry_at) => {
                self.timers.arm(Timer::Publish, retry_at);
                return;
            }
        };
        if nodes.is_empty() {
            return;
        }
        // In flight together; a refusal is found when its reply comes (publish_replies).
        for (path, value) in &nodes {
            let operation = Operation::Write {
                path,
                value: value.as_bytes(),
            };
            match self.store.submit(NONE, &operation) {
                Ok(id) => self.publish_requests.push(id),
                Err(error) => {
                    log::error!(
                        "xenstore: publishing {path}: {error}; counters are no longer published"
                    );
                    self.publishing = false;
                    return;
                }
            }
        }
        self.publisher.published(*counters, now);
    }

    /// Takes the replies to the counters' writes; a refusal stops publishing (logged once).
    fn publish_replies(&mut self) {
        let mut refused = None;
        self.publish_requests
            .retain(|id| match self.store.take_reply(*id) {
                None => true,
                Some(Ok(_)) => false,
                Some(Err(error)) => {
                    refused.get_or_insert(error);
                    false
                }
            });
        if let Some(error) = refused {
            if self.publishing {
                log::error!(
                    "xenstore: publishing the counters: {error}; counters are no longer published"
                );
            }
            self.publishing = false;
        }
    }

    /// Hands fired ports to the sessions that own them.
    fn on_ports(&mut self, ready: &ReadySnapshot) {
        let Some(pmap) = self.pmap else {
            return;
        };
        let counters = self.counters(ServiceState::Running);
        if let Some(share) = self.share.as_mut() {
            share.on_ports(&mut self.store, pmap, ready, &counters);
        }
        if let Some(vchan) = self.vchan.as_mut() {
            vchan.on_ports(pmap, ready, &counters);
        }
        if let Some(block) = self.block.as_mut() {
            block.on_ports(&mut self.store, pmap, ready, &counters);
        }
    }

    /// The liveness check over every protocol's sessions.
    fn check_liveness(&mut self) {
        let Some(pmap) = self.pmap else {
            return;
        };
        let counters = self.counters(ServiceState::Running);
        if let Some(share) = self.share.as_mut() {
            share.check_liveness(&mut self.store, pmap, &counters);
        }
        if let Some(vchan) = self.vchan.as_mut() {
            vchan.check_liveness(pmap, &counters);
        }
        if let Some(block) = self.block.as_mut() {
            block.check_liveness(&mut self.store, pmap, &counters);
        }
    }

    /// Hands watch events to their owners, also those that arrive meanwhile, for at most
    /// [`WATCH_ROUNDS`] rounds; sets `unfinished` when events are left for the next turn.
    /// Nothing here waits: what the events call for is read with requests in flight.
    fn dispatch_watch_events(&mut self) {
        self.unfinished = true;
        for _ in 0..WATCH_ROUNDS {
            let events = self.store.take_watch_events();
            if events.is_empty() {
                self.unfinished = false;
                break;
            }
            for (owner, event) in events {
                if owner == CONTROL_OWNER {
                    self.shutdown.changed(&mut self.store);
                } else if owner == RELEASE_OWNER {
                    // Some domain died: look at every session's channel now.
                    self.check_liveness();
                } else if !self.on_peer_watch_event(owner, &event.path, &event.token) {
                    log::debug!("xenstore: watch event {} for nobody", event.path);
                }
            }
        }
    }

    /// Hands a watch event to the protocol that registered it; false if none did.
    fn on_peer_watch_event(&mut self, owner: WatchOwner, path: &str, token: &str) -> bool {
        match (
            self.share.as_mut(),
            self.vchan.as_mut(),
            self.block.as_mut(),
        ) {
            (Some(share), _, _) if share_backend::owns(owner) => {
                share.on_watch_event(&mut self.store, owner, path, token);
                true
            }
            (_, Some(vchan), _) if vchan_client::owns(owner) => {
                vchan.on_watch_event(&mut self.store, path);
                true
            }
            (_, _, Some(block)) if block_backend::owns(owner) => {
                block.on_watch_event(&mut self.store, owner, path, token);
                true
            }
            _ => false,
        }
    }

    /// What is queued now (the store pumped first, so nothing it holds is missed).
    fn queued_work(&mut self) -> QueuedWork {
        self.store.pump();
        let share_replies = self
            .share
            .as_ref()
            .is_some_and(|share| share.has_replies(&self.store));
        let block_replies = self
            .block
            .as_ref()
            .is_some_and(|block| block.has_replies(&self.store));
        let vchan_replies = self
            .vchan
            .as_ref()
            .is_some_and(|vchan| vchan.has_replies(&self.store));
        let block_backlog = self.block.as_ref().is_some_and(BlockBackend::has_backlog);
        let shutdown_replies = self.shutdown.has_replies(&self.store);
        let publish_replies = self
            .publish_requests
            .iter()
            .any(|id| self.store.has_reply(*id));
        QueuedWork {
            ports_ready: event_wait::any_ready(),
            watch_events: self.store.queued_watch_events(),
            replies: usize::from(share_replies)
                + usize::from(vchan_replies)
                + usize::from(block_replies)
                + usize::from(publish_replies)
                + usize::from(shutdown_replies),
            unfinished: self.unfinished || block_backlog,
            timers_expired: 0,
        }
    }

    /// Who has replies waiting (for the warning about work found only at a timer's expiry).
    fn reply_sources(&self) -> String {
        let store = &self.store;
        let sources = [
            (
                "grant-share",
                self.share
                    .as_ref()
                    .is_some_and(|share| share.has_replies(store)),
            ),
            (
                "vchan",
                self.vchan
                    .as_ref()
                    .is_some_and(|vchan| vchan.has_replies(store)),
            ),
            (
                "blkif",
                self.block
                    .as_ref()
                    .is_some_and(|block| block.has_replies(store)),
            ),
            (
                "counters",
                self.publish_requests.iter().any(|id| store.has_reply(*id)),
            ),
            ("control/shutdown", self.shutdown.has_replies(store)),
        ];
        let named: Vec<&str> = sources
            .iter()
            .filter(|(_, waiting)| *waiting)
            .map(|(name, _)| *name)
            .collect();
        if named.is_empty() {
            String::from("nobody")
        } else {
            named.join(", ")
        }
    }

    /// Hands the replies that arrived to whoever waits for them (`now`: the turn's clock);
    /// returns the shutdown request `control/shutdown` was found to hold, if any.
    fn on_replies(&mut self, now: u64) -> Option<ShutdownRequest> {
        self.publish_replies();
        let request = self.shutdown.take_replies(&mut self.store);
        let Some(pmap) = self.pmap else {
            return request;
        };
        let counters = self.counters(ServiceState::Running);
        if let Some(share) = self.share.as_mut() {
            share.on_replies(&mut self.store, pmap, &counters);
        }
        if let Some(vchan) = self.vchan.as_mut() {
            vchan.on_replies(&mut self.store, pmap, &counters);
        }
        if let Some(block) = self.block.as_mut() {
            block.on_replies(&mut self.store, pmap, &counters, now);
        }
        request
    }

    /// One turn of the loop; returns when to block until, or `None` to run again at once.
    fn turn(&mut self, wake: Wake) -> NextWait {
        self.turns += 1;
        let ready = event_wait::take_ready();
        let now = event_wait::now_ns();
        if wake.deadline.is_some_and(|deadline| now >= deadline) {
            let port_fired = ready
                .ports()
                .any(|port| Some(port) != event_wait::timer_port());
            let work = self.queued_work();
            if found_only_at_timer(port_fired, true, &work) {
                log::warn!(
                    "service: work found only at a timer's expiry ({} watch event(s), replies for {}, unfinished {}): a wake-up was lost",
                    work.watch_events,
                    self.reply_sources(),
                    work.unfinished
                );
            }
        }
        self.on_ports(&ready);
        self.store.pump();
        let requested = self.on_replies(now);
        self.on_shutdown_request(requested);
        self.dispatch_watch_events();
        self.store.pump();
        let requested = self.on_replies(now);
        self.on_shutdown_request(requested);
        if self
            .liveness
            .due(event_wait::now_ns(), self.bound_sessions())
        {
            self.check_liveness();
        }
        let counters = self.counters(ServiceState::Running);
        self.publish(&counters);
        if let Some(block) = self.block.as_mut() {
            block.on_timers(&mut self.store, event_wait::now_ns());
        }
        // A timer armed in this turn for a moment that has passed since (the publish timer,
        // when the clock moved past the rate limit's end between its check and here, as a
        // wake-up just before the deadline makes likely) is taken out of the deadlines: its
        // work needs another turn at once, or its wake-up is lost for good (the counters' last
        // change would stay unpublished until some unrelated event).
        let expired = self.timers.take_expired(event_wait::now_ns());
        let mut work = self.queued_work();
        work.timers_expired = expired.len();
        let block_timers = self.block.as_ref().and_then(BlockBackend::deadline);
        next_wait(
            &work,
            &[
                self.timers.earliest(),
                self.liveness.deadline(),
                block_timers,
            ],
        )
    }

    /// Acknowledges a request found in `control/shutdown` and carries it out (the orderly
    /// stop) if grantsvc supports it.
    fn on_shutdown_request(&mut self, request: Option<ShutdownRequest>) {
        let Some(request) = request else {
            return;
        };
        self.shutdown.acknowledge(&mut self.store);
        match request.reason() {
            Some(reason) => self.stop(request, reason),
            None => log::warn!(
                "control/shutdown asks for {}: not supported, ignored",
                request.name()
            ),
        }
    }

    /// Runs the loop until the toolstack stops the domain.
    fn run(mut self) -> ! {
        let mut wake = Wake::default();
        loop {
            wake = match self.turn(wake) {
                NextWait::RunAgain => Wake::default(),
                NextWait::Block { until } => {
                    event_wait::wait(until);
                    Wake { deadline: until }
                }
            };
        }
    }

    /// The orderly stop: close every peer session (unmapping their grants), publish the final
    /// counters, drain the console, then shut down with `reason`.
    fn stop(&mut self, request: ShutdownRequest, reason: ShutdownReason) -> ! {
        log::info!(
            "shutdown: the toolstack asks for {}; closing peer sessions",
            request.name()
        );
        let counters = self.counters(ServiceState::Stopping);
        self.publish(&counters);
        let mut closed = 0;
        if let Some(pmap) = self.pmap {
            if let Some(share) = self.share.as_mut() {
                closed += share.close_all(Some(&mut self.store), pmap, &counters);
            }
            if let Some(vchan) = self.vchan.as_mut() {
                closed += vchan.close_all(pmap, &counters);
            }
            if let Some(block) = self.block.as_mut() {
                closed += block.close_all(Some(&mut self.store), pmap, &counters);
            }
        }
        let counters = self.counters(ServiceState::Stopped);
        log::info!(
            "shutdown: {closed} peer session(s) closed; {} grant page(s) still mapped, {} unmapped since boot",
            counters.mapped_pages,
            counters.unmaps
        );
        self.publish(&counters);
        // The sessions' last writes and the final counters are in flight: let them land.
        let deadline = event_wait::now_ns().saturating_add(FLUSH_PATIENCE_NS);
        if !self.store.flush(deadline) {
            log::warn!("shutdown: xenstore did not answer every last write in time");
        }
        self.publish_replies();
        log::info!("shutdown: {}", request.name());
        if !console::drain() {
            log::warn!("console not drained before shutdown");
        }
        sched::shutdown(reason)
    }
}

/// Watches `@releaseDomain` and logs whether its registration event arrives: xenstored sends
/// it (and later deaths) only to domains its permissions admit (XSA-115). Either way, dead
/// peers are found by the liveness check; the watch only makes it immediate.
fn probe_release_domain(store: &mut Xenstore) {
    if let Err(error) = store.watch("@releaseDomain", RELEASE_TOKEN, RELEASE_OWNER) {
        log::warn!("xenstore: watching @releaseDomain: {error}; dead peers are found by the liveness check alone");
        return;
    }
    let deadline = event_wait::now_ns().saturating_add(RELEASE_PROBE_NS);
    if store.wait_for_watch_event(RELEASE_OWNER, deadline) {
        log::info!("xenstore: grantsvc receives @releaseDomain: dead peers are noticed at once (and by the liveness check)");
    } else {
        log::warn!("xenstore: grantsvc does not receive @releaseDomain (the toolstack has not admitted it, XSA-115): dead peers are found by the liveness check alone");
    }
}

/// Runs the service until the toolstack stops it.
pub fn run(kernel: &Kernel) -> ! {
    log::info!("service running: waiting for events");
    match Service::start(kernel) {
        Ok(service) => service.run(),
        Err(error) => {
            log::error!(
                "xenstore unusable ({error}): running without it; only xl destroy stops the domain"
            );
            loop {
                event_wait::wait(None);
                let _ = event_wait::take_ready();
            }
        }
    }
}
