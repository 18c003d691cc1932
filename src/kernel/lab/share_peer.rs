//! The `share-peer=<pages>` mode: grantsvc as a grant-share FRONTEND that grants pages of its own to a backend, for the lab's `peer-death` scenario.
//!
//! The toolstack (in the lab, a dom0 script acting as `xl` would) creates the device:
//! our `device/grantsvc-share/0/` with `backend` and `backend-id`, readable by the backend, and
//! the backend's directory. We then do the frontend's part of `grantsvc::peer::share`'s steps:
//! grant the pages filled with the pattern, allocate an unbound port for the backend, write
//! our nodes and `state` = Initialised, wait for the backend to connect, check its answer in
//! our own pages, and then idle with the pages granted, until the domain is destroyed.

use super::own_grants;
use crate::kernel::address_space::PmapHandle;
use crate::kernel::booted::Kernel;
use crate::kernel::event_wait;
use crate::kernel::store_connection::Xenstore;
use crate::kernel::xen::event_channel;
use crate::kernel::xen::own_pages::OwnPages;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::peer::share::nodes::{answer, backend, frontend, FrontendNodes, DEVICE_TYPE};
use grantsvc::peer::share::pattern;
use grantsvc::peer::value::parse_u32;
use grantsvc::peer::xenbus_state::XenbusState;
use xenstore::TransactionId;

/// Our device, relative to our home.
const DEVICE: &str = "device/grantsvc-share/0";
/// How long we wait for the toolstack and then for the backend.
const PATIENCE_NS: u64 = 60_000_000_000;
/// Polling interval while waiting for a node.
const POLL_NS: u64 = 100_000_000;
const NONE: TransactionId = TransactionId::NONE;

/// What was shared, kept alive (granted) while the domain lives.
struct Shared {
    pages: OwnPages,
    refs: Vec<GrantRef>,
    seed: u32,
}

/// Runs the frontend, then idles until the domain is destroyed.
pub fn run(kernel: &Kernel, pages: u32) -> ! {
    log::info!("share-peer: acting as a {DEVICE_TYPE} frontend sharing {pages} page(s)");
    // Kept in scope for the rest of the domain's life: the grants stay in place.
    let _shared = match share(kernel, pages) {
        Ok(shared) => Some(shared),
        Err(reason) => {
            log::error!("share-peer: FAIL: {reason}");
            None
        }
    };
    log::info!("share-peer: idling with the pages granted");
    loop {
        let _ = event_wait::take_ready();
        event_wait::wait(None);
    }
}

fn share(kernel: &Kernel, count: u32) -> Result<Shared, String> {
    let mut store =
        Xenstore::connect(kernel.boot_info).map_err(|error| format!("xenstore: {error}"))?;
    let deadline = event_wait::now_ns().saturating_add(PATIENCE_NS);
    let backend_id = wait_for_node(
        &mut store,
        &format!("{DEVICE}/{}", frontend::BACKEND_ID),
        deadline,
    )?;
    let backend_id = parse_u32(&backend_id)
        .ok()
        .and_then(|number| u16::try_from(number).ok())
        .and_then(DomId::new)
        .ok_or("the toolstack's backend-id is not a domain id")?;
    let backend_dir = wait_for_node(
        &mut store,
        &format!("{DEVICE}/{}", frontend::BACKEND),
        deadline,
    )?;
    let backend_dir =
        String::from_utf8(backend_dir).map_err(|_| "the toolstack's backend path is not text")?;
    log::info!("share-peer: backend domain {backend_id} at {backend_dir}");

    let shared = grant_pages(kernel.pmap, backend_id, count)?;
    let port = event_channel::alloc_unbound(backend_id)
        .map_err(|error| format!("allocating a port for domain {backend_id}: {error}"))?;
    let values = [
        (frontend::NR_PAGES, format!("{count}")),
        (frontend::REFS, FrontendNodes::encode_refs(&shared.refs)),
        (frontend::EVENT_CHANNEL, format!("{port}")),
        (frontend::PATTERN_SEED, format!("{}", shared.seed)),
        (frontend::WRITABLE, String::from("1")),
        (
            frontend::STATE,
            String::from(XenbusState::Initialised.as_str()),
        ),
    ];
    for (name, value) in &values {
        store
            .write(NONE, &format!("{DEVICE}/{name}"), value.as_bytes())
            .map_err(|error| format!("writing {DEVICE}/{name}: {error}"))?;
    }
    log::info!(
        "share-peer: granted {count} page(s) to domain {backend_id} (refs {}), port {port}, seed {}; state Initialised",
        FrontendNodes::encode_refs(&shared.refs),
        shared.seed
    );

    let deadline = event_wait::now_ns().saturating_add(PATIENCE_NS);
    let state_path = format!("{backend_dir}/{}", backend::STATE);
    loop {
        let state = wait_for_node(&mut store, &state_path, deadline)?;
        match XenbusState::parse(&state) {
            Ok(XenbusState::Connected) => break,
            Ok(XenbusState::Closed) => {
                let error = store
                    .read(NONE, &format!("{backend_dir}/{}", backend::ERROR))
                    .unwrap_or_default();
                return Err(format!(
                    "the backend closed the device: {}",
                    error.escape_ascii()
                ));
            }
            _ if event_wait::now_ns() >= deadline => {
                return Err(String::from("the backend did not connect within 60 s"))
            }
            _ => event_wait::wait(Some(event_wait::now_ns().saturating_add(POLL_NS))),
        }
    }
    let found = store
        .read(NONE, &format!("{backend_dir}/{}", backend::ANSWER))
        .unwrap_or_default();
    if found != answer::WRITTEN.as_bytes() {
        return Err(format!(
            "the backend's answer node reads {:?}",
            found.escape_ascii().to_string()
        ));
    }
    check_answer(&shared)?;
    log::info!(
        "share-peer: backend domain {backend_id} connected: it maps our {count} page(s); its answer checked in every page"
    );
    Ok(shared)
}

/// Polls `path` until it exists or the deadline passes.
fn wait_for_node(store: &mut Xenstore, path: &str, deadline: u64) -> Result<Vec<u8>, String> {
    loop {
        match store.read(NONE, path) {
            Ok(value) => return Ok(value),
            Err(error) if event_wait::now_ns() >= deadline => {
                return Err(format!("{path} did not appear: {error}"))
            }
            Err(_) => {
                // Watch events of nobody's accumulate otherwise.
                let _ = store.take_watch_events();
                event_wait::wait(Some(event_wait::now_ns().saturating_add(POLL_NS)));
            }
        }
    }
}

/// Fresh pages filled with the pattern, each granted writable to `backend`.
fn grant_pages(pmap: PmapHandle, backend: DomId, count: u32) -> Result<Shared, String> {
    let table = own_grants::table(pmap).map_err(|error| format!("our grant table: {error}"))?;
    let pages = OwnPages::allocate(pmap, count as usize)
        .ok_or_else(|| format!("could not allocate {count} page(s)"))?;
    let seed = (event_wait::now_ns() as u32) | 1;
    for number in 0..count {
        pages
            .write(number as usize, 0, &pattern::page(seed, number))
            .map_err(|error| format!("filling page {number}: {error}"))?;
    }
    let mut refs = Vec::with_capacity(count as usize);
    let mut table = table.lock();
    for number in 0..count {
        let grant_ref = table
            .allocate_ref()
            .ok_or_else(|| format!("no free grant ref for page {number}"))?;
        table
            .grant(grant_ref, backend, &pages, number as usize, false)
            .map_err(|error| format!("granting page {number}: {error}"))?;
        refs.push(grant_ref);
    }
    drop(table);
    Ok(Shared { pages, refs, seed })
}

/// Checks each page: the answer (the pattern's complement) at the start, the pattern after.
fn check_answer(shared: &Shared) -> Result<(), String> {
    let mut found = vec![0u8; PAGE_SIZE];
    for number in 0..shared.refs.len() as u32 {
        shared
            .pages
            .read(number as usize, 0, &mut found)
            .map_err(|error| format!("reading page {number}: {error}"))?;
        let mut expected = pattern::page(shared.seed, number);
        pattern::apply_answer(&mut expected);
        if let Some(byte) = found.iter().zip(expected.iter()).position(|(a, b)| a != b) {
            return Err(format!(
                "page {number} byte {byte} is {:#04x}, expected {:#04x}",
                found.get(byte).copied().unwrap_or(0),
                expected.get(byte).copied().unwrap_or(0)
            ));
        }
    }
    Ok(())
}
