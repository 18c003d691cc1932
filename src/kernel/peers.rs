//! The peer sessions the service runs, as the service loop sees them: events in, counters out, close all at shutdown.
//!
//! Served so far: grant-share devices (`share_backend`) and vchan servers (`vchan_client`).
//! The published grant counters come from the pmap's own accounting, which every grant map and
//! unmap in the kernel goes through.

use super::xenstore::{WatchOwner, Xenstore};
use super::{address_space, share_backend, vchan_client};
use grantsvc::domain_control::ServiceCounters;
use grantsvc::events::ReadySnapshot;
use grantsvc::ids::DomId;
use xenstore::WatchEvent;

/// Starts the peer protocols that need xenstore (their watches), once the service has it.
pub fn start(store: &mut Xenstore, own: DomId, home: &str) {
    share_backend::start(store, own, home);
    vchan_client::start(store, own);
}

/// Hands the ports that fired to the sessions that own them.
pub fn on_events(ready: &ReadySnapshot) {
    share_backend::on_ports(ready);
    vchan_client::on_ports(ready);
}

/// The latest time the run loop must call [`on_events`] again even if no port fires.
pub fn deadline() -> Option<u64> {
    vchan_client::deadline()
}

/// Hands a watch event to the protocol that registered it; false if none did.
pub fn on_watch_event(store: &mut Xenstore, owner: WatchOwner, event: &WatchEvent) -> bool {
    if share_backend::owns(owner) {
        share_backend::on_watch_event(store, owner, event);
        return true;
    }
    if vchan_client::owns(owner) {
        vchan_client::on_watch_event(store, owner, event);
        return true;
    }
    false
}

/// Closes every session, unmapping its grants first and telling the peers through xenstore
/// when there is one; returns how many were closed.
pub fn close_all(store: Option<&mut Xenstore>) -> usize {
    share_backend::close_all(store) + vchan_client::close_all()
}

/// The published counters (state aside): sessions, and the pmap's grant accounting.
pub fn counters() -> ServiceCounters {
    counters_with_vchan(vchan_client::counters())
}

/// [`counters`] with the vchan client's (sessions, faults) supplied by a caller that already
/// holds the vchan client's lock (its `stats` command), so that lock is not taken twice.
pub fn counters_with_vchan((vchan_sessions, vchan_faults): (u64, u64)) -> ServiceCounters {
    let mut counters = ServiceCounters::new();
    let (share_sessions, share_faults) = share_backend::counters();
    counters.peers = share_sessions + vchan_sessions;
    counters.faults = share_faults + vchan_faults;
    if let Some(pmap) = address_space::pmap() {
        let stats = pmap.lock().stats();
        counters.mapped_regions = stats.live_regions;
        counters.mapped_pages = stats.live_grant_pages;
        counters.maps = stats.maps;
        counters.unmaps = stats.unmaps;
    }
    counters
}
