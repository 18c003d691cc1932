//! The domain's side of the toolstack's conventions: `control/shutdown` requests, read without waiting (the counters grantsvc publishes are [`crate::peer::counters`]).

mod shutdown_request;
mod shutdown_watch;

pub use self::shutdown_request::ShutdownRequest;
pub use self::shutdown_watch::{ShutdownWatch, CONTROL_SHUTDOWN};
