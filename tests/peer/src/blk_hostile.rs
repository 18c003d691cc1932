//! `grantsvc-peer blk-hostile`: act as toolstack and a misbehaving blkfront for one vbd per case, check grantsvc's answer, detach as libxl does, and check nothing stays mapped.

use crate::blk_args::HostileOptions;
use crate::blk_cases::{
    indirect_page_segments, rewritten_pair, Case, Expected, Grants, Outcome, FLIPPED_BYTE,
};
use crate::blk_nodes::{backend_path, error_path, frontend_path, Attach, Negotiation, NodeGarbage};
use crate::blk_ring::{FrontRing, ResponseSeen};
use crate::evtchn::EventChannels;
use crate::gntalloc::GrantedPages;
use crate::pins;
use crate::store::Store;
use grantsvc::abi::blkif::{op, status, SECTOR_SIZE};
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, EvtchnPort, GrantRef};
use grantsvc::peer::blkif::frontend_nodes::{BackendOffer, FrontendConfig, FrontendNodes};
use grantsvc::peer::blkif::request::{encode, Segment};
use grantsvc::peer::share::pattern;
use grantsvc::peer::xenbus_state::XenbusState;
use std::time::{Duration, Instant};
use xenstore::NodePermissions;

/// libxl's bound on a backend's answer to attach and detach (`LIBXL_INIT_TIMEOUT`,
/// `LIBXL_DESTROY_TIMEOUT`).
const TOOLSTACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the good I/O after a case goes (clear of the sectors the cases write).
const GOOD_SECTOR: u64 = 16;

fn say(line: &str) {
    println!("grantsvc-peer: {line}");
}

/// Runs every chosen case on its own device; Ok is the summary, Err lists the failed cases.
pub fn run(options: &HostileOptions) -> Result<String, String> {
    if std::path::Path::new("/sys/module/xen_blkfront").exists() {
        return Err(
            "dom0's xen-blkfront is loaded and would bind the device nodes this tool \
                    writes: 'modprobe -r xen_blkfront' first"
                .to_string(),
        );
    }
    let mut failures = Vec::new();
    let mut granted = Vec::new();
    for (index, case) in options.cases.iter().enumerate() {
        let devid = options.devid_base + index as u32;
        // A line before each case too: if one never ends, the output says which.
        say(&format!("case {} on vbd {devid}: starting", case.name()));
        let started = Instant::now();
        let outcome = run_case(options, *case, devid, &mut granted);
        let seconds = started.elapsed().as_secs_f32();
        match outcome {
            Ok(detail) => say(&format!(
                "case {} on vbd {devid}: ok: {detail} ({seconds:.1} s)",
                case.name()
            )),
            Err(reason) => {
                say(&format!(
                    "case {} on vbd {devid}: FAILED: {reason} ({seconds:.1} s)",
                    case.name()
                ));
                failures.push(case.name());
            }
        }
    }
    let pins = if options.check_pins {
        check_pins(options, &granted)?
    } else {
        String::new()
    };
    if failures.is_empty() {
        Ok(format!(
            "{} case(s) each answered or ended cleanly, grantsvc's mapped-pages 0 after each{pins}",
            options.cases.len()
        ))
    } else {
        Err(format!(
            "{} of {} case(s) failed: {}",
            failures.len(),
            options.cases.len(),
            failures.join(" ")
        ))
    }
}

/// Xen's own view, once every device is gone: none of the pages the cases granted is still
/// mapped by grantsvc. (A page grantsvc kept mapped keeps its grant alive in gntalloc after
/// the release, so its ref cannot have been handed out again and shows in the dump.)
fn check_pins(options: &HostileOptions, granted: &[GrantRef]) -> Result<String, String> {
    let own = Store::open()?.own_domid()?;
    let pinned = pins::pinned_now(own, options.domid, granted)
        .map_err(|error| format!("reading Xen's grant-table dump: {error}"))?;
    if !pinned.is_empty() {
        return Err(format!(
            "Xen shows {} of the {} grants the cases made still mapped by d{}: {pinned:?}",
            pinned.len(),
            granted.len(),
            options.domid
        ));
    }
    Ok(format!(
        ", and none of the {} grants they made mapped in Xen's grant-table dump",
        granted.len()
    ))
}

/// One device: its directories, its granted pages and its event channel.
struct Device {
    store: Store,
    attach: Attach,
    backend_dir: String,
    frontend_dir: String,
    ring: FrontRing<GrantedPages>,
    data: GrantedPages,
    read_only: GrantedPages,
    indirect: GrantedPages,
    channels: EventChannels,
    port: EvtchnPort,
    /// The disk's size from the backend's `sectors`, once connected.
    sectors: u64,
    /// The backend offered `feature-flush-cache`.
    flush: bool,
    timeout: Duration,
}

fn run_case(
    options: &HostileOptions,
    case: Case,
    devid: u32,
    granted: &mut Vec<GrantRef>,
) -> Result<String, String> {
    let mut device = attach(options, case, devid)?;
    let outcome = exercise(options, case, &mut device);
    let detached = detach(&mut device);
    granted.extend(device.all_refs());
    let unmapped = wait_unmapped(&mut device.store, options.domid);
    device.release();
    let detail = outcome?;
    detached?;
    unmapped?;
    Ok(format!(
        "{detail}; detached, grantsvc's mapped-pages back to 0"
    ))
}

/// How long grantsvc may take to publish its counters (it rate-limits them).
const COUNTER_WAIT: Duration = Duration::from_secs(10);

/// Waits until grantsvc publishes `mapped-pages` 0 (no other device is attached meanwhile).
fn wait_unmapped(store: &mut Store, grantsvc: DomId) -> Result<(), String> {
    let path = format!("/local/domain/{grantsvc}/data/grantsvc/mapped-pages");
    let deadline = Instant::now() + COUNTER_WAIT;
    loop {
        let value = store.read_text(&path)?;
        if value.as_deref() == Some("0") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "grantsvc's mapped-pages is {value:?}, not 0, {} s after detach",
                COUNTER_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes both directories as libxl does and waits for InitWait, then grants the pages.
fn attach(options: &HostileOptions, case: Case, devid: u32) -> Result<Device, String> {
    let mut store = Store::open()?;
    let own = store.own_domid()?;
    let attach = Attach {
        backend: options.domid,
        frontend: own,
        devid,
        target: format!("ram:{}M", options.disk_mib),
        writable: !case.read_only_disk(),
    };
    let backend_dir = backend_path(options.domid, own, devid);
    let frontend_dir = frontend_path(own, devid);
    store.remove(&frontend_dir)?;
    store.remove(&backend_dir)?;
    let grant = |count: u32, writable: bool| {
        GrantedPages::allocate(options.domid, count, writable)
            .map_err(|error| format!("gntalloc of {count} page(s): {error}"))
    };
    let ring = FrontRing::init(grant(1, true)?, 0)?;
    let data = grant(2, true)?;
    let read_only = grant(1, false)?;
    let indirect = grant(8, true)?;
    let segments = indirect_page_segments(data.refs()[0]);
    for page in 0..8 {
        indirect
            .write_bytes(page * PAGE_SIZE, &segments)
            .map_err(|error| format!("filling indirect page {page}: {error}"))?;
    }
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let port = channels
        .allocate_unbound(options.domid)
        .map_err(|error| format!("allocating a port for d{}: {error}", options.domid))?;
    let backend_nodes = attach.backend_nodes();
    let frontend_nodes = attach.frontend_nodes();
    store.create_directories(&[
        (
            &backend_dir,
            &NodePermissions::owner_and_reader(options.domid, own),
            &backend_nodes,
        ),
        (
            &frontend_dir,
            &NodePermissions::owner_and_reader(own, options.domid),
            &frontend_nodes,
        ),
    ])?;
    let device = Device {
        store,
        attach,
        backend_dir,
        frontend_dir,
        ring,
        data,
        read_only,
        indirect,
        channels,
        port,
        sectors: 0,
        flush: false,
        timeout: options.timeout,
    };
    Ok(device)
}

impl Device {
    fn all_refs(&self) -> Vec<GrantRef> {
        [
            self.ring.memory().refs(),
            self.data.refs(),
            self.read_only.refs(),
            self.indirect.refs(),
        ]
        .concat()
    }

    fn grants(&self) -> Grants {
        Grants {
            data: [self.data.refs()[0], self.data.refs()[1]],
            read_only: self.read_only.refs()[0],
            indirect: self.indirect.refs().to_vec(),
        }
    }

    fn backend(&mut self, name: &str) -> Result<Option<String>, String> {
        self.store
            .read_text(&format!("{}/{name}", self.backend_dir))
    }

    /// The device's error: the backend directory's `error` node, or Linux's place for it.
    fn error_node(&mut self) -> Result<Option<String>, String> {
        match self.backend("error")? {
            Some(error) => Ok(Some(error)),
            None => self.store.read_text(&error_path(
                self.attach.backend,
                self.attach.frontend,
                self.attach.devid,
            )),
        }
    }

    fn notify(&self) -> Result<(), String> {
        self.channels
            .notify(self.port)
            .map_err(|error| format!("notifying port {}: {error}", self.port))
    }

    /// Pushes the placed requests and notifies (always: a hostile frontend need not care
    /// whether the backend asked).
    fn push(&mut self) -> Result<(), String> {
        self.ring.push()?;
        self.notify()
    }

    /// Collects `count` responses, waiting on the event channel at most the timeout.
    fn responses(&mut self, count: usize) -> Result<Vec<ResponseSeen>, String> {
        let deadline = Instant::now() + self.timeout;
        let mut responses = Vec::new();
        loop {
            responses.extend(self.ring.take_responses()?);
            if responses.len() >= count {
                return Ok(responses);
            }
            if Instant::now() >= deadline {
                let state = self.store.backend_state(&self.backend_dir)?;
                return Err(format!(
                    "{} of {count} response(s) after {} s (backend {}, error {:?})",
                    responses.len(),
                    self.timeout.as_secs(),
                    state.map_or("gone".to_string(), |state| state.to_string()),
                    self.error_node()?
                ));
            }
            self.channels
                .wait(Duration::from_millis(20))
                .map_err(|error| format!("waiting on the event channel: {error}"))?;
        }
    }

    /// Sends one request and returns its response.
    fn round_trip(&mut self, request: &Expected) -> Result<ResponseSeen, String> {
        self.ring.place(&request.request)?;
        self.push()?;
        let responses = self.responses(1)?;
        match responses.as_slice() {
            [one] => Ok(*one),
            more => Err(format!("{} responses to one request: {more:?}", more.len())),
        }
    }

    fn release(self) {
        let _ = self.channels.unbind(self.port);
        for pages in [
            self.ring.into_memory(),
            self.data,
            self.read_only,
            self.indirect,
        ] {
            if let Err(error) = pages.release() {
                say(&format!("releasing granted pages: {error}"));
            }
        }
    }
}

/// Negotiates, then runs the case.
fn exercise(options: &HostileOptions, case: Case, device: &mut Device) -> Result<String, String> {
    let state = device.store.wait_for_backend(
        &device.backend_dir,
        &[XenbusState::InitWait],
        TOOLSTACK_TIMEOUT,
    )?;
    let offer = read_offer(device)?;
    let mut negotiation = Negotiation::new(device.ring.memory().refs(), 0, device.port, false);
    if let Case::Node(kind) = case {
        kind.corrupt(&mut negotiation);
    }
    let nodes: Vec<(&str, &str)> = negotiation
        .nodes
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    device.store.write_nodes(&device.frontend_dir, &nodes)?;
    if let Case::Node(kind) = case {
        let error = expect_ended(device, "its garbage node")?;
        check_fault_text(kind, &negotiation, &offer, &error)?;
        return Ok(format!("backend {state} then ended: error '{error}'"));
    }
    let state = device.store.wait_for_backend(
        &device.backend_dir,
        &[
            XenbusState::Connected,
            XenbusState::Closing,
            XenbusState::Closed,
        ],
        device.timeout,
    )?;
    if state != XenbusState::Connected {
        return Err(format!(
            "backend went to {state} instead of Connected: error {:?}",
            device.error_node()?
        ));
    }
    device.sectors = read_number(device, "sectors")?;
    device.flush = device.backend("feature-flush-cache")?.as_deref() == Some("1");
    let info = read_number(device, "info")?;
    if case.read_only_disk() && info & u64::from(grantsvc::abi::blkif::vdisk::READONLY) == 0 {
        return Err(format!("read-only disk but info is {info}"));
    }
    device.store.write(
        &format!("{}/state", device.frontend_dir),
        XenbusState::Connected.as_str(),
    )?;
    let detail = match case {
        Case::ProducerJump => producer_jump(device)?,
        Case::Rewritten => rewritten(options, device)?,
        Case::EventStorm => event_storm(options, device)?,
        _ => bad_requests(case, device)?,
    };
    if case.outcome() == Outcome::Answered && case.read_only_disk() {
        let back = read_back(device, 0x600d_0004, GOOD_SECTOR)?;
        if back.iter().any(|&byte| byte != 0) {
            return Err("a read of the fresh read-only disk is not zeros".to_string());
        }
        return Ok(format!("{detail}; then a good read of zeros"));
    }
    if case.outcome() == Outcome::Answered {
        let seed = device.attach.devid;
        let good = good_io(device, seed)?;
        return Ok(format!("{detail}; then {good}"));
    }
    Ok(detail)
}

fn read_number(device: &mut Device, name: &str) -> Result<u64, String> {
    let value = device
        .backend(name)?
        .ok_or_else(|| format!("backend node {name} missing once Connected"))?;
    value
        .parse()
        .map_err(|_| format!("backend node {name} is '{value}', not a number"))
}

/// What grantsvc offered before InitWait (its decoder's bounds for the garbage checks).
fn read_offer(device: &mut Device) -> Result<BackendOffer, String> {
    let mut number = |name: &str| -> Result<u32, String> {
        let value = device
            .backend(name)?
            .ok_or_else(|| format!("backend node {name} missing at InitWait"))?;
        value
            .parse()
            .map_err(|_| format!("backend node {name} is '{value}'"))
    };
    Ok(BackendOffer {
        max_ring_page_order: number("max-ring-page-order")?,
        max_queues: number("multi-queue-max-queues")?,
        max_indirect_segments: u16::try_from(number("feature-max-indirect-segments")?)
            .map_err(|_| "feature-max-indirect-segments is past 65535".to_string())?,
    })
}

/// Waits for the backend to leave the device (Closing or Closed) with an error node; returns it.
fn expect_ended(device: &mut Device, after: &str) -> Result<String, String> {
    let state = device.store.wait_for_backend(
        &device.backend_dir,
        &[
            XenbusState::Connected,
            XenbusState::Closing,
            XenbusState::Closed,
        ],
        device.timeout,
    );
    match state {
        Ok(XenbusState::Connected) => {
            // A garbage node may be found only at connect: give it the rest of the timeout.
            device.store.wait_for_backend(
                &device.backend_dir,
                &[XenbusState::Closing, XenbusState::Closed],
                device.timeout,
            )?;
        }
        Ok(_) => {}
        // The backend may have removed its directory at once; the error node then decides.
        Err(reason) if device.store.backend_state(&device.backend_dir)?.is_some() => {
            return Err(format!("device not ended after {after}: {reason}"))
        }
        Err(_) => {}
    }
    match device.error_node()? {
        Some(error) if !error.is_empty() => Ok(error),
        _ => Err(format!(
            "device ended after {after} without an error node ({}/error or {})",
            device.backend_dir,
            error_path(
                device.attach.backend,
                device.attach.frontend,
                device.attach.devid
            )
        )),
    }
}

struct Nodes<'a>(&'a Negotiation);

impl FrontendNodes for Nodes<'_> {
    fn read(&self, key: &str) -> Option<&[u8]> {
        self.0.get(key).map(str::as_bytes)
    }
}

/// A garbage value grantsvc's decoder refuses must be named in the error node as the decoder
/// names it; values only Xen refuses (a ref that does not map, a port never offered) and
/// garbage `state` values need only an error.
fn check_fault_text(
    kind: NodeGarbage,
    negotiation: &Negotiation,
    offer: &BackendOffer,
    error: &str,
) -> Result<(), String> {
    if kind.refused_by_xen() || kind.in_state() {
        return Ok(());
    }
    match FrontendConfig::decode(&Nodes(negotiation), offer) {
        Ok(config) => Err(format!(
            "grantsvc's decoder accepts this garbage ({config:?}), yet the device ended"
        )),
        Err(fault) if error.contains(&fault.to_string()) => Ok(()),
        Err(fault) => Err(format!(
            "error node '{error}' does not name the fault '{fault}'"
        )),
    }
}

/// Sends the case's bad requests in one push; each id must be answered once as expected.
fn bad_requests(case: Case, device: &mut Device) -> Result<String, String> {
    let expected = case.requests(&device.grants(), device.sectors);
    for request in &expected {
        device.ring.place(&request.request)?;
    }
    device.push()?;
    let responses = device.responses(expected.len())?;
    check_answers(&expected, &responses)?;
    Ok(format!(
        "{} request(s) answered {}",
        expected.len(),
        expected
            .iter()
            .map(|request| status_name(request.status))
            .collect::<Vec<_>>()
            .join(" ")
    ))
}

fn status_name(status: i16) -> &'static str {
    match status {
        status::OKAY => "OKAY",
        status::ERROR => "ERROR",
        status::EOPNOTSUPP => "EOPNOTSUPP",
        _ => "an unknown status",
    }
}

/// Every expected id answered exactly once with its operation and status, nothing else.
fn check_answers(expected: &[Expected], responses: &[ResponseSeen]) -> Result<(), String> {
    if responses.len() != expected.len() {
        return Err(format!(
            "{} responses to {} requests: {responses:?}",
            responses.len(),
            expected.len()
        ));
    }
    for request in expected {
        let answers: Vec<_> = responses
            .iter()
            .filter(|response| response.id == request.id)
            .collect();
        match answers.as_slice() {
            [answer] if answer.operation == request.operation && answer.status == request.status => {}
            [answer] => {
                return Err(format!(
                    "request {:#x} (operation {}) answered operation {} status {}, expected status {} ({})",
                    request.id,
                    request.operation,
                    answer.operation,
                    answer.status,
                    request.status,
                    status_name(request.status)
                ))
            }
            other => {
                return Err(format!(
                    "request {:#x} answered {} times",
                    request.id,
                    other.len()
                ))
            }
        }
    }
    Ok(())
}

fn whole_page(gref: GrantRef) -> Segment {
    Segment {
        gref,
        first_sect: 0,
        last_sect: 7,
    }
}

fn okay(id: u64, operation: u8, request: grantsvc::peer::blkif::request::RequestBytes) -> Expected {
    Expected {
        request,
        id,
        operation,
        status: status::OKAY,
    }
}

/// Reads `sector`'s page of the disk into data page 1 and returns it.
fn read_back(device: &mut Device, id: u64, sector: u64) -> Result<Vec<u8>, String> {
    device
        .data
        .write_page(1, &[0xee; PAGE_SIZE])
        .map_err(|error| format!("clearing data page 1: {error}"))?;
    let read = okay(
        id,
        op::READ,
        encode::direct(op::READ, id, sector, &[whole_page(device.data.refs()[1])]),
    );
    let answer = device.round_trip(&read)?;
    check_answers(&[read], &[answer])?;
    Ok(device
        .data
        .read_page(1)
        .map_err(|error| format!("reading data page 1: {error}"))?
        .to_vec())
}

/// Writes `page` at `sector` from data page 0.
fn write_at(
    device: &mut Device,
    id: u64,
    sector: u64,
    page: &[u8; PAGE_SIZE],
) -> Result<(), String> {
    device
        .data
        .write_page(0, page)
        .map_err(|error| format!("filling data page 0: {error}"))?;
    let write = okay(
        id,
        op::WRITE,
        encode::direct(op::WRITE, id, sector, &[whole_page(device.data.refs()[0])]),
    );
    let answer = device.round_trip(&write)?;
    check_answers(&[write], &[answer])
}

/// A write, a flush and a read back of the same page on the same ring.
fn good_io(device: &mut Device, seed: u32) -> Result<String, String> {
    let page = pattern::page(0xb10c_0000 ^ seed, 0);
    write_at(device, 0x600d_0001, GOOD_SECTOR, &page)?;
    if device.flush {
        let flush = okay(
            0x600d_0002,
            op::FLUSH_DISKCACHE,
            encode::direct(op::FLUSH_DISKCACHE, 0x600d_0002, 0, &[]),
        );
        let answer = device.round_trip(&flush)?;
        check_answers(&[flush], &[answer])?;
    }
    let back = read_back(device, 0x600d_0003, GOOD_SECTOR)?;
    if back != page {
        return Err("the good write read back different".to_string());
    }
    Ok(format!(
        "good write{} and read back identical",
        if device.flush { ", flush" } else { "" }
    ))
}

/// `req_prod` a ring and more past the responses: the device must end.
fn producer_jump(device: &mut Device) -> Result<String, String> {
    let jump = device.ring.rsp_prod()? + device.ring.slots() + 5;
    device.ring.force_req_prod(jump)?;
    device.notify()?;
    let error = expect_ended(device, &format!("req_prod jumped to {jump}"))?;
    let answered = device.ring.rsp_prod()?;
    if answered != 0 {
        return Err(format!(
            "grantsvc answered {answered} requests of the bogus ring"
        ));
    }
    Ok(format!(
        "req_prod {jump} on a {}-slot ring ended the device: error '{error}'",
        device.ring.slots()
    ))
}

/// Flips a published slot between two versions until it is answered, `rounds` times; each
/// answer must be one version's, whole.
fn rewritten(options: &HostileOptions, device: &mut Device) -> Result<String, String> {
    let (mut took_good, mut took_bad, mut flips) = (0u32, 0u32, 0u64);
    let zero = vec![0u8; PAGE_SIZE];
    for round in 0..u64::from(options.rounds) {
        // Two fresh pages of the disk per round, far from the good I/O: the write's and the
        // one a ninth sector would reach.
        let sector = 1024 + 16 * round;
        let id = 0x0bad_0000 + round;
        let page = pattern::page(0x5eed ^ round as u32, 1);
        device
            .data
            .write_page(0, &page)
            .map_err(|error| format!("filling data page 0: {error}"))?;
        let [good, bad] = rewritten_pair(device.data.refs()[0], id, sector);
        let (good_byte, bad_byte) = (good.request.0[FLIPPED_BYTE], bad.request.0[FLIPPED_BYTE]);
        let index = device.ring.place(&good.request)?;
        let before = device.ring.rsp_prod()?;
        device.push()?;
        let deadline = Instant::now() + device.timeout;
        while device.ring.rsp_prod()? == before && Instant::now() < deadline {
            device.ring.store_slot_byte(index, FLIPPED_BYTE, bad_byte)?;
            device
                .ring
                .store_slot_byte(index, FLIPPED_BYTE, good_byte)?;
            flips += 1;
        }
        let answer = match device.responses(1)?.as_slice() {
            [one] => *one,
            more => {
                return Err(format!(
                    "round {round}: {} responses to one request",
                    more.len()
                ))
            }
        };
        if answer.id != id || answer.operation != op::WRITE {
            return Err(format!(
                "round {round}: answer {answer:?} to request {id:#x}"
            ));
        }
        let at_sector = read_back(device, 0x0bad_8000 + 2 * round, sector)?;
        let after = read_back(device, 0x0bad_8001 + 2 * round, sector + 8)?;
        match answer.status {
            status::OKAY if at_sector == page && after == zero => took_good += 1,
            status::ERROR if at_sector == zero && after == zero => took_bad += 1,
            status => {
                return Err(format!(
                    "round {round}: answered {} with sector {sector}'s page {} and the next {}: \
                     the slot was read more than once",
                    status_name(status),
                    describe_page(&at_sector, &page),
                    describe_page(&after, &page)
                ))
            }
        }
    }
    Ok(format!(
        "{} rounds, {flips} flips of last_sect while in flight: {took_good} answered as the \
         valid copy, {took_bad} as the bad copy, none mixed",
        options.rounds
    ))
}

fn describe_page(found: &[u8], written: &[u8]) -> &'static str {
    if found == written {
        "written"
    } else if found.iter().all(|&byte| byte == 0) {
        "untouched"
    } else {
        "partly written"
    }
}

/// Notifications by the thousand, alone and between requests.
fn event_storm(options: &HostileOptions, device: &mut Device) -> Result<String, String> {
    let started = Instant::now();
    for _ in 0..options.storm {
        device.notify()?;
    }
    let idle = started.elapsed();
    // Then the same storm with a read published every 1000 notifications.
    let mut expected = Vec::new();
    for notification in 0..options.storm {
        if notification % 1000 == 0 && device.ring.free_slots() > 0 {
            let id = 0x5707_0000 + u64::from(notification / 1000);
            let read = okay(
                id,
                op::READ,
                encode::direct(
                    op::READ,
                    id,
                    GOOD_SECTOR,
                    &[whole_page(device.data.refs()[1])],
                ),
            );
            device.ring.place(&read.request)?;
            device.ring.push()?;
            expected.push(read);
        }
        device.notify()?;
    }
    let responses = device.responses(expected.len())?;
    check_answers(&expected, &responses)?;
    Ok(format!(
        "{} notifications with no request ({} ms), then {} more carrying {} reads, all answered",
        options.storm,
        idle.as_millis(),
        options.storm,
        expected.len()
    ))
}

/// Detaches as libxl does: backend `online` 0 and `state` Closing (unless Closed), the frontend Closed as
/// blkfront then goes, the backend Closed and its directory removed by grantsvc within libxl's
/// 10 s, then the frontend directory removed.
fn detach(device: &mut Device) -> Result<(), String> {
    // libxl (`libxl__initiate_device_generic_remove`) leaves a Closed backend's state alone.
    match device.store.backend_state(&device.backend_dir)? {
        None => {}
        Some(XenbusState::Closed) => device
            .store
            .write_nodes(&device.backend_dir, &[("online", "0")])?,
        Some(_) => device.store.write_nodes(
            &device.backend_dir,
            &[("online", "0"), ("state", XenbusState::Closing.as_str())],
        )?,
    }
    device.store.write(
        &format!("{}/state", device.frontend_dir),
        XenbusState::Closed.as_str(),
    )?;
    let deadline = Instant::now() + TOOLSTACK_TIMEOUT;
    let outcome = loop {
        if device.store.read_optional(&device.backend_dir)?.is_none() {
            break Ok(());
        }
        if Instant::now() >= deadline {
            let state = device.store.backend_state(&device.backend_dir)?;
            break Err(format!(
                "backend directory still there {} s after detach (state {})",
                TOOLSTACK_TIMEOUT.as_secs(),
                state.map_or("none".to_string(), |state| state.to_string())
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    device.store.remove(&device.frontend_dir)?;
    // Linux's error node lives outside the backend directory: the toolstack's to clear.
    device.store.remove(
        error_path(
            device.attach.backend,
            device.attach.frontend,
            device.attach.devid,
        )
        .trim_end_matches("/error"),
    )?;
    outcome
}

/// The sectors of one page, for read-back reports.
const _: () = assert!(PAGE_SIZE / SECTOR_SIZE == 8);
