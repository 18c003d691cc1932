//! Peers over xenstore: the xenbus state machine, decoding of peer-written values, and peer sessions.
//!
//! Everything here is sans-I/O: a session is driven by [`session::SessionEvent`]s the kernel
//! delivers (xenstore values read, watches fired, event channel signalled, grant maps done, domain
//! died) and answers with [`session::SessionAction`]s for the kernel to carry out (bind a port,
//! map grant refs, unmap regions, signal, close, report). On every form of revocation the actions
//! begin with the unmapping of all of that peer's regions.

pub mod fault;
pub mod registry;
pub mod session;
pub mod state;
pub mod value;
