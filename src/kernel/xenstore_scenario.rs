//! `scenario=xenstore`: read, write, mkdir, directory, rm, permissions, watches (fired by us and by dom0) and a transaction retried on EAGAIN, against the real xenstored.
//!
//! The lab script (tests/lab/scenarios/xenstore.sh) writes the node this scenario waits for
//! once the console shows `xenstore: waiting for dom0 to write <path>`, and afterwards checks
//! the nodes from dom0 with xenstore-read, xenstore-ls and xenstore-list.

use super::events;
use super::scenarios::Outcome;
use super::start::Kernel;
use super::xenstore::{WatchOwner, Xenstore, XenstoreError};
use alloc::format;
use alloc::string::String;
use xenstore::{DomId, NodePermissions, TransactionId, WatchEvent};

const NONE: TransactionId = TransactionId::NONE;
/// The watch owner key of this scenario's watches.
const OWNER: WatchOwner = 1;
/// How long dom0 gets to write the node the scenario waits for.
const DOM0_PATIENCE_NS: u64 = 60_000_000_000;
/// How long a watch event of our own write may take.
const EVENT_PATIENCE_NS: u64 = 10_000_000_000;

/// Turns a failed step into the scenario's failure reason.
fn step<T>(what: &str, result: Result<T, XenstoreError>) -> Result<T, String> {
    result.map_err(|error| format!("{what}: {error}"))
}

fn check(condition: bool, reason: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(reason())
    }
}

pub fn run(kernel: &Kernel) -> Outcome {
    match scenario(kernel) {
        Ok(()) => Outcome::Pass,
        Err(reason) => Outcome::Fail(reason),
    }
}

/// Waits until a watch event with `token` for exactly `path` arrives; events for other paths
/// (such as the one xenstored sends when a watch is registered) are skipped.
fn wait_for_event(
    store: &mut Xenstore,
    token: &str,
    path: &str,
    patience_ns: u64,
) -> Result<WatchEvent, String> {
    let deadline = events::now_ns().saturating_add(patience_ns);
    loop {
        store.pump();
        for (_, event) in store.take_watch_events() {
            log::info!(
                "xenstore: watch event {} for token {}",
                event.path,
                event.token
            );
            if event.token == token && event.path == path {
                return Ok(event);
            }
        }
        if let Some(reason) = store.broken() {
            return Err(format!("waiting for a watch event on {path}: {reason}"));
        }
        if events::now_ns() >= deadline {
            return Err(format!(
                "no watch event for {path} within {} s",
                patience_ns / 1_000_000_000
            ));
        }
        events::wait_for_port(store.port(), deadline);
    }
}

fn scenario(kernel: &Kernel) -> Result<(), String> {
    let mut store = step(
        "connecting to the store ring",
        Xenstore::connect(kernel.boot_info),
    )?;

    // Who we are: "domid" and "name" are relative paths, resolved under our home.
    let domid_text = step("read domid", store.read_string(NONE, "domid"))?;
    let domid = domid_text
        .parse()
        .ok()
        .and_then(DomId::new)
        .ok_or_else(|| format!("domid {domid_text:?} is not a domain id"))?;
    let home = step("get_domain_path", store.get_domain_path(domid))?;
    check(home == format!("/local/domain/{domid}"), || {
        format!("home {home:?} is not /local/domain/{domid}")
    })?;
    let name = step("read name", store.read_string(NONE, "name"))?;
    log::info!("xenstore: I am domain {domid} named {name:?}, home {home}");

    // Write, read back.
    let base = format!("{home}/data/xenstore-test");
    let value_path = format!("{base}/value");
    let greeting = format!("hello from {name}");
    step(
        "write value",
        store.write(NONE, &value_path, greeting.as_bytes()),
    )?;
    let read_back = step("read value", store.read(NONE, &value_path))?;
    check(read_back == greeting.as_bytes(), || {
        format!(
            "read back {:?}, wrote {greeting:?}",
            String::from_utf8_lossy(&read_back)
        )
    })?;

    // mkdir, directory, rm.
    let directory = format!("{base}/dir");
    step("mkdir", store.mkdir(NONE, &directory))?;
    for child in ["a", "b", "c"] {
        step(
            "write child",
            store.write(NONE, &format!("{directory}/{child}"), child.as_bytes()),
        )?;
    }
    let mut children = step("directory", store.directory(NONE, &directory))?;
    children.sort();
    check(children == ["a", "b", "c"], || {
        format!("directory lists {children:?}")
    })?;
    step("rm", store.remove(NONE, &format!("{directory}/a")))?;
    let mut children = step("directory after rm", store.directory(NONE, &directory))?;
    children.sort();
    check(children == ["b", "c"], || {
        format!("after rm the directory lists {children:?}")
    })?;
    match store.read(NONE, &format!("{directory}/a")) {
        Err(error) if error.is_not_found() => {}
        other => return Err(format!("reading a removed node gave {other:?}, not ENOENT")),
    }
    log::info!("xenstore: write, read, mkdir, directory and rm work");

    // Permissions: ours, nobody else's except dom0 may read.
    let permissions = NodePermissions::owner_and_reader(domid, DomId::DOM0);
    step(
        "set perms",
        store.set_permissions(&value_path, &permissions),
    )?;
    let got = step("get perms", store.get_permissions(&value_path))?;
    check(got == permissions, || format!("perms read back as {got:?}"))?;
    log::info!("xenstore: permissions of {value_path} set to n{domid},r0 and read back");

    // A watch fired by our own write. xenstored fires every new watch once at registration:
    // that event is taken first, so the one after the write is really the write's.
    let watched = format!("{base}/watched");
    step("watch", store.watch(&watched, "scenario-own", OWNER))?;
    wait_for_event(&mut store, "scenario-own", &watched, EVENT_PATIENCE_NS)?;
    step("write watched", store.write(NONE, &watched, b"by grantsvc"))?;
    wait_for_event(&mut store, "scenario-own", &watched, EVENT_PATIENCE_NS)?;
    log::info!("xenstore: watch fired for our own write of {watched}");
    step("unwatch", store.unwatch("scenario-own"))?;

    // A watch fired by dom0: the lab script writes the node when it sees the next line.
    let from_dom0 = format!("{base}/from-dom0");
    step(
        "watch from-dom0",
        store.watch(&from_dom0, "scenario-dom0", OWNER),
    )?;
    wait_for_event(&mut store, "scenario-dom0", &from_dom0, EVENT_PATIENCE_NS)?;
    log::info!("xenstore: waiting for dom0 to write {from_dom0}");
    wait_for_event(&mut store, "scenario-dom0", &from_dom0, DOM0_PATIENCE_NS)?;
    let dom0_value = step("read from-dom0", store.read_string(NONE, &from_dom0))?;
    log::info!("xenstore: dom0 wrote {dom0_value:?}");
    check(!dom0_value.is_empty(), || {
        String::from("dom0's value is empty")
    })?;
    step("unwatch from-dom0", store.unwatch("scenario-dom0"))?;

    // A transaction that conflicts on its first attempt: between its read and its commit we
    // change the node outside it, so xenstored must answer the commit with EAGAIN.
    let counter = format!("{base}/counter");
    step("write counter", store.write(NONE, &counter, b"10"))?;
    let ((), attempts) = step(
        "transaction",
        store.transaction(5, |store, transaction, attempt| {
            let text = store.read_string(transaction, &counter)?;
            let value: u64 = text.parse().unwrap_or(0);
            if attempt == 1 {
                store.write(NONE, &counter, b"20")?;
            }
            store.write(transaction, &counter, format!("{}", value + 1).as_bytes())?;
            store.write(
                transaction,
                &format!("{base}/transaction-attempts"),
                format!("{attempt}").as_bytes(),
            )
        }),
    )?;
    let final_counter = step("read counter", store.read_string(NONE, &counter))?;
    log::info!(
        "xenstore: transaction committed after {attempts} attempt(s), counter {final_counter}"
    );
    check(attempts == 2, || {
        format!("the transaction took {attempts} attempt(s), expected 2 (EAGAIN once)")
    })?;
    check(final_counter == "21", || {
        format!("counter is {final_counter}, expected 21")
    })?;

    step(
        "write result",
        store.write(NONE, &format!("{base}/result"), b"PASS"),
    )?;
    let (upcalls, delivered, blocks) = events::counters();
    log::info!("xenstore: {upcalls} upcalls, {delivered} events delivered, {blocks} blocks; {} stray replies", store.faults());
    Ok(())
}
