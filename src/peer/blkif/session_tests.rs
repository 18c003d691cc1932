//! The whole device against the simulated Xen: handshake, data through batched and persistent grants, indirect requests, faults, detach and reconnect, and nothing left mapped.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use super::*;
use crate::abi::blkif::{header_offset, op, status as rsp};
use crate::addr::{Mfn, Pfn, PAGE_SIZE};
use crate::ids::GrantRef;
use crate::peer::blkif::request::{encode, Segment};
use crate::peer::blkif::target::Target;
use crate::peer::blkif::testing::ModelFrontend;
use crate::pmap::Pmap;
use crate::sim::{SimConfig, SimFrameAllocator, SimXen, SIM_DOMID};
use alloc::sync::Arc;
use alloc::vec::Vec;

type Lock = Arc<spin::Mutex<Pmap<SimXen, SimFrameAllocator>>>;
type Session = BlkSession<Lock>;

const PEER: DomId = DomId::new(7).unwrap();
const DEVICE: DeviceId = DeviceId(51728);
const PORT: EvtchnPort = match EvtchnPort::new(5) {
    Some(port) => port,
    None => panic!(),
};
/// Peer frames: ring pages from 0, data pages from 64.
const DATA_FRAME: usize = 64;

fn pmap() -> Lock {
    let mut sim = SimXen::new(SimConfig::default());
    sim.add_domain(PEER, 600, false);
    let frames = SimFrameAllocator::new(sim.first_free_frame(), sim.pages());
    let root = sim.root();
    let pages = sim.pages();
    let mut pmap = Pmap::adopt(sim, frames, root).unwrap();
    pmap.extend_direct_map(Pfn::new(0).unwrap(), pages).unwrap();
    Arc::new(spin::Mutex::new(pmap))
}

/// A frontend over the simulated Xen: its ring in peer frames, mirrored by a model ring.
struct Harness {
    lock: Lock,
    budget: SharedBudget,
    session: Session,
    order: u32,
    front: ModelFrontend,
    ring_frames: Vec<Mfn>,
    ring_refs: Vec<GrantRef>,
    /// Data frames by index, granted as `data_refs`.
    data_frames: Vec<Mfn>,
    data_refs: Vec<GrantRef>,
    writes: Vec<(&'static str, String)>,
    transaction: Vec<(&'static str, String)>,
    removed: Vec<&'static str>,
    notifies: usize,
    closed_ports: usize,
    connected: Option<BlkConnected>,
    closed: Option<CloseReason>,
}

fn request(sectors: u64) -> ToolstackRequest {
    ToolstackRequest {
        target: Target::Ram {
            bytes: sectors * 512,
        },
        writable: true,
        cdrom: false,
        discard_enable: true,
    }
}

impl Harness {
    fn new(order: u32) -> Harness {
        let lock = pmap();
        let budget: SharedBudget = Rc::new(RefCell::new(MemoryBudget::new(1 << 20)));
        let (session, actions) =
            Session::new(PEER, DEVICE, lock.clone(), request(2048), budget.clone()).unwrap();
        let (ring_frames, ring_refs, data_frames, data_refs) = {
            let mut pmap = lock.lock();
            let sim = pmap.hypervisor_mut();
            let frames = sim.domain(PEER).unwrap().frames.clone();
            let ring_frames: Vec<Mfn> = frames[..1 << order].to_vec();
            let ring_refs = ring_frames
                .iter()
                .map(|frame| sim.grant_access(PEER, *frame, SIM_DOMID, false))
                .collect();
            let data_frames: Vec<Mfn> = frames[DATA_FRAME..DATA_FRAME + 300].to_vec();
            let data_refs = data_frames
                .iter()
                .map(|frame| sim.grant_access(PEER, *frame, SIM_DOMID, false))
                .collect();
            (ring_frames, ring_refs, data_frames, data_refs)
        };
        let mut harness = Harness {
            lock,
            budget,
            session,
            order,
            front: ModelFrontend::new(order),
            ring_frames,
            ring_refs,
            data_frames,
            data_refs,
            writes: Vec::new(),
            transaction: Vec::new(),
            removed: Vec::new(),
            notifies: 0,
            closed_ports: 0,
            connected: None,
            closed: None,
        };
        harness.sync_to_sim();
        harness.carry_out(actions);
        harness
    }

    fn live_maps(&self) -> usize {
        self.lock.lock().hypervisor().maptrack_in_use()
    }

    fn state_written(&self) -> Option<&str> {
        self.writes
            .iter()
            .rev()
            .find(|(name, _)| *name == "state")
            .map(|(_, value)| value.as_str())
    }

    fn deliver(&mut self, event: BlkEvent<'_, Lock>) {
        let actions = self.session.handle(event);
        self.carry_out(actions);
    }

    fn frontend_nodes(&self, persistent: bool) -> Vec<(&'static str, Option<Vec<u8>>)> {
        let mut nodes: Vec<(&'static str, Option<Vec<u8>>)> = Vec::new();
        nodes.push(("protocol", Some(b"x86_64-abi".to_vec())));
        nodes.push((
            "feature-persistent",
            Some(if persistent {
                b"1".to_vec()
            } else {
                b"0".to_vec()
            }),
        ));
        nodes.push(("event-channel", Some(b"17".to_vec())));
        if self.order == 0 {
            nodes.push((
                "ring-ref",
                Some(format!("{}", self.ring_refs[0].get()).into_bytes()),
            ));
        } else {
            nodes.push((
                "ring-page-order",
                Some(format!("{}", self.order).into_bytes()),
            ));
            for (index, name) in FRONTEND_NODES[6..].iter().enumerate() {
                let value = self
                    .ring_refs
                    .get(index)
                    .map(|gref| format!("{}", gref.get()).into_bytes());
                nodes.push((name, value));
            }
        }
        nodes
    }

    /// Frontend Initialised with its nodes: the session maps, binds, connects.
    fn connect(&mut self, persistent: bool) {
        self.deliver(PeerEvent::PeerState(b"3"));
        let owned = self.frontend_nodes(persistent);
        let nodes: Vec<(&'static str, Option<&[u8]>)> = owned
            .iter()
            .map(|(name, value)| (*name, value.as_deref()))
            .collect();
        self.deliver(PeerEvent::PeerNodesRead(&nodes));
        assert_eq!(self.state_written(), Some("4"), "{:?}", self.closed);
    }

    fn carry_out(&mut self, actions: Vec<BlkAction<Lock>>) {
        for action in actions {
            let follow_up = match action {
                PeerAction::WriteNodes(nodes) => {
                    self.writes.extend(nodes);
                    None
                }
                PeerAction::WriteNodesInTransaction(nodes) => {
                    self.transaction.extend(nodes);
                    None
                }
                PeerAction::RemoveNodes(names) => {
                    self.removed.extend(names);
                    None
                }
                PeerAction::ReadPeerNodes(names) => {
                    assert_eq!(names, &FRONTEND_NODES);
                    None
                }
                PeerAction::MapGrants {
                    peer,
                    refs,
                    writable,
                    purpose,
                } => {
                    let result = GrantMapping::map(self.lock.clone(), peer, &refs, !writable)
                        .map_err(|_| -1);
                    Some(PeerEvent::Mapped { purpose, result })
                }
                PeerAction::BindInterdomain { .. } => Some(PeerEvent::PortBound(Ok(PORT))),
                PeerAction::Unmap { region, .. } => {
                    region.unmap().unwrap();
                    None
                }
                PeerAction::Notify(port) => {
                    assert_eq!(port, PORT);
                    self.notifies += 1;
                    None
                }
                PeerAction::ClosePort(_) => {
                    self.closed_ports += 1;
                    None
                }
                PeerAction::ReportConnected(report) => {
                    self.connected = Some(report);
                    None
                }
                PeerAction::ReportClosed(reason) => {
                    self.closed = Some(reason);
                    None
                }
            };
            if let Some(event) = follow_up {
                let actions = self.session.handle(event);
                self.carry_out(actions);
            }
        }
    }

    /// The model ring's bytes into the peer's ring frames.
    fn sync_to_sim(&mut self) {
        let mut pmap = self.lock.lock();
        for (index, frame) in self.ring_frames.iter().enumerate() {
            let mut page = alloc::vec![0u8; PAGE_SIZE];
            self.front
                .memory
                .read_bytes(index * PAGE_SIZE, &mut page)
                .unwrap();
            pmap.hypervisor_mut().write_frame(*frame, 0, &page);
        }
    }

    /// The peer's ring frames back into the model ring.
    fn sync_from_sim(&mut self) {
        let pmap = self.lock.lock();
        for (index, frame) in self.ring_frames.iter().enumerate() {
            let page = pmap.hypervisor().frame_bytes(*frame).unwrap();
            self.front
                .memory
                .write_bytes(index * PAGE_SIZE, &page[..])
                .unwrap();
        }
    }

    /// Publishes `requests`, signals the backend, and returns the responses (id, status).
    fn run(&mut self, requests: &[crate::peer::blkif::request::RequestBytes]) -> Vec<(u64, i16)> {
        self.run_with_operations(requests)
            .into_iter()
            .map(|(id, _, status)| (id, status))
            .collect()
    }

    /// Like [`Harness::run`], with each response's operation: (id, operation, status).
    fn run_with_operations(
        &mut self,
        requests: &[crate::peer::blkif::request::RequestBytes],
    ) -> Vec<(u64, u8, i16)> {
        self.put_on_ring(requests);
        self.deliver(PeerEvent::EventChannel);
        self.sync_from_sim();
        let responses = self
            .front
            .take_responses()
            .into_iter()
            .map(|(id, operation, status, _)| (id, operation, status))
            .collect();
        self.sync_to_sim();
        responses
    }

    /// Publishes `requests` on the ring (into the peer's frames), without signalling.
    fn put_on_ring(&mut self, requests: &[crate::peer::blkif::request::RequestBytes]) {
        for request in requests {
            self.front.queue(request);
        }
        self.front.push();
        self.sync_to_sim();
    }

    /// A one-page write of data page 0 with id `id` put on the ring, the frontend's event not
    /// delivered (what the frontend sent just before it closed).
    fn leave_write_on_ring(&mut self, id: u64) {
        self.fill_data(0, 0x3c);
        let write = encode::direct(op::WRITE, id, 0, &[self.whole_page(0)]);
        self.put_on_ring(&[write]);
    }

    /// The responses on the ring: (id, status).
    fn take_answers(&mut self) -> Vec<(u64, i16)> {
        self.sync_from_sim();
        self.front
            .take_responses()
            .into_iter()
            .map(|(id, _, status, _)| (id, status))
            .collect()
    }

    /// The drain after the frontend closed runs its course: nothing comes for the quiet
    /// period, then the wake-up that ends it.
    fn finish_drain(&mut self) {
        let due = self.session.drain_due().expect("the device drains");
        self.session.set_time(due);
        self.deliver(PeerEvent::EventChannel);
        assert_eq!(self.session.drain_due(), None, "the drain ended");
    }

    fn data_written(&self) -> u64 {
        self.session.figures().counters.bytes_written
    }

    fn fill_data(&mut self, index: usize, byte: u8) {
        let frame = self.data_frames[index];
        self.lock
            .lock()
            .hypervisor_mut()
            .write_frame(frame, 0, &[byte; PAGE_SIZE]);
    }

    fn data(&self, index: usize) -> Vec<u8> {
        let frame = self.data_frames[index];
        self.lock
            .lock()
            .hypervisor()
            .frame_bytes(frame)
            .unwrap()
            .to_vec()
    }

    fn whole_page(&self, index: usize) -> Segment {
        Segment {
            gref: self.data_refs[index],
            first_sect: 0,
            last_sect: 7,
        }
    }
}

#[test]
fn the_offer_comes_before_init_wait_and_the_disk_nodes_before_connected() {
    let mut harness = Harness::new(0);
    let names: Vec<&str> = harness.writes.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "feature-max-indirect-segments",
            "max-ring-page-order",
            "multi-queue-max-queues",
            "hotplug-status",
            "state"
        ]
    );
    assert_eq!(harness.state_written(), Some("2"));
    harness.connect(false);
    let sectors = harness
        .transaction
        .iter()
        .find(|(name, _)| *name == "sectors")
        .map(|(_, value)| value.clone());
    assert_eq!(sectors.as_deref(), Some("2048"));
    assert!(harness
        .transaction
        .iter()
        .any(|(name, value)| *name == "feature-persistent" && value == "1"));
    assert_eq!(harness.connected.unwrap().queues, 1);
    // Only the ring stays mapped.
    assert_eq!(harness.live_maps(), 1);
}

#[test]
fn data_written_reads_back_and_batches_leave_only_the_ring_mapped() {
    for persistent in [false, true] {
        let mut harness = Harness::new(2);
        harness.connect(persistent);
        assert_eq!(harness.live_maps(), 4);
        harness.fill_data(0, 0xa5);
        harness.fill_data(1, 0x5a);
        let write = encode::direct(
            op::WRITE,
            1,
            8,
            &[harness.whole_page(0), harness.whole_page(1)],
        );
        let read = encode::direct(
            op::READ,
            2,
            8,
            &[harness.whole_page(2), harness.whole_page(3)],
        );
        assert_eq!(harness.run(&[write]), [(1, rsp::OKAY)]);
        assert_eq!(harness.run(&[read]), [(2, rsp::OKAY)]);
        assert_eq!(harness.data(2), alloc::vec![0xa5; PAGE_SIZE]);
        assert_eq!(harness.data(3), alloc::vec![0x5a; PAGE_SIZE]);
        let figures = harness.session.figures();
        assert_eq!(figures.counters.bytes_written, 2 * PAGE_SIZE as u64);
        assert_eq!(figures.counters.bytes_read, 2 * PAGE_SIZE as u64);
        if persistent {
            assert_eq!(figures.persistent_grants, 4);
            assert_eq!(harness.live_maps(), 4 + 4);
        } else {
            assert_eq!(figures.persistent_grants, 0);
            assert_eq!(
                harness.live_maps(),
                4,
                "data grants unmapped after the batch"
            );
        }
        assert!(harness.notifies > 0);
        // The frontend closes: the rings are served until the drain ends, then everything
        // is unmapped before Closing is written.
        let mapped = harness.live_maps();
        harness.deliver(PeerEvent::PeerState(b"5"));
        assert_eq!(harness.live_maps(), mapped);
        assert_eq!(harness.state_written(), Some("4"));
        harness.finish_drain();
        assert_eq!(harness.live_maps(), 0);
        assert_eq!(harness.state_written(), Some("5"));
        assert!(harness.session.is_disconnected());
    }
}

/// Segments of the indirect request: the most blkfront sends (256, a megabyte); under Miri
/// (`make miri`), where each page moved costs about a second, 32 (still 32 of them in one
/// indirect page, more than a direct request's 11).
const INDIRECT_SEGMENTS: usize = if cfg!(miri) { 32 } else { 256 };

#[test]
fn an_indirect_request_of_many_segments_moves_them_all() {
    let mut harness = Harness::new(0);
    harness.connect(false);
    // The segment list in data page 299, the data in pages 0..INDIRECT_SEGMENTS.
    let mut list = alloc::vec![0u8; PAGE_SIZE];
    for index in 0..INDIRECT_SEGMENTS {
        harness.fill_data(index, index as u8);
        let segment = harness.whole_page(index);
        list[index * 8..index * 8 + 8].copy_from_slice(&encode::segment_bytes(&segment));
    }
    let frame = harness.data_frames[299];
    harness
        .lock
        .lock()
        .hypervisor_mut()
        .write_frame(frame, 0, &list);
    let segments = INDIRECT_SEGMENTS as u16;
    let indirect = encode::indirect(op::WRITE, 9, 0, segments, &[harness.data_refs[299]]);
    // The response carries the inner operation, as blkfront checks.
    assert_eq!(
        harness.run_with_operations(&[indirect]),
        [(9, op::WRITE, rsp::OKAY)]
    );
    assert_eq!(
        harness.session.figures().counters.bytes_written,
        (INDIRECT_SEGMENTS * PAGE_SIZE) as u64
    );
    // Read sectors 8.. (page 1 of the disk) back into page 290.
    let read = encode::direct(op::READ, 10, 8, &[harness.whole_page(290)]);
    assert_eq!(harness.run(&[read]), [(10, rsp::OKAY)]);
    assert_eq!(harness.data(290), alloc::vec![1u8; PAGE_SIZE]);
    assert_eq!(harness.live_maps(), 1);
}

#[test]
fn bad_requests_get_errors_and_an_ungranted_page_fails_only_its_request() {
    let mut harness = Harness::new(0);
    harness.connect(false);
    let ungranted = Segment {
        gref: GrantRef::new(4000),
        first_sect: 0,
        last_sect: 7,
    };
    let good = encode::direct(op::WRITE, 1, 0, &[harness.whole_page(0)]);
    let bad_grant = encode::direct(op::WRITE, 2, 0, &[ungranted]);
    let past_end = encode::direct(op::READ, 3, 2048, &[harness.whole_page(1)]);
    let unknown = encode::direct(42, 4, 0, &[]);
    let responses = harness.run(&[good, bad_grant, past_end, unknown]);
    assert_eq!(
        responses,
        [
            (1, rsp::OKAY),
            (2, rsp::ERROR),
            (3, rsp::ERROR),
            (4, rsp::EOPNOTSUPP)
        ]
    );
    assert_eq!(harness.session.figures().counters.errors, 3);
    assert_eq!(harness.live_maps(), 1);
    assert!(harness.closed.is_none());
}

#[test]
fn a_producer_jump_ends_the_device_with_an_error_node_and_nothing_mapped() {
    let mut harness = Harness::new(0);
    harness.connect(true);
    harness.fill_data(0, 1);
    let write = encode::direct(op::WRITE, 1, 0, &[harness.whole_page(0)]);
    assert_eq!(harness.run(&[write]), [(1, rsp::OKAY)]);
    assert_eq!(harness.live_maps(), 2, "ring and one persistent grant");
    harness
        .front
        .memory
        .store_u32(header_offset::REQ_PROD, 1000)
        .unwrap();
    harness.sync_to_sim();
    harness.deliver(PeerEvent::EventChannel);
    assert!(
        matches!(harness.closed, Some(CloseReason::Fault(_))),
        "{:?}",
        harness.closed
    );
    assert!(harness
        .writes
        .iter()
        .any(|(name, value)| *name == "error" && value.contains("req_prod 1000")));
    assert_eq!(harness.state_written(), Some("6"));
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.closed_ports, 1);
    assert_eq!(
        harness.budget.borrow().available(),
        1 << 20,
        "the disk's memory is back"
    );
}

#[test]
fn an_offer_refused_past_the_node_quota_ends_the_device_with_the_quota_in_its_error_node() {
    let mut harness = Harness::new(0);
    harness.writes.clear();
    let refusal = crate::peer::store_limit::StoreRefusal::write(
        "max-ring-page-order",
        xenstore::ReplyError::Xenstore(xenstore::XsError::NoSpace),
    );
    harness.deliver(PeerEvent::OwnNodesNotWritten(refusal));
    assert_eq!(
        harness.closed,
        Some(CloseReason::OwnNodesNotWritten(refusal))
    );
    // Its offer goes first, to make room for the error node under the same quota.
    assert_eq!(
        harness.removed,
        [
            "feature-max-indirect-segments",
            "max-ring-page-order",
            "multi-queue-max-queues"
        ]
    );
    let error = harness
        .writes
        .iter()
        .find(|(name, _)| *name == "error")
        .map(|(_, value)| value.as_str());
    assert_eq!(
        error,
        Some(
            "backend nodes not written: max-ring-page-order refused with ENOSPC: xenstored's \
             quota of nodes per domain is exhausted (xenstored --entry-nb; or a node reached \
             --entry-size)"
        )
    );
    assert_eq!(harness.state_written(), Some("6"));
    assert_eq!(harness.budget.borrow().available(), 1 << 20);
}

#[test]
fn a_refusal_that_names_no_quota_ends_the_device_and_removes_nothing() {
    let mut harness = Harness::new(0);
    harness.connect(false);
    harness.writes.clear();
    let refusal = crate::peer::store_limit::StoreRefusal::transaction_failed();
    harness.deliver(PeerEvent::OwnNodesNotWritten(refusal));
    assert!(harness.removed.is_empty());
    assert_eq!(harness.state_written(), Some("6"));
    assert_eq!(harness.live_maps(), 0);
}

#[test]
fn a_detach_ends_after_the_frontend_closes_and_a_reconnect_keeps_the_data() {
    let mut harness = Harness::new(0);
    harness.connect(false);
    harness.fill_data(0, 0x77);
    let write = encode::direct(op::WRITE, 1, 16, &[harness.whole_page(0)]);
    assert_eq!(harness.run(&[write]), [(1, rsp::OKAY)]);
    // The frontend closes with the device online (blkfront unloaded): kept, reconnectable.
    harness.deliver(PeerEvent::PeerState(b"6"));
    harness.finish_drain();
    assert_eq!(harness.state_written(), Some("6"));
    assert!(harness.closed.is_none());
    assert_eq!(harness.live_maps(), 0);
    harness.deliver(PeerEvent::PeerState(b"1"));
    assert_eq!(harness.state_written(), Some("2"));
    harness.front = ModelFrontend::new(0);
    harness.sync_to_sim();
    harness.connect(false);
    let read = encode::direct(op::READ, 2, 16, &[harness.whole_page(5)]);
    assert_eq!(harness.run(&[read]), [(2, rsp::OKAY)]);
    assert_eq!(harness.data(5), alloc::vec![0x77; PAGE_SIZE]);
    // xl block-detach: online=0, then the frontend closes.
    harness.deliver(PeerEvent::ToolstackOffline);
    assert!(harness.closed.is_none());
    harness.deliver(PeerEvent::PeerState(b"5"));
    harness.deliver(PeerEvent::PeerState(b"6"));
    assert!(harness.closed.is_none(), "the drain holds the close");
    harness.finish_drain();
    assert_eq!(
        harness.closed,
        Some(CloseReason::Protocol(BlkEnding::Detached))
    );
    assert_eq!(harness.state_written(), Some("6"));
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.budget.borrow().available(), 1 << 20);
}

#[test]
fn requests_left_on_the_ring_when_the_frontend_closes_are_answered_before_the_unmap() {
    // xl block-detach during a write: blkfront sees the backend's Closing (written by the
    // toolstack), closes at once, and waits for the requests it already sent.
    for (state, persistent) in [(&b"5"[..], false), (&b"6"[..], true)] {
        let mut harness = Harness::new(0);
        harness.connect(persistent);
        harness.deliver(PeerEvent::ToolstackOffline);
        let notifies_before = harness.notifies;
        harness.leave_write_on_ring(7);
        // The frontend's state arrives before its event: no EventChannel is delivered.
        harness.deliver(PeerEvent::PeerState(state));
        assert_eq!(harness.take_answers(), [(7, rsp::OKAY)]);
        assert_eq!(harness.notifies, notifies_before + 1);
        assert_eq!(harness.data_written(), PAGE_SIZE as u64);
        harness.finish_drain();
        assert_eq!(harness.live_maps(), 0);
        assert_eq!(harness.closed_ports, 1);
    }
}

#[test]
fn a_write_blkfront_restarts_after_its_close_is_answered_before_the_unmap() {
    // Linux blkfront stops its queues as it closes; a write being submitted then waits in a
    // stopped queue until an event restarts it, and then lands on the ring after the close.
    let mut harness = Harness::new(0);
    harness.connect(false);
    harness.deliver(PeerEvent::ToolstackOffline);
    harness.session.set_time(1_000);
    let notifies_before = harness.notifies;
    harness.deliver(PeerEvent::PeerState(b"6"));
    assert_eq!(
        harness.notifies,
        notifies_before + 1,
        "the frontend is signalled at its close even with nothing to answer"
    );
    assert_eq!(
        harness.session.drain_due(),
        Some(1_000 + DRAIN_QUIET_MILLISECONDS)
    );
    assert!(harness.closed.is_none());
    assert_eq!(harness.state_written(), Some("4"));
    // The restarted write arrives 100 ms later.
    harness.session.set_time(1_100);
    harness.leave_write_on_ring(11);
    harness.deliver(PeerEvent::EventChannel);
    assert_eq!(harness.take_answers(), [(11, rsp::OKAY)]);
    assert_eq!(harness.data_written(), PAGE_SIZE as u64);
    assert_eq!(
        harness.session.drain_due(),
        Some(1_100 + DRAIN_QUIET_MILLISECONDS),
        "an answered request moves the end of the drain"
    );
    // A wake-up before the quiet period is over keeps the ring.
    harness.session.set_time(1_200);
    harness.deliver(PeerEvent::EventChannel);
    assert_eq!(harness.live_maps(), 1);
    harness.finish_drain();
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.closed_ports, 1);
    assert_eq!(harness.state_written(), Some("6"));
    assert_eq!(
        harness.closed,
        Some(CloseReason::Protocol(BlkEnding::Detached))
    );
}

#[test]
fn a_frontend_that_keeps_sending_after_its_close_is_let_go_when_the_drain_reaches_its_limit() {
    let mut harness = Harness::new(0);
    harness.connect(false);
    harness.session.set_time(0);
    harness.deliver(PeerEvent::PeerState(b"6"));
    let mut now = 0;
    let mut id = 100;
    while harness.session.drain_due().is_some() {
        now += DRAIN_QUIET_MILLISECONDS / 2;
        assert!(now <= DRAIN_MAX_MILLISECONDS + DRAIN_QUIET_MILLISECONDS);
        harness.session.set_time(now);
        id += 1;
        harness.leave_write_on_ring(id);
        harness.deliver(PeerEvent::EventChannel);
        assert_eq!(harness.take_answers(), [(id, rsp::OKAY)]);
    }
    assert!(now >= DRAIN_MAX_MILLISECONDS, "let go at {now} ms");
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.state_written(), Some("6"));
}

#[test]
fn a_drain_ends_at_once_when_the_frontend_comes_back_or_dies() {
    // Back: the old rings go and the offer is made again.
    let mut harness = Harness::new(0);
    harness.connect(false);
    harness.deliver(PeerEvent::PeerState(b"6"));
    assert!(harness.session.drain_due().is_some());
    harness.deliver(PeerEvent::PeerState(b"1"));
    assert_eq!(harness.session.drain_due(), None);
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.closed_ports, 1);
    assert_eq!(harness.state_written(), Some("2"));
    assert!(harness.closed.is_none());
    // Dead: nothing is answered any more, everything is unmapped.
    let mut harness = Harness::new(1);
    harness.connect(true);
    harness.deliver(PeerEvent::PeerState(b"6"));
    harness.leave_write_on_ring(12);
    harness.deliver(PeerEvent::DomainDied);
    assert_eq!(harness.take_answers(), []);
    assert_eq!(harness.live_maps(), 0);
    assert_eq!(harness.closed, Some(CloseReason::DomainDied));
}

#[test]
fn requests_left_on_the_ring_are_answered_at_shutdown_and_removal_and_not_after_the_frontend_died()
{
    // (event, answered, the last state written: none after the own directory went)
    for (event, answered, state) in [
        (PeerEvent::Shutdown, true, "6"),
        (PeerEvent::OwnNodesRemoved, true, "4"),
        (PeerEvent::PeerNodesRemoved, true, "6"),
        (PeerEvent::DomainDied, false, "6"),
    ] {
        let mut harness = Harness::new(0);
        harness.connect(false);
        harness.leave_write_on_ring(9);
        harness.deliver(event);
        let expected: &[(u64, i16)] = if answered { &[(9, rsp::OKAY)] } else { &[] };
        assert_eq!(harness.take_answers(), expected);
        assert_eq!(
            harness.data_written(),
            if answered { PAGE_SIZE as u64 } else { 0 }
        );
        assert!(harness.closed.is_some());
        assert_eq!(harness.live_maps(), 0);
        assert_eq!(harness.state_written(), Some(state));
    }
}

#[test]
fn a_disk_the_budget_cannot_hold_is_refused() {
    let budget: SharedBudget = Rc::new(RefCell::new(MemoryBudget::new(1 << 20)));
    let refused = Session::new(PEER, DEVICE, pmap(), request(4096), budget.clone());
    assert!(refused.is_err());
    assert_eq!(budget.borrow().available(), 1 << 20);
}

#[test]
fn shutdown_and_death_unmap_everything() {
    for event in [0, 1] {
        let mut harness = Harness::new(1);
        harness.connect(true);
        harness.fill_data(0, 3);
        let write = encode::direct(op::WRITE, 1, 0, &[harness.whole_page(0)]);
        harness.run(&[write]);
        assert_eq!(harness.live_maps(), 3);
        harness.deliver(if event == 0 {
            PeerEvent::Shutdown
        } else {
            PeerEvent::DomainDied
        });
        assert!(harness.closed.is_some());
        assert_eq!(harness.live_maps(), 0);
        assert_eq!(harness.state_written(), Some("6"));
    }
}

#[test]
fn persistent_grants_unused_for_a_minute_are_unmapped_and_no_purge_is_due_without_them() {
    let mut harness = Harness::new(0);
    harness.connect(true);
    assert_eq!(harness.session.purge_due(), None, "nothing cached yet");
    harness.session.set_time(1_000);
    let write = encode::direct(
        op::WRITE,
        1,
        0,
        &[harness.whole_page(0), harness.whole_page(1)],
    );
    assert_eq!(harness.run(&[write]), [(1, rsp::OKAY)]);
    harness.session.set_time(31_000);
    let read = encode::direct(op::READ, 2, 0, &[harness.whole_page(2)]);
    assert_eq!(harness.run(&[read]), [(2, rsp::OKAY)]);
    assert_eq!(harness.session.figures().persistent_grants, 3);
    assert_eq!(harness.session.purge_due(), Some(61_000));
    assert_eq!(harness.session.purge_idle_grants(60_999), 0);
    // Pages 0 and 1 were last used at 1 s, page 2 at 31 s.
    assert_eq!(harness.session.purge_idle_grants(61_000), 2);
    assert_eq!(harness.session.figures().persistent_grants, 1);
    assert_eq!(harness.live_maps(), 1 + 1);
    assert_eq!(harness.session.purge_due(), Some(91_000));
    // Purges are at least Linux's LRU interval apart.
    assert_eq!(harness.session.purge_idle_grants(61_010), 0);
    harness.session.set_time(61_020);
    let reuse = encode::direct(op::READ, 3, 0, &[harness.whole_page(2)]);
    assert_eq!(harness.run(&[reuse]), [(3, rsp::OKAY)]);
    assert_eq!(harness.session.purge_idle_grants(121_019), 0);
    assert_eq!(harness.session.purge_idle_grants(121_020), 1);
    assert_eq!(harness.live_maps(), 1, "only the ring");
    assert_eq!(harness.session.purge_due(), None);
    // The device still serves, mapping again.
    let again = encode::direct(op::READ, 4, 0, &[harness.whole_page(0)]);
    assert_eq!(harness.run(&[again]), [(4, rsp::OKAY)]);
    assert_eq!(harness.session.figures().persistent_grants, 1);
}

#[test]
fn with_persistent_grants_an_indirect_page_is_mapped_once_and_reused() {
    let mut harness = Harness::new(0);
    harness.connect(true);
    // The segment list in data page 299, the data in pages 0..16 (a 64 KiB request).
    let mut list = alloc::vec![0u8; PAGE_SIZE];
    for index in 0..16 {
        harness.fill_data(index, index as u8 + 1);
        let segment = harness.whole_page(index);
        list[index * 8..index * 8 + 8].copy_from_slice(&encode::segment_bytes(&segment));
    }
    let frame = harness.data_frames[299];
    harness
        .lock
        .lock()
        .hypervisor_mut()
        .write_frame(frame, 0, &list);
    let before = harness.lock.lock().stats().maps;
    let write = encode::indirect(op::WRITE, 1, 0, 16, &[harness.data_refs[299]]);
    assert_eq!(harness.run(&[write]), [(1, rsp::OKAY)]);
    let maps = harness.lock.lock().stats().maps;
    assert_eq!(maps - before, 17, "16 data pages and the indirect page");
    assert_eq!(harness.session.figures().persistent_grants, 17);
    assert_eq!(harness.live_maps(), 1 + 17);
    // The same pages again: nothing is mapped.
    let again = encode::indirect(op::WRITE, 2, 128, 16, &[harness.data_refs[299]]);
    assert_eq!(harness.run(&[again]), [(2, rsp::OKAY)]);
    assert_eq!(harness.lock.lock().stats().maps, maps);
    let read = encode::direct(op::READ, 3, 128 + 8 * 15, &[harness.whole_page(200)]);
    assert_eq!(harness.run(&[read]), [(3, rsp::OKAY)]);
    assert_eq!(harness.data(200), alloc::vec![16u8; PAGE_SIZE]);
    harness.deliver(PeerEvent::PeerState(b"5"));
    harness.finish_drain();
    assert_eq!(
        harness.live_maps(),
        0,
        "every persistent grant unmapped at close"
    );
}
