//! `grantsvc-peer share`: act as toolstack and frontend of one grant-share device, check grantsvc's work, revoke, and check it let go.

use crate::args::ShareOptions;
use crate::evtchn::EventChannels;
use crate::frontend::{Publication, Shared};
use crate::garbage::{Expectation, GARBAGE_STATE};
use crate::gntalloc::GrantedPages;
use crate::pins;
use crate::store::Store;
use grantsvc::ids::{DomId, EvtchnPort};
use grantsvc::share::nodes::{self, backend, frontend};
use grantsvc::xenbus::state::XenbusState;
use std::time::{Duration, Instant};
use xenstore::NodePermissions;

/// How long to wait for grantsvc's signal once it is connected (reported, not required).
const NOTIFY_WAIT: Duration = Duration::from_secs(1);

fn say(line: &str) {
    println!("grantsvc-peer: {line}");
}

/// A node readable by its owner and one other domain only.
fn owned_by(owner: DomId, reader: DomId) -> NodePermissions {
    NodePermissions::owner_and_reader(owner, reader)
}

/// Everything one run set up, released by [`Device::tear_down`].
struct Device {
    store: Store,
    frontend_dir: String,
    backend_dir: String,
    pages: GrantedPages,
    channels: EventChannels,
    port: EvtchnPort,
}

/// Runs `share`; Ok is the verdict's summary, Err the failure's reason.
pub fn run(options: &ShareOptions) -> Result<String, String> {
    let seed = options.seed.unwrap_or_else(clock_seed);
    let shared = Shared {
        pages: options.pages,
        seed,
        writable: options.writable,
        corrupted: options
            .garbage
            .and_then(|kind| kind.corrupted_byte(options.pages)),
    };
    let mut device = set_up(options, &shared)?;
    let outcome = exercise(options, &shared, &mut device);
    let released = device.tear_down();
    let summary = outcome?;
    released?;
    Ok(summary)
}

fn clock_seed() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| {
            elapsed.subsec_nanos() ^ elapsed.as_secs() as u32
        })
}

/// Grants and fills the pages, allocates the port, creates both directories as a toolstack
/// would and publishes the frontend's nodes.
fn set_up(options: &ShareOptions, shared: &Shared) -> Result<Device, String> {
    let mut store = Store::open()?;
    let own = store.own_domid()?;
    let frontend_dir = nodes::frontend_path(own, options.device);
    let backend_dir = nodes::backend_path(options.domid, own, options.device);
    // Leftovers of an earlier run would be taken for this device.
    store.remove(&frontend_dir)?;
    store.remove(&backend_dir)?;

    let pages = GrantedPages::allocate(options.domid, options.pages, options.writable).map_err(
        |error| {
            format!(
                "gntalloc of {} page(s) for d{}: {error}",
                options.pages, options.domid
            )
        },
    )?;
    for number in 0..options.pages {
        pages
            .write_page(number, &shared.written_page(number))
            .map_err(|error| format!("filling page {number}: {error}"))?;
    }
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let port = channels
        .allocate_unbound(options.domid)
        .map_err(|error| format!("allocating a port for d{}: {error}", options.domid))?;
    let device = Device {
        store,
        frontend_dir,
        backend_dir,
        pages,
        channels,
        port,
    };
    publish(options, shared, device)
}

fn publish(options: &ShareOptions, shared: &Shared, mut device: Device) -> Result<Device, String> {
    let own = device.store.own_domid()?;
    let initialising = XenbusState::Initialising.as_str().to_string();
    let created = device
        .store
        .create_directory(
            &device.frontend_dir,
            &owned_by(own, options.domid),
            &[
                (frontend::BACKEND, device.backend_dir.clone()),
                (frontend::BACKEND_ID, options.domid.to_string()),
                (frontend::STATE, initialising.clone()),
            ],
        )
        .and_then(|()| {
            device.store.create_directory(
                &device.backend_dir,
                &owned_by(options.domid, own),
                &[
                    (backend::FRONTEND, device.frontend_dir.clone()),
                    (backend::FRONTEND_ID, own.to_string()),
                    (backend::STATE, initialising),
                ],
            )
        });
    if let Err(error) = created {
        // Best effort: the error that matters is the creation's.
        let _ = device.tear_down();
        return Err(error);
    }
    let mut publication = Publication::new(
        device.pages.refs(),
        device.port,
        shared.seed,
        shared.writable,
    );
    if let Some(kind) = options.garbage {
        kind.corrupt(&mut publication);
    }
    let connected = XenbusState::Initialised.as_str();
    let mut values: Vec<(&str, &str)> = publication.nodes().to_vec();
    values.push((frontend::STATE, connected));
    say(&format!(
        "device {} for d{}: {} page(s) {}, refs {}, port {}, seed {}{}",
        options.device,
        options.domid,
        options.pages,
        if shared.writable {
            "writable"
        } else {
            "read-only"
        },
        publication.refs,
        publication.event_channel,
        shared.seed,
        options
            .garbage
            .map_or(String::new(), |kind| format!(", garbage {}", kind.name()))
    ));
    if let Err(error) = device.store.write_nodes(&device.frontend_dir, &values) {
        let _ = device.tear_down();
        return Err(error);
    }
    Ok(device)
}

/// Drives the device through grantsvc's answer and the revocation, checking each step.
fn exercise(
    options: &ShareOptions,
    shared: &Shared,
    device: &mut Device,
) -> Result<String, String> {
    let expectation = options.garbage.map(|kind| kind.expectation(options.pages));
    if let Some(Expectation::Refused(text)) = &expectation {
        return expect_refusal(options, device, text);
    }
    let state = device.store.wait_for_backend(
        &device.backend_dir,
        &[XenbusState::Connected, XenbusState::Closed],
        options.timeout,
    )?;
    if state != XenbusState::Connected {
        let results = device.store.backend_results(&device.backend_dir)?;
        return Err(format!(
            "grantsvc closed the device instead of connecting: {}",
            results.error.unwrap_or_else(|| "no error node".to_string())
        ));
    }
    let results = device.store.backend_results(&device.backend_dir)?;
    shared.check_results(&results)?;
    for number in 0..shared.pages {
        let page = device
            .pages
            .read_page(number)
            .map_err(|error| format!("reading page {number}: {error}"))?;
        shared.check_page(number, &page)?;
    }
    let notified = match device.channels.wait(NOTIFY_WAIT) {
        Ok(Some(port)) if port == device.port => "notified",
        Ok(_) => "not notified",
        Err(_) => "notification unreadable",
    };
    say(&format!(
        "connected: {} page(s) mapped, pattern {}, digest {}, answer {} checked, {notified}",
        shared.pages,
        results.pattern.as_deref().unwrap_or("?"),
        results.digest.as_deref().unwrap_or("?"),
        results.answer.as_deref().unwrap_or("?"),
    ));
    if options.check_pins {
        check_pins(options, device, shared.pages as usize)?;
    }
    std::thread::sleep(options.hold);

    let revoke_state = match &expectation {
        Some(Expectation::ClosedAfterConnect(_)) => GARBAGE_STATE,
        _ => XenbusState::Closing.as_str(),
    };
    let revoked = Instant::now();
    device.store.write(
        &format!("{}/{}", device.frontend_dir, frontend::STATE),
        revoke_state,
    )?;
    device
        .store
        .wait_for_backend(&device.backend_dir, &[XenbusState::Closed], options.timeout)?;
    let took = revoked.elapsed();
    let results = device.store.backend_results(&device.backend_dir)?;
    if results.mapped_pages.as_deref() != Some("0") {
        return Err(format!(
            "backend closed with mapped-pages {:?}, expected 0",
            results.mapped_pages
        ));
    }
    let garbage_note = match &expectation {
        Some(Expectation::ClosedAfterConnect(text)) => {
            let error = results.error.unwrap_or_default();
            if !error.contains(text.as_str()) {
                return Err(format!("backend error '{error}' does not name '{text}'"));
            }
            format!(", garbage state refused: {error}")
        }
        Some(Expectation::Mismatch(page, byte)) => {
            format!(", corrupted byte (page {page} byte {byte}) reported")
        }
        _ => String::new(),
    };
    if options.check_pins {
        check_pins(options, device, 0)?;
    }
    Ok(format!(
        "d{} mapped {} {} page(s), pattern checked, answer checked, closed and unmapped {} ms after \
         revocation{}{garbage_note}",
        options.domid,
        shared.pages,
        if shared.writable { "writable" } else { "read-only" },
        took.as_millis(),
        if options.check_pins { ", Xen shows no pins left" } else { "" },
    ))
}

/// Expects grantsvc to close the device for bad values, with nothing mapped.
fn expect_refusal(
    options: &ShareOptions,
    device: &mut Device,
    text: &str,
) -> Result<String, String> {
    let state = device.store.wait_for_backend(
        &device.backend_dir,
        &[XenbusState::Connected, XenbusState::Closed],
        options.timeout,
    )?;
    if state == XenbusState::Connected {
        return Err("grantsvc connected a device with garbage nodes".to_string());
    }
    let results = device.store.backend_results(&device.backend_dir)?;
    let error = results
        .error
        .ok_or_else(|| "backend closed without an error node".to_string())?;
    if !error.contains(text) {
        return Err(format!("backend error '{error}' does not name '{text}'"));
    }
    if !matches!(results.mapped_pages.as_deref(), None | Some("0")) {
        return Err(format!(
            "backend refused the device but reports mapped-pages {:?}",
            results.mapped_pages
        ));
    }
    if options.check_pins {
        check_pins(options, device, 0)?;
    }
    Ok(format!(
        "garbage {} refused by d{}: {error}",
        options.garbage.map_or("?", |kind| kind.name()),
        options.domid
    ))
}

/// Checks with Xen's grant-table dump that exactly `expected` of our refs are pinned by grantsvc.
fn check_pins(options: &ShareOptions, device: &mut Device, expected: usize) -> Result<(), String> {
    let own = device.store.own_domid()?;
    let refs = device.pages.refs();
    let pinned = pins::pinned_now(own, options.domid, refs)?;
    if pinned.len() != expected {
        return Err(format!(
            "Xen shows {} of our {} ref(s) pinned by d{}, expected {expected}: {pinned:?}",
            pinned.len(),
            refs.len(),
            options.domid
        ));
    }
    say(&format!(
        "Xen shows {expected} of our refs pinned by d{}",
        options.domid
    ));
    Ok(())
}

impl Device {
    /// Says goodbye as a frontend and a toolstack would, then ends the grants and the port.
    fn tear_down(mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        let closed = XenbusState::Closed.as_str();
        let state = format!("{}/{}", self.frontend_dir, frontend::STATE);
        for result in [
            self.store.write(&state, closed),
            self.store.remove(&self.frontend_dir),
            self.store.remove(&self.backend_dir),
        ] {
            errors.extend(result.err());
        }
        if let Err(error) = self.channels.unbind(self.port) {
            errors.push(format!("closing port {}: {error}", self.port));
        }
        if let Err(error) = self.pages.release() {
            errors.push(format!("ending the grants: {error}"));
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("; ")),
        }
    }
}
