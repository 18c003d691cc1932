//! The domain's side of the toolstack's conventions: `control/shutdown` requests (the counters grantsvc publishes are [`crate::peer::counters`]).

mod shutdown_request;

pub use self::shutdown_request::ShutdownRequest;
