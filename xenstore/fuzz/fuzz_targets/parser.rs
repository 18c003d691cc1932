//! Fuzz target: arbitrary server bytes, split at fuzzer-chosen points, through the parser and the client.
//!
//! Checks the same properties as `tests/parser_properties.rs`, without a bound on the inputs:
//! nothing panics, splitting never changes the outcome, and no message exceeds the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::wire::{HEADER_SIZE, PAYLOAD_MAX};
use xenstore::{Client, Event, Operation, Parsed, Parser};

fn parse<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<xenstore::Message>, Parsed) {
    let mut parser = Parser::new();
    let mut messages = Vec::new();
    let mut last = Parsed::NeedMore;
    for chunk in chunks {
        parser.feed(chunk);
        loop {
            match parser.next_message() {
                Parsed::Message(message) => messages.push(message),
                other => {
                    last = other;
                    break;
                }
            }
        }
    }
    (messages, last)
}

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose a split point; the rest is the server's stream.
    let Some((cut_bytes, stream)) = input.split_first_chunk::<2>() else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes(*cut_bytes)) % (stream.len() + 1);
    let (head, tail) = stream.split_at(cut);

    let whole = parse([stream]);
    let split = parse([head, tail]);
    assert_eq!(whole, split, "splitting changed the outcome");
    let consumed: usize = whole
        .0
        .iter()
        .map(|message| {
            assert!(message.payload.len() <= PAYLOAD_MAX);
            assert_eq!(message.payload.len(), message.header.length as usize);
            HEADER_SIZE + message.payload.len()
        })
        .sum();
    assert!(consumed <= stream.len());

    let mut client: Client<u8> = Client::new();
    let mut sent = 0;
    for path in ["/a", "/b", "/c"] {
        if client.send(&Operation::Read { path }).is_ok() {
            sent += 1;
        }
    }
    if client.watch("/w", "t", 1).is_ok() {
        sent += 1;
    }
    let replies = [head, tail]
        .into_iter()
        .flat_map(|chunk| client.receive(chunk))
        .filter(|event| matches!(event, Event::Reply { .. }))
        .count();
    assert_eq!(client.outstanding() + replies, sent);
});
