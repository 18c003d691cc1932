//! The domain's side of the toolstack's conventions: `control/shutdown` requests, and the state and counters grantsvc publishes under its home.

mod published_counters;
mod shutdown_request;

pub use self::published_counters::{CounterPublisher, ServiceCounters, ServiceState};
pub use self::shutdown_request::ShutdownRequest;
