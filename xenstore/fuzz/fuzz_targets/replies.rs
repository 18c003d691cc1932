//! Fuzz target: xenstored's reply and watch-event payloads through the strict decoders the kernel trusts.
//!
//! The first byte picks the request type and reply kind; the rest is the payload, given both as
//! the reply's own type and as `XS_ERROR`. Checks: nothing panics, a value reply is the payload
//! itself, a directory's names are single path components, and a decoded watch event encodes
//! back to a payload that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenstore::ids::{RequestId, TransactionId};
use xenstore::reply::{decode_reply, ReplyKind};
use xenstore::{Header, Message, MessageType, Reply, WatchEvent};

const KINDS: [(MessageType, ReplyKind); 6] = [
    (MessageType::Read, ReplyKind::Value),
    (MessageType::Directory, ReplyKind::Directory),
    (MessageType::GetPermissions, ReplyKind::Permissions),
    (MessageType::Write, ReplyKind::Acknowledgement),
    (MessageType::TransactionStart, ReplyKind::TransactionStarted),
    (MessageType::GetDomainPath, ReplyKind::DomainPath),
];

fn message(message_type: MessageType, payload: &[u8]) -> Message {
    Message {
        header: Header {
            message_type,
            request_id: RequestId::new(7),
            transaction_id: TransactionId::new(0),
            length: payload.len() as u32,
        },
        payload: payload.to_vec(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, payload)) = input.split_first() else {
        return;
    };
    let (expected, kind) = KINDS[usize::from(selector) % KINDS.len()];
    match decode_reply(expected, kind, &message(expected, payload)) {
        Ok(Reply::Value(value)) => assert_eq!(value, payload),
        Ok(Reply::Directory(names)) => {
            for name in names {
                assert!(!name.is_empty() && !name.contains('/') && !name.contains('\0'));
            }
        }
        Ok(Reply::DomainPath(path)) => assert!(!path.contains('\0')),
        Ok(_) | Err(_) => {}
    }
    // The same bytes as an error reply must decode to an error, never to a success.
    assert!(decode_reply(expected, kind, &message(MessageType::Error, payload)).is_err());

    if let Some(event) = WatchEvent::decode(payload) {
        assert!(!event.path.is_empty() && !event.token.is_empty());
        assert_eq!(WatchEvent::decode(&event.encode()), Some(event));
    }
});
