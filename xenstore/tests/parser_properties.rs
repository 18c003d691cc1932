//! Property tests of the parser and client on random, split and garbage input (the stable counterpart of the fuzz target).

use proptest::prelude::*;
use xenstore::wire::{encode_message, HEADER_SIZE, PAYLOAD_MAX};
use xenstore::{Client, Event, Message, MessageType, Parsed, Parser, RequestId, TransactionId};

/// Everything the parser yields for `chunks`, fed one after another.
fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Message>, Parsed) {
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

/// Splits `bytes` at the given cut points (taken modulo its length, sorted).
fn split_at<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// Longest garbage stream; under Miri (`make miri`), where proptest draws each byte thousands
/// of times slower, a tenth, still longer than a header and a short payload.
const GARBAGE_MAX: usize = if cfg!(miri) { 600 } else { 6000 };

/// A payload at the size limit: random bytes, or under Miri one repeated random byte (drawing
/// 4 KiB byte by byte there takes minutes; the framing under test does not read the bytes).
fn payload_at_the_limit() -> BoxedStrategy<Vec<u8>> {
    let lengths = PAYLOAD_MAX - 2..=PAYLOAD_MAX;
    if cfg!(miri) {
        (any::<u8>(), lengths)
            .prop_map(|(byte, length)| vec![byte; length])
            .boxed()
    } else {
        prop::collection::vec(any::<u8>(), lengths).boxed()
    }
}

fn message_strategy() -> impl Strategy<Value = (MessageType, u32, u32, Vec<u8>)> {
    (
        prop::sample::select(MessageType::ALL.to_vec()),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            payload_at_the_limit(),
        ],
    )
}

/// Bytes that look like messages: headers with known types and lengths near the limit, followed
/// by payloads that may be shorter or longer than announced, so framing goes right and wrong.
fn plausible_stream() -> impl Strategy<Value = Vec<u8>> {
    let segment = (
        prop::sample::select(MessageType::ALL.to_vec()),
        prop_oneof![0u32..32, 4090u32..4200],
        prop::collection::vec(any::<u8>(), 0..40),
    );
    prop::collection::vec(segment, 0..6).prop_map(|segments| {
        let mut stream = Vec::new();
        for (message_type, length, payload) in segments {
            stream.extend(message_type.to_wire().to_ne_bytes());
            stream.extend(7u32.to_ne_bytes());
            stream.extend(0u32.to_ne_bytes());
            stream.extend(length.to_ne_bytes());
            stream.extend(payload);
        }
        stream
    })
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..GARBAGE_MAX),
        plausible_stream()
    ]
}

proptest! {
    #[test]
    fn valid_messages_survive_any_split(
        messages in prop::collection::vec(message_strategy(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for (message_type, id, transaction, payload) in &messages {
            stream.extend(
                encode_message(*message_type, RequestId::new(*id), TransactionId::new(*transaction), payload)
                    .expect("payload within the limit"),
            );
        }
        let (parsed, last) = parse_chunks(split_at(&stream, &cuts));
        prop_assert_eq!(last, Parsed::NeedMore);
        prop_assert_eq!(parsed.len(), messages.len());
        for (message, (message_type, id, transaction, payload)) in parsed.iter().zip(&messages) {
            prop_assert_eq!(message.header.message_type, *message_type);
            prop_assert_eq!(message.header.request_id, RequestId::new(*id));
            prop_assert_eq!(message.header.transaction_id, TransactionId::new(*transaction));
            prop_assert_eq!(&message.payload, payload);
        }
    }

    #[test]
    fn garbage_gives_the_same_outcome_whole_or_split_and_never_panics(
        garbage in garbage(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = parse_chunks([&garbage[..]]);
        let split = parse_chunks(split_at(&garbage, &cuts));
        prop_assert_eq!(&whole, &split);
        let (messages, last) = whole;
        let consumed: usize = messages.iter().map(|m| HEADER_SIZE + m.payload.len()).sum();
        prop_assert!(consumed <= garbage.len());
        for message in &messages {
            prop_assert!(message.payload.len() <= PAYLOAD_MAX);
            prop_assert_eq!(message.payload.len(), message.header.length as usize);
        }
        if last == Parsed::NeedMore {
            // Whatever was not returned is a prefix of one more message.
            prop_assert!(garbage.len() - consumed < HEADER_SIZE + PAYLOAD_MAX);
        }
    }

    #[test]
    fn a_client_fed_garbage_never_panics_and_stays_consistent(
        garbage in garbage(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        requests in 0usize..8,
    ) {
        let mut client: Client<u8> = Client::new();
        for _ in 0..requests {
            let _request = client.send(&xenstore::Operation::Read { path: "/a" }).expect("valid");
        }
        let _watch = client.watch("/w", "t", 1).expect("valid");
        let before = client.outstanding();
        let mut replies = 0;
        for chunk in split_at(&garbage, &cuts) {
            for event in client.receive(chunk) {
                if matches!(event, Event::Reply { .. }) {
                    replies += 1;
                }
            }
        }
        prop_assert_eq!(client.outstanding() + replies, before, "each reply completes one request");
    }
}
