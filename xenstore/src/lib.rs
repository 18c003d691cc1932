//! A xenstore client with no I/O of its own: the `xs_wire` codec, an incremental parser and the request/reply protocol.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
#![forbid(unsafe_code)]
