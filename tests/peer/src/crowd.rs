//! `grantsvc-peer crowd`: many grant-share devices and vchan servers published together from one process; how long grantsvc takes to answer each, and how each ended (served, refused with a reason, or wrongly).
//!
//! Everything grantsvc cannot see yet is prepared first (grants, ports, each device's two
//! directories with its frontend still Initialising: one pipelined batch of requests per
//! device). Then the peers are published in bursts of [`BURST`] (one pipelined batch per
//! burst: a device's `state` = Initialised, a vchan server's directory), and between bursts the
//! tool already looks for answers, so that each peer is timed from its own publication and
//! none waits for the rest to be published. grantsvc's answers are found through a watch on
//! its backend directories for this domain (a backend's `state` is read only after an event
//! below it, with a full sweep every [`SWEEP`] in case one was missed) and, for vchans, in the
//! shared page (`cli_live`). Results and pages are judged once every peer answered.

use crate::crowd_close::close_all;
use crate::crowd_tally::Tally;
use crate::evtchn::EventChannels;
use crate::frontend::parse_state;
use crate::share_device::{Answer, DeviceId, ShareDevice, XenbusState};
use crate::store::{Step, Store};
use crate::vchan_peer::VchanPeer;
use grantsvc::ids::DomId;
use grantsvc::peer::share::nodes;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Peers published in one pipelined batch.
pub const BURST: usize = 4;

/// How often every unanswered device's `state` is read even without a watch event.
pub const SWEEP: Duration = Duration::from_secs(1);

/// The watch token of the backend directories.
const TOKEN: &str = "grantsvc-peer-crowd";

/// Options of `crowd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdOptions {
    pub domid: DomId,
    pub devices: u32,
    pub first_device: u32,
    pub pages: u32,
    pub vchans: u32,
    /// Where the vchan servers publish (`PATH/crowd-N`); needed when `vchans` > 0.
    pub vchan_base: Option<String>,
    /// Bound on the wait for all answers after the last publication, and on each close.
    pub timeout: Duration,
    /// How long to wait for a watch event when there is nothing left to publish.
    pub poll: Duration,
    /// How long to keep everything connected once all answered.
    pub hold: Duration,
    /// Fail unless every peer was served (no refusal) within this time of its publication.
    pub all_served_within: Option<Duration>,
}

/// A peer of the crowd.
pub enum Peer {
    Share(ShareDevice),
    Vchan(VchanPeer),
}

/// What grantsvc's first answer to a peer was, before it is judged.
#[derive(Clone, Debug)]
enum Seen {
    /// A device's backend reached Connected or Closed.
    Backend(XenbusState),
    /// A vchan's `cli_live` went to 1, or to a value no client may leave there.
    Vchan(Result<(), String>),
}

pub struct Member {
    pub peer: Peer,
    /// When its publication was sent (None: not yet).
    published: Option<Instant>,
    /// grantsvc's first answer and how long after publication it came.
    seen: Option<(Seen, Duration)>,
    /// The answer judged, and how long after publication it came.
    pub answer: Option<(Answer, Duration)>,
}

impl Member {
    fn new(peer: Peer) -> Member {
        Member {
            peer,
            published: None,
            seen: None,
            answer: None,
        }
    }

    pub fn name(&self) -> String {
        match &self.peer {
            Peer::Share(device) => format!("device {}", device.device),
            Peer::Vchan(vchan) => format!(
                "vchan {}",
                vchan.path.rsplit('/').next().unwrap_or(&vchan.path)
            ),
        }
    }

    fn waiting(&self) -> bool {
        self.published.is_some() && self.seen.is_none()
    }

    fn see(&mut self, seen: Seen) {
        if let Some(published) = self.published {
            self.seen = Some((seen, published.elapsed()));
        }
    }
}

pub fn say(line: &str) {
    println!("grantsvc-peer: crowd: {line}");
}

/// Grants, ports and directories of every peer, interleaved (so that neither kind is served
/// first just by being published first); Err lines name the peers that could not be prepared.
fn prepare(
    store: &mut Store,
    channels: &EventChannels,
    options: &CrowdOptions,
) -> (Vec<Member>, Vec<String>) {
    let mut members = Vec::new();
    let mut unprepared = Vec::new();
    for index in 0..options.devices.max(options.vchans) {
        if index < options.devices {
            let device = DeviceId(options.first_device + index);
            let seed = index.wrapping_mul(2_654_435_761) ^ 0xc40d;
            match ShareDevice::prepare(store, channels, options.domid, device, options.pages, seed)
            {
                Ok(share) => members.push(Member::new(Peer::Share(share))),
                Err(error) => unprepared.push(format!("device {device}: {error}")),
            }
        }
        if let (true, Some(base)) = (index < options.vchans, &options.vchan_base) {
            let path = format!("{base}/crowd-{index}");
            match VchanPeer::prepare(store, channels, options.domid, &path) {
                Ok(vchan) => members.push(Member::new(Peer::Vchan(vchan))),
                Err(error) => unprepared.push(format!("vchan {path}: {error}")),
            }
        }
    }
    (members, unprepared)
}

/// Runs `crowd`; Ok is the verdict's summary, Err the failure's reason.
pub fn run(options: &CrowdOptions) -> Result<String, String> {
    let mut store = Store::open()?;
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let own = store.own_domid()?;
    let preparing = Instant::now();
    let (mut members, mut unpublished) = prepare(&mut store, &channels, options);
    say(&format!(
        "prepared {} peer(s) in {} ms",
        members.len(),
        preparing.elapsed().as_millis()
    ));
    let root = nodes::backend_root(&format!("/local/domain/{}", options.domid));
    if options.devices > 0 {
        store.watch(&format!("{root}/{own}"), TOKEN)?;
    }
    let started = Instant::now();
    let outcome = publish_and_watch(
        &mut store,
        &mut members,
        &mut unpublished,
        &root,
        own,
        options,
    );
    let last_answer = started.elapsed();
    if options.devices > 0 {
        if let Err(error) = store.unwatch(TOKEN) {
            say(&error);
        }
    }
    // Peers whose publication failed are torn down now; they have no answer to judge.
    let (published, failed): (Vec<Member>, Vec<Member>) = members
        .into_iter()
        .partition(|member| member.published.is_some());
    let mut members = published;
    for member in failed {
        let _ = match member.peer {
            Peer::Share(device) => device.tear_down(&mut store, &channels),
            Peer::Vchan(vchan) => vchan.tear_down(&mut store, &channels),
        };
    }
    let judging = judge_all(&mut store, &mut members);
    let tally = Tally::count(
        members
            .iter()
            .map(|member| (member.name(), member.answer.as_ref())),
    );
    say(&format!(
        "answers: {}; last answer {} ms after the first publication, slowest {} ms after its own \
         publication ({})",
        tally.line(),
        last_answer.as_millis(),
        tally
            .slowest
            .as_ref()
            .map_or(0, |(took, _)| took.as_millis()),
        tally
            .slowest
            .as_ref()
            .map_or("none", |(_, name)| name.as_str()),
    ));
    // Every answer's delay, in publication order: whether the slow ones came late in the
    // publication (a queue) or one by one (a lost wake-up) shows here.
    let delays: Vec<String> = members
        .iter()
        .map(|member| match &member.answer {
            Some((_, took)) => format!("{} {}", member.name(), took.as_millis()),
            None => format!("{} none", member.name()),
        })
        .collect();
    say(&format!("answer delays in ms: {}", delays.join(", ")));
    for (reason, count) in &tally.refused {
        say(&format!("refused {count}: {reason}"));
    }
    for wrong in &tally.wrong {
        say(&format!("wrong: {wrong}"));
    }
    for error in [&outcome, &judging]
        .into_iter()
        .filter_map(|result| result.as_ref().err())
    {
        say(&format!("stopped: {error}"));
    }
    std::thread::sleep(options.hold);
    let closing = close_all(&mut store, &channels, members, options);

    let mut faults = Vec::new();
    faults.extend(outcome.err());
    faults.extend(judging.err());
    if !unpublished.is_empty() {
        faults.push(format!(
            "{} peer(s) not published (first: {})",
            unpublished.len(),
            unpublished.first().map_or("", String::as_str)
        ));
    }
    if !tally.wrong.is_empty() {
        faults.push(format!(
            "{} answered wrongly: {}",
            tally.wrong.len(),
            tally.wrong.join("; ")
        ));
    }
    if !tally.unanswered.is_empty() {
        faults.push(format!(
            "{} without an answer {} s after the last publication: {}",
            tally.unanswered.len(),
            options.timeout.as_secs(),
            tally.unanswered.join(", ")
        ));
    }
    if let Some(bound) = options.all_served_within {
        let refused: u32 = tally.refused.values().sum();
        if refused > 0 {
            faults.push(format!("{refused} refused, all were to be served"));
        }
        if let Some((took, name)) = tally.slowest.as_ref().filter(|(took, _)| *took >= bound) {
            faults.push(format!(
                "{name} answered {} ms after its publication, not within {} ms",
                took.as_millis(),
                bound.as_millis()
            ));
        }
    }
    if let Err(error) = closing {
        faults.push(error);
    }
    let summary = format!(
        "{} peer(s) for d{}: {}; slowest answer {} ms after publication, last {} ms after the first \
         publication",
        options.devices + options.vchans,
        options.domid,
        tally.line(),
        tally.slowest.as_ref().map_or(0, |(took, _)| took.as_millis()),
        last_answer.as_millis()
    );
    match faults.is_empty() {
        true => Ok(summary),
        false => Err(format!("{summary}; {}", faults.join("; "))),
    }
}

/// Publishes the members in bursts and notes grantsvc's first answer to each, looking for
/// answers between bursts; stops once every published member answered, or `options.timeout`
/// after the last publication. Members whose publication failed are left unpublished (their
/// reason in `unpublished`).
fn publish_and_watch(
    store: &mut Store,
    members: &mut [Member],
    unpublished: &mut Vec<String>,
    root: &str,
    own: DomId,
    options: &CrowdOptions,
) -> Result<(), String> {
    let devices: BTreeMap<DeviceId, usize> = members
        .iter()
        .enumerate()
        .filter_map(|(index, member)| match &member.peer {
            Peer::Share(device) => Some((device.device, index)),
            Peer::Vchan(_) => None,
        })
        .collect();
    let mut next = 0;
    let mut last_publication = Instant::now();
    let mut last_sweep = Instant::now();
    let publishing = Instant::now();
    loop {
        if next < members.len() {
            let burst = next..(next + BURST).min(members.len());
            publish(
                store,
                members.get_mut(burst.clone()).unwrap_or_default(),
                unpublished,
                own,
                options.domid,
            )?;
            next = burst.end;
            last_publication = Instant::now();
            if next == members.len() {
                say(&format!(
                    "published {} peer(s) in {} ms, {} not published",
                    members.len() - unpublished.len(),
                    publishing.elapsed().as_millis(),
                    unpublished.len()
                ));
            }
        }
        let wait = match next < members.len() {
            true => Duration::ZERO,
            false => options.poll,
        };
        let mut to_read = Vec::new();
        for event in store.watch_events(wait)? {
            let device = nodes::device_of_backend_path(root, &event.path)
                .filter(|(frontend, _)| *frontend == own)
                .and_then(|(_, device)| devices.get(&device));
            if let Some(index) = device {
                to_read.push(*index);
            }
        }
        if last_sweep.elapsed() >= SWEEP {
            last_sweep = Instant::now();
            to_read.extend(devices.values());
        }
        to_read.sort_unstable();
        to_read.dedup();
        to_read.retain(|index| members.get(*index).is_some_and(Member::waiting));
        read_states(store, members, &to_read)?;
        for member in members.iter_mut().filter(|member| member.waiting()) {
            if let Peer::Vchan(vchan) = &member.peer {
                match vchan.connected() {
                    Ok(true) => member.see(Seen::Vchan(Ok(()))),
                    Ok(false) => {}
                    Err(wrong) => member.see(Seen::Vchan(Err(wrong))),
                }
            }
        }
        let published_all = next == members.len();
        if published_all && !members.iter().any(Member::waiting) {
            return Ok(());
        }
        if published_all && last_publication.elapsed() >= options.timeout {
            return Ok(());
        }
    }
}

/// Publishes `burst` in one pipelined batch; each member's clock starts when it is sent.
fn publish(
    store: &mut Store,
    burst: &mut [Member],
    unpublished: &mut Vec<String>,
    own: DomId,
    grantsvc: DomId,
) -> Result<(), String> {
    let mut steps = Vec::new();
    let mut ranges = Vec::new();
    for member in burst.iter() {
        let first = steps.len();
        match &member.peer {
            Peer::Share(device) => steps.push(device.announce_step()),
            Peer::Vchan(vchan) => steps.extend(vchan.announce_steps(own, grantsvc)),
        }
        ranges.push(first..steps.len());
    }
    let sent = Instant::now();
    let results = store.pipeline(&steps)?;
    for (member, range) in burst.iter_mut().zip(ranges) {
        let failure = results
            .get(range)
            .unwrap_or_default()
            .iter()
            .find_map(|result| result.as_ref().err());
        match failure {
            None => member.published = Some(sent),
            Some(error) => unpublished.push(format!("{}: {error}", member.name())),
        }
    }
    Ok(())
}

/// Reads the backend `state` of the devices at `indexes` in one pipelined batch and notes
/// those that reached Connected or Closed.
fn read_states(store: &mut Store, members: &mut [Member], indexes: &[usize]) -> Result<(), String> {
    let steps: Vec<Step> = indexes
        .iter()
        .filter_map(
            |index| match members.get(*index).map(|member| &member.peer) {
                Some(Peer::Share(device)) => Some(Step::Read(format!(
                    "{}/{}",
                    device.backend_dir,
                    nodes::backend::STATE
                ))),
                _ => None,
            },
        )
        .collect();
    if steps.is_empty() {
        return Ok(());
    }
    let results = store.pipeline(&steps)?;
    for (index, result) in indexes.iter().zip(results) {
        let state = match result? {
            Some(value) => parse_state(&value)?,
            None => continue,
        };
        if let (XenbusState::Connected | XenbusState::Closed, Some(member)) =
            (state, members.get_mut(*index))
        {
            member.see(Seen::Backend(state));
        }
    }
    Ok(())
}

/// Judges every member that answered: a device's result nodes and pages (and that a connected
/// backend is still connected), a vchan's `cli_live`.
fn judge_all(store: &mut Store, members: &mut [Member]) -> Result<(), String> {
    for member in members.iter_mut() {
        let Some((seen, took)) = member.seen.clone() else {
            continue;
        };
        let answer = match (&member.peer, seen) {
            (Peer::Share(device), Seen::Backend(state)) => device.judge(store, state)?,
            (_, Seen::Vchan(Ok(()))) => Answer::Served,
            (_, Seen::Vchan(Err(wrong))) => Answer::ConnectedWrongly(wrong),
            (Peer::Vchan(_), Seen::Backend(_)) => continue,
        };
        member.answer = Some((answer, took));
    }
    Ok(())
}
