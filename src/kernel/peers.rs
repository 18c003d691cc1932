//! The peer sessions the service runs, as the service loop sees them: events in, counters out, close all at shutdown.
//!
//! No protocol is served by the kernel yet (the vchan client runs on the host side only), so
//! there are no sessions: the counters come from the pmap's grant accounting alone.

use grantsvc::domain_control::ServiceCounters;
use grantsvc::events::ReadySnapshot;

/// Hands the ports that fired to the sessions that own them.
pub fn on_events(_ready: &ReadySnapshot) {}

/// Closes every session, unmapping its grants; returns how many were closed.
pub fn close_all() -> usize {
    0
}

/// The published counters (state aside).
pub fn counters() -> ServiceCounters {
    ServiceCounters::new()
}
