//! The end of a crowd: every served device revoked and every vchan hung up together, then each revoked device checked closed with nothing mapped, then everything torn down.

use crate::crowd::{CrowdOptions, Member, Peer};
use crate::evtchn::EventChannels;
use crate::frontend::parse_state;
use crate::share_device::{Answer, ShareDevice, XenbusState};
use crate::store::{Step, Store};
use grantsvc::peer::share::nodes::backend;
use std::time::Instant;

/// Revokes every connected device (one pipelined batch) and hangs up every vchan, waits for
/// each revoked device's backend to close with `mapped-pages` 0, then tears everything down.
pub fn close_all(
    store: &mut Store,
    channels: &EventChannels,
    members: Vec<Member>,
    options: &CrowdOptions,
) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut revoked: Vec<&ShareDevice> = Vec::new();
    for member in &members {
        match &member.peer {
            Peer::Share(device) => {
                if matches!(member.answer, Some((Answer::Served, _))) {
                    revoked.push(device);
                }
            }
            Peer::Vchan(vchan) => errors.extend(vchan.hang_up(channels).err()),
        }
    }
    let revocations: Vec<Step> = revoked.iter().map(|device| device.revoke_step()).collect();
    if !revocations.is_empty() {
        errors.extend(store.pipeline_all(&revocations).err());
    }
    let deadline = Instant::now() + options.timeout;
    while !revoked.is_empty() {
        let steps: Vec<Step> = revoked
            .iter()
            .flat_map(|device| {
                [backend::STATE, backend::MAPPED_PAGES]
                    .map(|name| Step::Read(format!("{}/{name}", device.backend_dir)))
            })
            .collect();
        let values = store.pipeline(&steps)?;
        let mut still_open = Vec::new();
        for (device, pair) in revoked.iter().zip(values.chunks(2)) {
            let state = match pair.first() {
                Some(Ok(Some(value))) => Some(parse_state(value)?),
                _ => None,
            };
            let mapped = match pair.get(1) {
                Some(Ok(Some(value))) => Some(String::from_utf8_lossy(value).into_owned()),
                _ => None,
            };
            let closed = state == Some(XenbusState::Closed);
            if closed && mapped.as_deref() == Some("0") {
                continue;
            }
            if Instant::now() >= deadline {
                errors.push(format!(
                    "device {}: backend closed {closed}, mapped-pages {mapped:?} {} s after \
                     revocation",
                    device.device,
                    options.timeout.as_secs()
                ));
                continue;
            }
            still_open.push(*device);
        }
        revoked = still_open;
        if !revoked.is_empty() {
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
