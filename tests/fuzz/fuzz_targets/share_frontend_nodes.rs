//! Fuzz target: a grant-share frontend's five nodes through the one-time decoder.
//!
//! The input is split at NUL bytes into the five node values (a missing part is a missing
//! node). Properties: nothing panics; a decoded device has 1..=MAX_PAGES refs, as many as
//! `nr-pages` said, and its refs, encoded as grantsvc writes them, are the very bytes the frontend
//! wrote (the decoder takes only the one decimal form "%u" writes: no leading zeros).
#![no_main]

use grantsvc::peer::share::nodes::{FrontendNodes, RawFrontendNodes, MAX_PAGES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut parts = input.split(|&byte| byte == 0);
    let raw = RawFrontendNodes {
        nr_pages: parts.next(),
        refs: parts.next(),
        event_channel: parts.next(),
        pattern_seed: parts.next(),
        writable: parts.next(),
    };
    if let Ok(nodes) = FrontendNodes::decode(&raw) {
        assert!(!nodes.refs.is_empty() && nodes.refs.len() as u32 <= MAX_PAGES);
        let nr_pages = std::str::from_utf8(raw.nr_pages.unwrap()).unwrap();
        assert_eq!(nr_pages.parse::<usize>().unwrap(), nodes.refs.len());
        let encoded = FrontendNodes::encode_refs(&nodes.refs);
        assert_eq!(Some(encoded.as_bytes()), raw.refs);
    }
});
