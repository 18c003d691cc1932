//! The xenbus state machine and peer sessions (to be filled in).
