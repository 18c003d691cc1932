//! One virtual block device as grantsvc serves it (the backend side): the xenbus handshake, the rings and the data path, events in, actions out, everything unmapped on every way out.
//!
//! The handshake follows Linux `xen-blkback/xenbus.c`:
//! - at creation the offer (`feature-max-indirect-segments`, `max-ring-page-order`,
//!   `multi-queue-max-queues`) and `hotplug-status`, then `state` = InitWait;
//! - at frontend Initialised or Connected its nodes are read once and checked
//!   ([`FrontendConfig::decode`]), each queue's ring mapped through the framework, each event
//!   channel bound, the disk's nodes written in one transaction, then `state` = Connected;
//! - at frontend Closing (or Closed) the requests still on the rings are answered and the
//!   frontend is signalled, and the rings are served a little longer (the drain, see
//!   [`DRAIN_QUIET_MILLISECONDS`]); then everything is unmapped and `state` = Closing; at
//!   Closed, `state` = Closed, and the session ends if the toolstack has set `online` = 0 (a
//!   detach), or waits for the frontend to come back (Initialising: InitWait again, a
//!   reconnect);
//! - a fault of the frontend ends the device: everything unmapped, an `error` node, `state` =
//!   Closed (so that `xl block-detach` finds it closed at once).
//!
//! The data path maps each batch's data grants itself (through the pmap lock it holds), one
//! region per access, unmapped after the copy, or through the persistent-grant cache when
//! both ends offered `feature-persistent`. Rings and persistent grants are unmapped before
//! any `state` write that tells the frontend the device let go.

use super::backend_nodes::{at_connect, before_init_wait, DiskDescription, ToolstackRequest};
use super::frontend_nodes::{BackendOffer, FrontendConfig, FrontendNodes};
use super::grant_pages::{
    BatchPages, IndirectPages, PersistentIndirectPages, PersistentPages, SingleGrants,
};
use super::persistent_grants::{
    PersistentGrants, DEFAULT_CAPACITY, DEFAULT_IDLE_MILLISECONDS, PURGE_INTERVAL_MILLISECONDS,
};
use super::protocol::{BlkConnected, BlkEnding, BlkFaultKind, BlkMapping, BlkProtocol};
use super::ram_disk::{MemoryBudget, RamDisk};
use super::ring::{BackRing, RingFault};
use super::service::{answer_batch, publish_responses, take_batch, DeviceCounters};
use super::validate::{DiskLimits, DEFAULT_MAX_INDIRECT_SEGMENTS};
use crate::abi::blkif::{ring_slots, MAX_RING_PAGE_ORDER};
use crate::ids::{DomId, EvtchnPort};
use crate::peer::action::{self, node_value, PeerAction, PeerEvent, PeerNodes};
use crate::peer::counters::ServiceCounters;
use crate::peer::device_id::DeviceId;
use crate::peer::fault::PeerFault;
use crate::peer::protocol::PeerSession;
use crate::peer::xenbus_state::XenbusState;
use crate::pmap::{GrantMapping, PmapLock};
use crate::shared_memory::SharedMemory;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

/// Something that happened that concerns this device.
pub type BlkEvent<'a, L> = PeerEvent<'a, BlkProtocol, GrantMapping<L>>;
/// What the caller must do, in order.
pub type BlkAction<L> = PeerAction<BlkProtocol, GrantMapping<L>>;
/// Why a session ended.
pub type CloseReason = action::CloseReason<BlkProtocol>;
/// The RAM disks' memory, shared by every device of the service.
pub type SharedBudget = Rc<RefCell<MemoryBudget>>;

/// What grantsvc offers every frontend. One queue: grantsvc runs on one vcpu, so more queues
/// would add rings to poll without adding parallelism.
pub const OFFER: BackendOffer = BackendOffer {
    max_ring_page_order: MAX_RING_PAGE_ORDER,
    max_queues: 1,
    max_indirect_segments: DEFAULT_MAX_INDIRECT_SEGMENTS,
};

/// The frontend nodes read at connect (one queue: its ring nodes are in the device directory).
pub const FRONTEND_NODES: [&str; 22] = [
    "protocol",
    "feature-persistent",
    "multi-queue-num-queues",
    "ring-page-order",
    "event-channel",
    "ring-ref",
    "ring-ref0",
    "ring-ref1",
    "ring-ref2",
    "ring-ref3",
    "ring-ref4",
    "ring-ref5",
    "ring-ref6",
    "ring-ref7",
    "ring-ref8",
    "ring-ref9",
    "ring-ref10",
    "ring-ref11",
    "ring-ref12",
    "ring-ref13",
    "ring-ref14",
    "ring-ref15",
];

/// A session's next phase and the actions that take it there.
type Transition<L> = (Phase<L>, Vec<BlkAction<L>>);
/// What one serve of the rings asked for, with how many requests it answered.
type Served<L> = (Vec<BlkAction<L>>, u64);

/// Requests taken off a ring per batch (one ring page's worth): their data grants are mapped
/// together.
pub const BATCH_REQUESTS: usize = 32;
/// Requests served per queue per wake-up before other devices get their turn.
pub const REQUESTS_PER_WAKE: usize = 512;
// One wake-up can take a whole ring of the largest order offered, which the answer to the
// requests left at close relies on (`Session::answer_leftovers`).
const _: () = assert!(match ring_slots(MAX_RING_PAGE_ORDER) {
    Some(slots) => slots as usize <= REQUESTS_PER_WAKE,
    None => false,
});
/// Refused requests logged per device (the rest are only counted).
const LOGGED_REFUSALS: u64 = 16;
/// How long a device keeps serving its rings after the frontend closed and after the last
/// request the drain answered. Linux blkfront stops its queues as it closes without waiting
/// for a submission already under way, and a write that meets a stopped queue waits there
/// until an event restarts it (the interrupt handler restarts stopped queues on every event,
/// hence the signal grantsvc sends at the close). Either way the write lands on the ring
/// after the close and must still be answered there: blkfront has no request timeout, and
/// the writer would wait for ever (as would the disk's removal). In the lab, 3 of 30
/// detaches during `dd` answered such a write; without the drain about 1 in 20 hung.
pub const DRAIN_QUIET_MILLISECONDS: u64 = 250;
/// The longest a drain lasts, however many requests the frontend keeps sending.
pub const DRAIN_MAX_MILLISECONDS: u64 = 2_000;

/// A connected queue.
struct Queue<L: PmapLock> {
    ring: BackRing<GrantMapping<L>>,
    port: EvtchnPort,
    /// The persistent-grant cache, when both ends offered the feature.
    persistent: Option<PersistentGrants<GrantMapping<L>>>,
}

/// The session's phase, carrying what each holds mapped.
enum Phase<L: PmapLock> {
    /// InitWait written; waiting for the frontend to reach Initialised.
    WaitingForFrontend,
    /// Waiting for the frontend's nodes.
    ReadingNodes,
    /// Mapping the queues' rings, one after the other.
    Mapping {
        config: FrontendConfig,
        rings: Vec<GrantMapping<L>>,
    },
    /// Binding the queues' event channels; every ring is mapped.
    Binding {
        config: FrontendConfig,
        rings: Vec<GrantMapping<L>>,
        ports: Vec<EvtchnPort>,
    },
    /// Serving.
    Connected { queues: Vec<Queue<L>> },
    /// The frontend closed: the rings are still served until the drain ends.
    Draining(Drain<L>),
    /// The frontend closed; nothing is mapped; the disk is kept for a reconnect.
    Disconnected,
    /// Ended; holds nothing.
    Closed(CloseReason),
}

/// A closed frontend's rings, still served for what it puts there as it closes.
struct Drain<L: PmapLock> {
    queues: Vec<Queue<L>>,
    /// The frontend's state to mirror when the drain ends (Closing or Closed).
    state: XenbusState,
    /// The drain ends at the first wake-up from this time on.
    quiet_until_ms: u64,
    /// When the frontend closed (the drain began): a late request's log line says how late it
    /// came, the evidence for [`DRAIN_QUIET_MILLISECONDS`].
    began_ms: u64,
}

impl<L: PmapLock> Drain<L> {
    /// The latest end, however many requests keep coming (the drain's bound).
    fn ends_by_ms(&self) -> u64 {
        self.began_ms.saturating_add(DRAIN_MAX_MILLISECONDS)
    }
}

impl<L: PmapLock> Phase<L> {
    /// The queues a connected or draining phase serves.
    fn queues_mut(&mut self) -> Option<&mut Vec<Queue<L>>> {
        match self {
            Phase::Connected { queues } | Phase::Draining(Drain { queues, .. }) => Some(queues),
            _ => None,
        }
    }

    fn queues(&self) -> &[Queue<L>] {
        match self {
            Phase::Connected { queues } | Phase::Draining(Drain { queues, .. }) => queues,
            _ => &[],
        }
    }
}

/// The figures a device publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceFigures {
    pub counters: DeviceCounters,
    /// Persistent grants held now, over every queue.
    pub persistent_grants: u64,
    /// Ring pages mapped now.
    pub ring_pages: u64,
}

/// One vbd of one frontend.
pub struct BlkSession<L: PmapLock> {
    peer: DomId,
    device: DeviceId,
    lock: L,
    request: ToolstackRequest,
    disk: Option<RamDisk>,
    budget: SharedBudget,
    /// The toolstack set `online` = 0.
    offline: bool,
    counters: DeviceCounters,
    /// The service's clock in milliseconds as last told ([`BlkSession::set_time`]): stamps
    /// the persistent grants' use.
    now_ms: u64,
    /// When persistent grants were last purged.
    last_purge_ms: u64,
    /// Requests were left on a ring when the wake-up's budget ran out.
    backlog: bool,
    phase: Phase<L>,
}

/// A device the budget cannot hold.
pub type AttachRefused = super::ram_disk::BudgetExceeded;

impl<L: PmapLock + Clone> BlkSession<L> {
    /// A session for `device` of frontend `peer` with the disk the toolstack asked for
    /// (zeroed, its size reserved from `budget`), and its first actions (the offer, then
    /// `state` = InitWait). Refused when the budget cannot hold the disk.
    pub fn new(
        peer: DomId,
        device: DeviceId,
        lock: L,
        request: ToolstackRequest,
        budget: SharedBudget,
    ) -> Result<(Self, Vec<BlkAction<L>>), AttachRefused> {
        let disk = RamDisk::attach(request.target.sectors(), &mut budget.borrow_mut())?;
        let session = BlkSession {
            peer,
            device,
            lock,
            request,
            disk: Some(disk),
            budget,
            offline: false,
            counters: DeviceCounters::default(),
            now_ms: 0,
            last_purge_ms: 0,
            backlog: false,
            phase: Phase::WaitingForFrontend,
        };
        let mut nodes = before_init_wait(&OFFER);
        nodes.push(("hotplug-status", String::from("connected")));
        nodes.push(("state", XenbusState::InitWait.as_str().to_string()));
        Ok((session, vec![PeerAction::WriteNodes(nodes)]))
    }

    /// The figures to publish.
    pub fn figures(&self) -> DeviceFigures {
        let mut figures = DeviceFigures {
            counters: self.counters,
            ..DeviceFigures::default()
        };
        for queue in self.phase.queues() {
            figures.ring_pages += (queue.ring.memory().size() / crate::addr::PAGE_SIZE) as u64;
            figures.persistent_grants += queue
                .persistent
                .as_ref()
                .map_or(0, |cache| cache.len() as u64);
        }
        figures
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match &self.phase {
            Phase::Closed(reason) => Some(reason),
            _ => None,
        }
    }

    /// Sets the clock (milliseconds, never going back) that stamps the persistent grants' use:
    /// the kernel tells the time before each wake-up it delivers.
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// When [`BlkSession::purge_idle_grants`] has work: the earliest time a persistent grant
    /// can have been unused for the idle limit, and no sooner than [`PURGE_INTERVAL_MILLISECONDS`]
    /// after the last purge. `None` while no grant is cached: nothing to wake up for.
    pub fn purge_due(&self) -> Option<u64> {
        let Phase::Connected { queues } = &self.phase else {
            return None;
        };
        let due = queues
            .iter()
            .filter_map(|queue| queue.persistent.as_ref()?.purge_due())
            .min()?;
        Some(
            due.max(
                self.last_purge_ms
                    .saturating_add(PURGE_INTERVAL_MILLISECONDS),
            ),
        )
    }

    /// Unmaps the persistent grants of every queue that no request has used for the idle
    /// limit (at `now_ms`); returns how many.
    pub fn purge_idle_grants(&mut self, now_ms: u64) -> usize {
        self.set_time(now_ms);
        self.last_purge_ms = self.now_ms;
        let Phase::Connected { queues } = &mut self.phase else {
            return 0;
        };
        let mut mapper = SingleGrants {
            lock: &self.lock,
            peer: self.peer,
        };
        queues
            .iter_mut()
            .filter_map(|queue| queue.persistent.as_mut())
            .map(|cache| cache.purge_idle(self.now_ms, &mut mapper))
            .sum()
    }

    /// True when requests were left waiting at the end of the last wake-up.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// When a draining device wants its next wake-up ([`PeerEvent::EventChannel`]) even if
    /// its port does not fire: the drain ends then. `None` unless draining.
    pub fn drain_due(&self) -> Option<u64> {
        match &self.phase {
            Phase::Draining(drain) => Some(drain.quiet_until_ms),
            _ => None,
        }
    }

    /// True once the frontend has closed and nothing is mapped (the disk is kept).
    pub fn is_disconnected(&self) -> bool {
        matches!(self.phase, Phase::Disconnected)
    }

    /// The disk's description for the connect nodes and the validator.
    fn description(&self) -> DiskDescription {
        DiskDescription {
            sectors: self.request.target.sectors(),
            writable: self.request.writable,
            cdrom: self.request.cdrom,
            discard: self.request.discard_enable,
        }
    }

    fn limits(&self) -> DiskLimits {
        let description = self.description();
        DiskLimits {
            sectors: description.sectors,
            writable: description.writable,
            flush: description.writable,
            discard: description.discard && description.writable,
            max_indirect_segments: OFFER.max_indirect_segments,
        }
    }

    fn fault(&self, kind: BlkFaultKind) -> CloseReason {
        CloseReason::Fault(PeerFault {
            peer: self.peer,
            device: self.device,
            kind,
        })
    }

    /// Handles one event; returns the actions to carry out, in order.
    pub fn handle(&mut self, event: BlkEvent<'_, L>) -> Vec<BlkAction<L>> {
        let phase = core::mem::replace(&mut self.phase, Phase::WaitingForFrontend);
        let (phase, actions) = self.step(phase, event);
        self.phase = phase;
        actions
    }

    fn step(&mut self, phase: Phase<L>, event: BlkEvent<'_, L>) -> (Phase<L>, Vec<BlkAction<L>>) {
        match (phase, event) {
            (phase @ Phase::Closed(_), event) => (phase, action::leftovers(event)),
            (phase, PeerEvent::PeerNodesRemoved) => {
                self.answer_then_close(phase, CloseReason::PeerNodesRemoved)
            }
            (phase, PeerEvent::OwnNodesRemoved) => {
                self.answer_then_close(phase, CloseReason::OwnNodesRemoved)
            }
            (phase, PeerEvent::DomainDied) => self.close(phase, CloseReason::DomainDied),
            (phase, PeerEvent::Shutdown) => self.answer_then_close(phase, CloseReason::Shutdown),
            (phase, PeerEvent::OwnNodesNotWritten(refusal)) => {
                self.close(phase, CloseReason::OwnNodesNotWritten(refusal))
            }
            (phase, PeerEvent::ToolstackOffline) => {
                self.offline = true;
                if matches!(phase, Phase::Disconnected) {
                    self.close(phase, CloseReason::Protocol(BlkEnding::Detached))
                } else {
                    (phase, Vec::new())
                }
            }
            (phase, PeerEvent::PeerState(value)) => match XenbusState::parse(value) {
                Err(fault) => {
                    let reason = self.fault(BlkFaultKind::BadState(fault));
                    self.close(phase, reason)
                }
                Ok(state) => self.frontend_state(phase, state),
            },
            (Phase::ReadingNodes, PeerEvent::PeerNodesRead(read)) => {
                match FrontendConfig::decode(&ReadNodes(read), &OFFER) {
                    Ok(config) => {
                        let action = self.map_ring(&config, 0);
                        (
                            Phase::Mapping {
                                config,
                                rings: Vec::new(),
                            },
                            action.into_iter().collect(),
                        )
                    }
                    Err(fault) => {
                        let reason = self.fault(BlkFaultKind::Nodes(fault));
                        self.close(Phase::ReadingNodes, reason)
                    }
                }
            }
            (
                Phase::Mapping { config, mut rings },
                PeerEvent::Mapped {
                    purpose: BlkMapping::Ring { queue },
                    result,
                },
            ) => match result {
                Ok(region) => {
                    rings.push(region);
                    match self.map_ring(&config, rings.len()) {
                        Some(action) => (Phase::Mapping { config, rings }, vec![action]),
                        None => {
                            let action = self.bind(&config, 0);
                            let phase = Phase::Binding {
                                config,
                                rings,
                                ports: Vec::new(),
                            };
                            (phase, action.into_iter().collect())
                        }
                    }
                }
                Err(status) => {
                    let reason = self.fault(BlkFaultKind::RingMapFailed { queue, status });
                    self.close(Phase::Mapping { config, rings }, reason)
                }
            },
            (
                Phase::Binding {
                    config,
                    rings,
                    mut ports,
                },
                PeerEvent::PortBound(result),
            ) => match result {
                Ok(port) => {
                    ports.push(port);
                    match self.bind(&config, ports.len()) {
                        Some(action) => (
                            Phase::Binding {
                                config,
                                rings,
                                ports,
                            },
                            vec![action],
                        ),
                        None => self.connect(config, rings, ports),
                    }
                }
                Err(status) => {
                    let queue = ports.len() as u32;
                    let reason = self.fault(BlkFaultKind::BindFailed { queue, status });
                    self.close(
                        Phase::Binding {
                            config,
                            rings,
                            ports,
                        },
                        reason,
                    )
                }
            },
            (Phase::Connected { mut queues }, PeerEvent::EventChannel) => {
                match self.serve(&mut queues) {
                    Ok(actions) => (Phase::Connected { queues }, actions),
                    Err((queue, fault)) => {
                        let reason = self.fault(BlkFaultKind::Ring { queue, fault });
                        self.close(Phase::Connected { queues }, reason)
                    }
                }
            }
            (Phase::Draining(drain), PeerEvent::EventChannel) => self.drain(drain),
            // Anything else is out of order: results are given back, other events ignored.
            (phase, event) => (phase, action::leftovers(event)),
        }
    }

    /// The frontend's `state` changed to `state`.
    fn frontend_state(
        &mut self,
        phase: Phase<L>,
        state: XenbusState,
    ) -> (Phase<L>, Vec<BlkAction<L>>) {
        match (phase, state) {
            (Phase::Disconnected, XenbusState::Initialising | XenbusState::InitWait) => {
                // The frontend came back (a reconnect): offer again.
                let mut nodes = before_init_wait(&OFFER);
                nodes.push(("state", XenbusState::InitWait.as_str().to_string()));
                (
                    Phase::WaitingForFrontend,
                    vec![PeerAction::WriteNodes(nodes)],
                )
            }
            (Phase::WaitingForFrontend, XenbusState::Initialised | XenbusState::Connected) => (
                Phase::ReadingNodes,
                vec![PeerAction::ReadPeerNodes(&FRONTEND_NODES)],
            ),
            (Phase::Disconnected, XenbusState::Closing) => (Phase::Disconnected, Vec::new()),
            (Phase::Connected { queues }, state @ (XenbusState::Closing | XenbusState::Closed)) => {
                self.start_drain(queues, state)
            }
            (Phase::Draining(mut drain), XenbusState::Closed) => {
                drain.state = XenbusState::Closed;
                (Phase::Draining(drain), Vec::new())
            }
            (
                phase @ Phase::Draining(_),
                state @ (XenbusState::Initialising | XenbusState::InitWait),
            ) => {
                // The frontend is back before the drain ended: it let go of its old rings, so
                // the drain ends now, and the reconnect is taken as from Disconnected.
                let (phase, mut actions) = self.let_go(phase, XenbusState::Closed);
                let (phase, more) = self.frontend_state(phase, state);
                actions.extend(more);
                (phase, actions)
            }
            (phase @ Phase::Draining(_), _) => (phase, Vec::new()),
            (phase, state @ (XenbusState::Closing | XenbusState::Closed)) => {
                self.let_go(phase, state)
            }
            (phase, _) => (phase, Vec::new()),
        }
    }

    /// The frontend closed with its rings connected: answers what is on them, signals it
    /// (which restarts the queues blkfront stopped as it closed), and keeps serving the rings
    /// until the drain ends.
    fn start_drain(&mut self, queues: Vec<Queue<L>>, state: XenbusState) -> Transition<L> {
        let (phase, mut actions) = match self.answer_leftovers(Phase::Connected { queues }) {
            Ok(answered) => answered,
            Err(closed) => return closed,
        };
        let Phase::Connected { queues } = phase else {
            return (phase, actions);
        };
        for queue in &queues {
            let signalled = actions
                .iter()
                .any(|action| matches!(action, PeerAction::Notify(port) if *port == queue.port));
            if !signalled {
                actions.push(PeerAction::Notify(queue.port));
            }
        }
        let drain = Drain {
            queues,
            state,
            quiet_until_ms: self.now_ms.saturating_add(DRAIN_QUIET_MILLISECONDS),
            began_ms: self.now_ms,
        };
        (Phase::Draining(drain), actions)
    }

    /// A wake-up of a draining device: serves its rings; ends the drain once nothing came for
    /// [`DRAIN_QUIET_MILLISECONDS`] (or [`DRAIN_MAX_MILLISECONDS`] after it began).
    fn drain(&mut self, mut drain: Drain<L>) -> Transition<L> {
        let (mut actions, answered) = match self.serve_counted(&mut drain.queues) {
            Ok(served) => served,
            Err((queue, fault)) => {
                let reason = self.fault(BlkFaultKind::Ring { queue, fault });
                return self.close(Phase::Draining(drain), reason);
            }
        };
        if answered > 0 {
            log::info!(
                "blkif: frontend domain {} vbd {} put {answered} request(s) on its ring {} ms after it closed: answered",
                self.peer,
                self.device,
                self.now_ms.saturating_sub(drain.began_ms)
            );
            drain.quiet_until_ms = self
                .now_ms
                .saturating_add(DRAIN_QUIET_MILLISECONDS)
                .min(drain.ends_by_ms());
        }
        // A backlog (a full wake-up's worth) is served on past the quiet period, but not
        // past the drain's bound: a frontend that floods its ring after closing is let go.
        let backlog_left = self.backlog && self.now_ms < drain.ends_by_ms();
        if self.now_ms < drain.quiet_until_ms || backlog_left {
            return (Phase::Draining(drain), actions);
        }
        let state = drain.state;
        let (phase, more) = self.let_go(Phase::Draining(drain), state);
        actions.extend(more);
        (phase, actions)
    }

    /// Unmaps everything `phase` holds, then mirrors the frontend's `state` (Closing or
    /// Closed); at Closed after the toolstack's `online` = 0 the session ends (a detach),
    /// else the disk is kept for a reconnect.
    fn let_go(&mut self, phase: Phase<L>, state: XenbusState) -> Transition<L> {
        let mut actions = self.release(phase);
        actions.push(PeerAction::WriteNodes(vec![(
            "state",
            state.as_str().to_string(),
        )]));
        if state == XenbusState::Closed && self.offline {
            let (phase, more) = self.close(
                Phase::Disconnected,
                CloseReason::Protocol(BlkEnding::Detached),
            );
            actions.extend(more);
            (phase, actions)
        } else {
            (Phase::Disconnected, actions)
        }
    }

    /// The map of queue `queue`'s ring, if the config has that queue.
    fn map_ring(&self, config: &FrontendConfig, queue: usize) -> Option<BlkAction<L>> {
        let wanted = config.queues.get(queue)?;
        Some(PeerAction::MapGrants {
            peer: self.peer,
            refs: wanted.ring_refs.clone(),
            writable: true,
            purpose: BlkMapping::Ring {
                queue: queue as u32,
            },
        })
    }

    /// The bind of queue `queue`'s event channel, if the config has that queue.
    fn bind(&self, config: &FrontendConfig, queue: usize) -> Option<BlkAction<L>> {
        let wanted = config.queues.get(queue)?;
        Some(PeerAction::BindInterdomain {
            peer: self.peer,
            remote_port: wanted.event_channel,
        })
    }

    /// Every ring mapped and channel bound: attach the rings, describe the disk, Connected.
    fn connect(
        &mut self,
        config: FrontendConfig,
        rings: Vec<GrantMapping<L>>,
        ports: Vec<EvtchnPort>,
    ) -> (Phase<L>, Vec<BlkAction<L>>) {
        let mut queues = Vec::with_capacity(rings.len());
        let mut failure = None;
        let mut leftover_ports = Vec::new();
        for (index, (ring, port)) in rings.into_iter().zip(ports).enumerate() {
            if failure.is_some() {
                leftover_ports.push(port);
                // Dropping a mapping unmaps it (failures logged).
                drop(ring);
                continue;
            }
            match BackRing::attach(ring, config.ring_page_order) {
                Ok(ring) => queues.push(Queue {
                    ring,
                    port,
                    persistent: config.persistent.then(|| {
                        PersistentGrants::new(DEFAULT_CAPACITY, DEFAULT_IDLE_MILLISECONDS)
                    }),
                }),
                Err(fault) => {
                    leftover_ports.push(port);
                    failure = Some((index as u32, fault));
                }
            }
        }
        if let Some((queue, fault)) = failure {
            let reason = match fault {
                RingFault::TooSmall { .. } | RingFault::BadOrder { .. } => {
                    CloseReason::Protocol(BlkEnding::RingTooSmall { queue, fault })
                }
                _ => self.fault(BlkFaultKind::Ring { queue, fault }),
            };
            let mut actions: Vec<BlkAction<L>> = leftover_ports
                .into_iter()
                .map(PeerAction::ClosePort)
                .collect();
            let (phase, more) = self.close(Phase::Connected { queues }, reason);
            actions.extend(more);
            return (phase, actions);
        }
        let report = BlkConnected {
            sectors: self.request.target.sectors(),
            writable: self.request.writable,
            queues: queues.len() as u32,
            ring_page_order: config.ring_page_order,
            persistent: config.persistent,
        };
        let actions = vec![
            PeerAction::WriteNodesInTransaction(at_connect(&self.description())),
            PeerAction::WriteNodes(vec![("state", XenbusState::Connected.as_str().to_string())]),
            PeerAction::ReportConnected(report),
        ];
        (Phase::Connected { queues }, actions)
    }

    /// [`Self::serve`], with how many requests it answered (for the close's log lines).
    fn serve_counted(&mut self, queues: &mut [Queue<L>]) -> Result<Served<L>, (u32, RingFault)> {
        let answered_before = self.counters.requests;
        let actions = self.serve(queues)?;
        Ok((actions, self.counters.requests - answered_before))
    }

    /// Serves every queue once: batches of requests copied off the ring, checked, their data
    /// grants mapped together, carried out, answered, unmapped. Err: the queue whose ring broke.
    fn serve(&mut self, queues: &mut [Queue<L>]) -> Result<Vec<BlkAction<L>>, (u32, RingFault)> {
        let limits = self.limits();
        let mut actions = Vec::new();
        self.backlog = false;
        self.counters.wakeups += 1;
        for (index, queue) in queues.iter_mut().enumerate() {
            let index = index as u32;
            let mut served_requests = 0;
            let mut notify = false;
            loop {
                // Indirect segment pages through the persistent-grant cache when there is one
                // (as Linux blkback maps them), else mapped for their copy alone.
                let mut batch = match queue.persistent.as_mut() {
                    Some(cache) => {
                        let mut indirect = PersistentIndirectPages {
                            cache,
                            mapper: SingleGrants {
                                lock: &self.lock,
                                peer: self.peer,
                            },
                            now: self.now_ms,
                        };
                        take_batch(&mut queue.ring, &limits, &mut indirect, BATCH_REQUESTS)
                    }
                    None => {
                        let mut indirect = IndirectPages {
                            lock: &self.lock,
                            peer: self.peer,
                        };
                        take_batch(&mut queue.ring, &limits, &mut indirect, BATCH_REQUESTS)
                    }
                }
                .map_err(|fault| (index, fault))?;
                served_requests += batch.len();
                let Some(disk) = self.disk.as_mut() else {
                    return Err((index, RingFault::Halted));
                };
                // The batch's grants are let go of (unmapped, or back in the cache) before
                // its responses become visible: blkfront checks that they are unmapped.
                let served = match queue.persistent.as_mut() {
                    Some(cache) => {
                        let mut mapper = SingleGrants {
                            lock: &self.lock,
                            peer: self.peer,
                        };
                        let mut pages =
                            PersistentPages::acquire(cache, &mut mapper, &mut batch, self.now_ms);
                        let refusals = answer_batch(
                            &mut queue.ring,
                            batch,
                            disk,
                            &mut pages,
                            &mut self.counters,
                        );
                        pages.release(&mut mapper, self.now_ms);
                        refusals
                    }
                    None => {
                        let mut pages = BatchPages::map(&self.lock, self.peer, &mut batch);
                        let refusals = answer_batch(
                            &mut queue.ring,
                            batch,
                            disk,
                            &mut pages,
                            &mut self.counters,
                        );
                        pages.unmap();
                        refusals
                    }
                }
                .and_then(|refusals| publish_responses(&mut queue.ring, refusals))
                .map_err(|fault| (index, fault))?;
                for refusal in &served.refusals {
                    if self.counters.errors <= LOGGED_REFUSALS {
                        log::warn!(
                            "blkif: frontend domain {} vbd {}: {refusal}",
                            self.peer,
                            self.device
                        );
                    }
                }
                notify |= served.notify;
                if !served.more {
                    break;
                }
                if served_requests >= REQUESTS_PER_WAKE {
                    self.backlog = true;
                    break;
                }
            }
            if notify {
                self.counters.notifications += 1;
                actions.push(PeerAction::Notify(queue.port));
            }
        }
        Ok(actions)
    }

    /// Answers the requests still on the rings of a connected `phase` before they are unmapped
    /// (the frontend closes, or grantsvc shuts down): Linux blkfront closes without waiting
    /// for its requests and has no request timeout, so
    /// a request left unanswered keeps its writer (and the disk's removal) waiting for ever.
    /// One pass takes a full ring ([`REQUESTS_PER_WAKE`] is the largest ring offered), so
    /// whatever the frontend put there before it closed is answered. A broken ring ends the
    /// device as it would in service (Err: the session's new phase and actions).
    fn answer_leftovers(&mut self, mut phase: Phase<L>) -> Result<Transition<L>, Transition<L>> {
        let Some(queues) = phase.queues_mut() else {
            return Ok((phase, Vec::new()));
        };
        match self.serve_counted(queues) {
            Ok((actions, answered)) => {
                if answered > 0 {
                    log::info!(
                        "blkif: frontend domain {} vbd {} closed with {answered} request(s) on its ring: answered",
                        self.peer,
                        self.device
                    );
                }
                Ok((phase, actions))
            }
            Err((queue, fault)) => {
                let reason = self.fault(BlkFaultKind::Ring { queue, fault });
                Err(self.close(phase, reason))
            }
        }
    }

    /// Ends the session for `reason`, answering first what the frontend already sent: at
    /// grantsvc's shutdown, and when the toolstack removes either directory (a forced detach:
    /// the frontend's removal of its disk waits for those requests). Its writer would wait for
    /// them for ever; a dead frontend's are not answered ([`PeerEvent::DomainDied`]).
    fn answer_then_close(&mut self, phase: Phase<L>, reason: CloseReason) -> Transition<L> {
        match self.answer_leftovers(phase) {
            Ok((phase, mut actions)) => {
                let (phase, more) = self.close(phase, reason);
                actions.extend(more);
                (phase, actions)
            }
            Err(closed) => closed,
        }
    }

    /// Unmaps everything `phase` holds (persistent grants directly, rings through the
    /// framework) and closes its ports: the actions, in order.
    fn release(&mut self, phase: Phase<L>) -> Vec<BlkAction<L>> {
        let mut actions = Vec::new();
        let (rings, ports) = match phase {
            Phase::Mapping { rings, .. } => (rings, Vec::new()),
            Phase::Binding { rings, ports, .. } => (rings, ports),
            Phase::Connected { queues } | Phase::Draining(Drain { queues, .. }) => {
                let mut rings = Vec::new();
                let mut ports = Vec::new();
                for queue in queues {
                    if let Some(mut cache) = queue.persistent {
                        let mut mapper = SingleGrants {
                            lock: &self.lock,
                            peer: self.peer,
                        };
                        cache.close(&mut mapper);
                    }
                    rings.push(queue.ring.into_memory());
                    ports.push(queue.port);
                }
                (rings, ports)
            }
            _ => (Vec::new(), Vec::new()),
        };
        for (queue, region) in rings.into_iter().enumerate() {
            actions.push(PeerAction::Unmap {
                purpose: BlkMapping::Ring {
                    queue: queue as u32,
                },
                region,
            });
        }
        actions.extend(ports.into_iter().map(PeerAction::ClosePort));
        self.backlog = false;
        actions
    }

    /// Ends the session from `phase`: unmap, close the ports, free the disk, then tell the
    /// frontend and the toolstack (`error` for a fault, `state` = Closed) unless the
    /// directory is gone.
    fn close(&mut self, phase: Phase<L>, reason: CloseReason) -> (Phase<L>, Vec<BlkAction<L>>) {
        let mut actions = self.release(phase);
        if let Some(disk) = self.disk.take() {
            disk.detach(&mut self.budget.borrow_mut());
        }
        if !matches!(
            reason,
            CloseReason::OwnNodesRemoved | CloseReason::Protocol(BlkEnding::Detached)
        ) {
            if reason.needs_room_for_error_node() {
                // Past the node quota the `error` node fits only in room the session makes:
                // its offer goes (the frontend has no use for it once refused).
                let offer = before_init_wait(&OFFER);
                actions.push(PeerAction::RemoveNodes(
                    offer.iter().map(|(name, _)| *name).collect(),
                ));
            }
            let mut nodes = Vec::new();
            if reason.writes_error_node() {
                nodes.push(("error", reason.to_string()));
            }
            nodes.push(("state", XenbusState::Closed.as_str().to_string()));
            actions.push(PeerAction::WriteNodes(nodes));
        }
        actions.push(PeerAction::ReportClosed(reason.clone()));
        (Phase::Closed(reason), actions)
    }

    /// Our port (of the first queue), once bound.
    pub fn port(&self) -> Option<EvtchnPort> {
        match &self.phase {
            Phase::Binding { ports, .. } => ports.first().copied(),
            phase => phase.queues().first().map(|queue| queue.port),
        }
    }
}

/// The frontend's nodes as read once, by name.
struct ReadNodes<'a, 'b>(&'a PeerNodes<'b>);

impl FrontendNodes for ReadNodes<'_, '_> {
    fn read(&self, key: &str) -> Option<&[u8]> {
        node_value(self.0, key)
    }
}

impl<L: PmapLock + Clone> PeerSession for BlkSession<L> {
    type Protocol = BlkProtocol;
    type Region = GrantMapping<L>;

    fn peer(&self) -> DomId {
        self.peer
    }

    fn device(&self) -> DeviceId {
        self.device
    }

    fn port(&self) -> Option<EvtchnPort> {
        BlkSession::port(self)
    }

    fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed(_))
    }

    fn mapped_pages(&self) -> u32 {
        let figures = self.figures();
        (figures.ring_pages + figures.persistent_grants) as u32
    }

    fn handle(&mut self, event: BlkEvent<'_, L>, _counters: &ServiceCounters) -> Vec<BlkAction<L>> {
        BlkSession::handle(self, event)
    }
}

/// The per-device counter nodes (names relative to the device's published directory).
pub fn figure_nodes(figures: &DeviceFigures) -> Vec<(&'static str, String)> {
    vec![
        ("requests", format!("{}", figures.counters.requests)),
        ("bytes-read", format!("{}", figures.counters.bytes_read)),
        (
            "bytes-written",
            format!("{}", figures.counters.bytes_written),
        ),
        ("errors", format!("{}", figures.counters.errors)),
        ("wakeups", format!("{}", figures.counters.wakeups)),
        (
            "notifications",
            format!("{}", figures.counters.notifications),
        ),
        (
            "persistent-grants",
            format!("{}", figures.persistent_grants),
        ),
        ("ring-pages", format!("{}", figures.ring_pages)),
    ]
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
