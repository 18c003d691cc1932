//! `grantsvc-peer crowd`: many grant-share devices and vchan servers published together from one process; how long grantsvc takes to answer each, and how each ended (served, refused with a reason, or wrongly).

use crate::evtchn::EventChannels;
use crate::share_device::{Answer, DeviceId, ShareDevice, XenbusState};
use crate::store::Store;
use crate::vchan_peer::VchanPeer;
use grantsvc::ids::DomId;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

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
    /// Bound on the wait for all answers, and on each close.
    pub timeout: Duration,
    pub poll: Duration,
    /// How long to keep everything connected once all answered.
    pub hold: Duration,
    /// Fail unless every peer was served (no refusal) within this time of its publication.
    pub all_served_within: Option<Duration>,
}

/// A peer of the crowd and when it was published.
enum Peer {
    Share(ShareDevice),
    Vchan(VchanPeer),
}

struct Member {
    peer: Peer,
    published: Instant,
    /// The answer and how long after publication it came (None: not yet).
    answer: Option<(Answer, Duration)>,
}

impl Member {
    fn name(&self) -> String {
        match &self.peer {
            Peer::Share(device) => format!("device {}", device.device),
            Peer::Vchan(vchan) => format!(
                "vchan {}",
                vchan.path.rsplit('/').next().unwrap_or(&vchan.path)
            ),
        }
    }

    /// Looks once whether grantsvc answered; records the answer when it did.
    fn poll(&mut self, store: &mut Store) -> Result<(), String> {
        if self.answer.is_some() {
            return Ok(());
        }
        let answer = match &self.peer {
            Peer::Share(device) => match device.backend_state(store)? {
                Some(state @ (XenbusState::Connected | XenbusState::Closed)) => {
                    Some(device.judge(store, state)?)
                }
                _ => None,
            },
            Peer::Vchan(vchan) => match vchan.connected() {
                Ok(true) => Some(Answer::Served),
                Ok(false) => None,
                Err(wrong) => Some(Answer::ConnectedWrongly(wrong)),
            },
        };
        self.answer = answer.map(|answer| (answer, self.published.elapsed()));
        Ok(())
    }
}

/// The tally of the answers, for the figures and the verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub served: u32,
    /// Refusal reasons and how many devices got each.
    pub refused: BTreeMap<String, u32>,
    /// "device K: what was wrong" for every device that answered wrongly.
    pub wrong: Vec<String>,
    pub unanswered: Vec<String>,
    /// The slowest answer after its peer's publication, and whose.
    pub slowest: Option<(Duration, String)>,
}

impl Tally {
    /// Counts (peer's name, its answer and how long after publication) pairs.
    pub fn count<'a>(
        answers: impl IntoIterator<Item = (String, Option<&'a (Answer, Duration)>)>,
    ) -> Tally {
        let mut tally = Tally::default();
        for (name, answer) in answers {
            let Some((answer, took)) = answer else {
                tally.unanswered.push(name);
                continue;
            };
            if tally.slowest.as_ref().is_none_or(|(worst, _)| took > worst) {
                tally.slowest = Some((*took, name.clone()));
            }
            match answer {
                Answer::Served => tally.served += 1,
                Answer::Refused(reason) => *tally.refused.entry(reason.clone()).or_default() += 1,
                Answer::ConnectedWrongly(wrong) => {
                    tally.wrong.push(format!("{name} Connected but {wrong}"))
                }
                Answer::ClosedSilently => tally
                    .wrong
                    .push(format!("{name} Closed with no error node")),
            }
        }
        tally
    }

    /// One line of figures: "served 120, refused 8 (3 kinds), wrong 0, unanswered 0".
    pub fn line(&self) -> String {
        format!(
            "served {}, refused {} ({} reason(s)), wrong {}, unanswered {}",
            self.served,
            self.refused.values().sum::<u32>(),
            self.refused.len(),
            self.wrong.len(),
            self.unanswered.len()
        )
    }
}

fn say(line: &str) {
    println!("grantsvc-peer: crowd: {line}");
}

/// Runs `crowd`; Ok is the verdict's summary, Err the failure's reason.
pub fn run(options: &CrowdOptions) -> Result<String, String> {
    let mut store = Store::open()?;
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let mut members = Vec::new();
    let mut unpublished = Vec::new();
    // First everything that grantsvc cannot see yet or will wait on (grants, ports, the devices'
    // directories with the frontend still Initialising), so that the publication itself is
    // short: one write per device and one small transaction per vchan server.
    let preparing = Instant::now();
    // Interleaved, so that neither kind is served first just by being published first.
    for index in 0..options.devices.max(options.vchans) {
        if index < options.devices {
            let device = DeviceId(options.first_device + index);
            let seed = index.wrapping_mul(2_654_435_761) ^ 0xc40d;
            match ShareDevice::prepare(
                &mut store,
                &channels,
                options.domid,
                device,
                options.pages,
                seed,
            ) {
                Ok(share) => members.push(Member {
                    peer: Peer::Share(share),
                    published: Instant::now(),
                    answer: None,
                }),
                Err(error) => unpublished.push(format!("device {device}: {error}")),
            }
        }
        if let (true, Some(base)) = (index < options.vchans, &options.vchan_base) {
            let path = format!("{base}/crowd-{index}");
            match VchanPeer::prepare(&mut store, &channels, options.domid, &path) {
                Ok(vchan) => members.push(Member {
                    peer: Peer::Vchan(vchan),
                    published: Instant::now(),
                    answer: None,
                }),
                Err(error) => unpublished.push(format!("vchan {path}: {error}")),
            }
        }
    }
    say(&format!(
        "prepared {} peer(s) in {} ms",
        members.len(),
        preparing.elapsed().as_millis()
    ));
    let started = Instant::now();
    let mut announced = Vec::with_capacity(members.len());
    for mut member in members {
        let result = match &member.peer {
            Peer::Share(device) => device.announce(&mut store),
            Peer::Vchan(vchan) => vchan.announce(&mut store, options.domid),
        };
        member.published = Instant::now();
        match result {
            Ok(()) => announced.push(member),
            Err(error) => {
                unpublished.push(format!("{}: {error}", member.name()));
                let _ = match member.peer {
                    Peer::Share(device) => device.tear_down(&mut store, &channels),
                    Peer::Vchan(vchan) => vchan.tear_down(&mut store, &channels),
                };
            }
        }
    }
    let mut members = announced;
    let publishing = started.elapsed();
    say(&format!(
        "published {} peer(s) in {} ms; {} could not be published{}",
        members.len(),
        publishing.as_millis(),
        unpublished.len(),
        unpublished
            .first()
            .map_or(String::new(), |first| format!(" (first: {first})"))
    ));

    let deadline = Instant::now() + options.timeout;
    let outcome = wait_for_answers(&mut store, &mut members, deadline, options.poll);
    let last_answer = started.elapsed();
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
    if let Err(error) = outcome {
        say(&format!("polling stopped: {error}"));
    }
    std::thread::sleep(options.hold);
    let closing = close_all(&mut store, &channels, members, options);

    let mut faults = Vec::new();
    if !unpublished.is_empty() {
        faults.push(format!("{} peer(s) not published", unpublished.len()));
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
            "{} without an answer after {} s: {}",
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

fn wait_for_answers(
    store: &mut Store,
    members: &mut [Member],
    deadline: Instant,
    poll: Duration,
) -> Result<(), String> {
    loop {
        for member in members.iter_mut() {
            member.poll(store)?;
        }
        if members.iter().all(|member| member.answer.is_some()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(poll);
    }
}

/// Revokes every connected device and hangs up every vchan, waits for each revoked device's
/// backend to close with nothing mapped, then tears everything down.
fn close_all(
    store: &mut Store,
    channels: &EventChannels,
    members: Vec<Member>,
    options: &CrowdOptions,
) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut revoked = Vec::new();
    for member in &members {
        let result = match &member.peer {
            Peer::Share(device) => {
                let connected = matches!(member.answer, Some((Answer::Served, _)));
                if connected {
                    revoked.push(device);
                }
                match connected {
                    true => device.revoke(store),
                    false => Ok(()),
                }
            }
            Peer::Vchan(vchan) => vchan.hang_up(channels),
        };
        errors.extend(result.err());
    }
    let deadline = Instant::now() + options.timeout;
    for device in revoked {
        loop {
            let closed = device.backend_state(store)? == Some(XenbusState::Closed);
            let mapped = device.backend_mapped_pages(store)?;
            if closed && mapped.as_deref() == Some("0") {
                break;
            }
            if Instant::now() >= deadline {
                errors.push(format!(
                    "device {}: backend closed {closed}, mapped-pages {mapped:?} {} s after \
                     revocation",
                    device.device,
                    options.timeout.as_secs()
                ));
                break;
            }
            std::thread::sleep(options.poll);
        }
    }
    for member in members {
        let result = match member.peer {
            Peer::Share(device) => device.tear_down(store, channels),
            Peer::Vchan(vchan) => vchan.tear_down(store, channels),
        };
        errors.extend(result.err());
    }
    match errors.is_empty() {
        true => Ok(()),
        false => Err(format!("closing: {}", errors.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_tallied_by_kind_with_the_slowest_named() {
        let ms = Duration::from_millis;
        let answers = [
            (Answer::Served, ms(40)),
            (Answer::Refused("quota: nodes".to_string()), ms(900)),
            (Answer::Refused("quota: nodes".to_string()), ms(20)),
            (
                Answer::ConnectedWrongly("digest missing".to_string()),
                ms(30),
            ),
            (Answer::ClosedSilently, ms(10)),
        ];
        let named = answers
            .iter()
            .enumerate()
            .map(|(index, answer)| (format!("device {index}"), Some(answer)))
            .chain([("device 9".to_string(), None)]);
        let tally = Tally::count(named);
        assert_eq!(tally.served, 1);
        assert_eq!(tally.refused.get("quota: nodes"), Some(&2));
        assert_eq!(
            tally.wrong,
            [
                "device 3 Connected but digest missing",
                "device 4 Closed with no error node"
            ]
        );
        assert_eq!(tally.unanswered, ["device 9"]);
        assert_eq!(tally.slowest, Some((ms(900), "device 1".to_string())));
        assert_eq!(
            tally.line(),
            "served 1, refused 2 (1 reason(s)), wrong 2, unanswered 1"
        );
    }
}
