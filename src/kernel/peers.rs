//! The peer sessions the service runs, as the service loop sees them: events in, counters out, close all at shutdown.
//!
//! The kernel serves no peer protocol yet (the vchan session machinery is host-side only so
//! far), so there are no sessions; the published grant counters come from the pmap's own
//! accounting, which every grant map and unmap in the kernel goes through.

use super::address_space;
use grantsvc::domain_control::ServiceCounters;
use grantsvc::events::ReadySnapshot;

/// Hands the ports that fired to the sessions that own them.
pub fn on_events(_ready: &ReadySnapshot) {}

/// Closes every session, unmapping its grants; returns how many were closed.
pub fn close_all() -> usize {
    0
}

/// The published counters (state aside): sessions, and the pmap's grant accounting.
pub fn counters() -> ServiceCounters {
    let mut counters = ServiceCounters::new();
    if let Some(pmap) = address_space::pmap() {
        let stats = pmap.lock().stats();
        counters.mapped_regions = stats.live_regions;
        counters.mapped_pages = stats.live_grant_pages;
        counters.maps = stats.maps;
        counters.unmaps = stats.unmaps;
    }
    counters
}
