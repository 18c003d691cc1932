//! Fuzz target: a vchan peer's byte stream through the command service, in pieces of any size and with any room left for the answers.
//!
//! The input is a series of steps: a byte giving the piece's length, a byte giving the room
//! for answers (its top bit: the peer first read every answer so far), then the piece.
//! Properties: nothing panics; the service consumes no more than it was offered and never
//! lets its answers grow past the room; with room for one answer it takes at least one byte
//! of a piece; what it writes is whole answer lines, each at most `MAX_REPLY` bytes and of one
//! of the forms the service documents.
#![no_main]

use grantsvc::peer::counters::ServiceCounters;
use grantsvc::peer::vchan::command::{CommandService, MAX_REPLY};
use grantsvc::peer::vchan::service::ByteService;
use libfuzzer_sys::fuzz_target;

/// The starts of the answers the service gives (`command.rs`).
const ANSWERS: [&str; 4] = ["stats peers=", "checksum bytes=", "help stats", "error "];

fuzz_target!(|input: &[u8]| {
    let counters = ServiceCounters::new();
    let mut service = CommandService::default();
    let mut output = Vec::new();
    let mut rest = input;
    while let [length, room, tail @ ..] = rest {
        let (piece, after) = tail.split_at(usize::from(*length).min(tail.len()));
        rest = after;
        if room & 0x80 != 0 {
            output.clear();
        }
        let before = output.len();
        let limit = before + usize::from(room & 0x7f) * 4;
        let consumed = service.process(piece, &mut output, limit, &counters);
        assert!(consumed <= piece.len());
        assert!(output.len() <= limit);
        if limit - before >= MAX_REPLY && !piece.is_empty() {
            assert!(consumed > 0, "room for an answer, and nothing taken");
        }
        let written = &output[before..];
        if !written.is_empty() {
            assert_eq!(written.last(), Some(&b'\n'));
        }
        for line in written.split_inclusive(|&byte| byte == b'\n') {
            assert!(line.len() <= MAX_REPLY);
            let text = std::str::from_utf8(line).expect("answers are ASCII");
            assert!(
                ANSWERS.iter().any(|start| text.starts_with(start)),
                "an answer of no documented form: {text:?}"
            );
        }
    }
});
