//! Reply decoders: a reply message checked against the request it answers and turned into a typed value or error.
//!
//! Replies come from xenstored, which we trust to be xenstored but not to be bug-free: every
//! payload is decoded strictly, and anything unexpected becomes a [`ReplyError`], never a panic.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::XsError;
use crate::ids::TransactionId;
use crate::message_type::MessageType;
use crate::parser::Message;
use crate::path::validate_path;
use crate::permissions::NodePermissions;

/// What a successful reply carries, decided by the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    Value,
    Directory,
    Permissions,
    /// `"OK"`.
    Acknowledgement,
    TransactionStarted,
    DomainPath,
}

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A node's value: raw bytes, not NUL-terminated.
    Value(Vec<u8>),
    /// The names of a node's children (names, not paths).
    Directory(Vec<String>),
    Permissions(NodePermissions),
    /// The request was carried out.
    Acknowledged,
    TransactionStarted(TransactionId),
    DomainPath(String),
}

/// Why a request did not produce a [`Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// xenstored refused the request.
    Xenstore(XsError),
    /// An `XS_ERROR` whose errno name is not one xs_wire.h lists.
    UnknownErrorName,
    /// The reply's type is neither the request's nor `XS_ERROR`.
    UnexpectedType {
        expected: MessageType,
        received: MessageType,
    },
    /// The payload does not decode as this kind of reply.
    BadPayload(ReplyKind),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Xenstore(error) => write!(formatter, "{error}"),
            ReplyError::UnknownErrorName => formatter.write_str("XS_ERROR with an unknown name"),
            ReplyError::UnexpectedType { expected, received } => {
                write!(
                    formatter,
                    "reply of type {received} to a {expected} request"
                )
            }
            ReplyError::BadPayload(kind) => write!(formatter, "malformed {kind:?} reply"),
        }
    }
}

impl Reply {
    /// What the reply carries, without its content: for log lines about a reply that was not
    /// the one expected (a `{:?}` of the content would bring the Debug code of every payload
    /// into the kernel image, issue 10).
    pub fn kind(&self) -> ReplyKind {
        match self {
            Reply::Value(_) => ReplyKind::Value,
            Reply::Directory(_) => ReplyKind::Directory,
            Reply::Permissions(_) => ReplyKind::Permissions,
            Reply::Acknowledged => ReplyKind::Acknowledgement,
            Reply::TransactionStarted(_) => ReplyKind::TransactionStarted,
            Reply::DomainPath(_) => ReplyKind::DomainPath,
        }
    }
}

impl ReplyError {
    /// True for `EAGAIN`, the answer that means "run the transaction again".
    pub fn is_try_again(&self) -> bool {
        *self == ReplyError::Xenstore(XsError::TryAgain)
    }
}

/// Decodes the reply `message` to a request of type `expected` whose reply is of `kind`.
pub fn decode_reply(
    expected: MessageType,
    kind: ReplyKind,
    message: &Message,
) -> Result<Reply, ReplyError> {
    let received = message.header.message_type;
    if received == MessageType::Error {
        return Err(XsError::from_payload(&message.payload)
            .map_or(ReplyError::UnknownErrorName, ReplyError::Xenstore));
    }
    if received != expected {
        return Err(ReplyError::UnexpectedType { expected, received });
    }
    decode_payload(kind, &message.payload).ok_or(ReplyError::BadPayload(kind))
}

/// One string, NUL-terminated or not, as xenstored's replies vary on that.
fn single_string(payload: &[u8]) -> Option<&str> {
    let text = payload.strip_suffix(b"\0").unwrap_or(payload);
    if text.contains(&0) {
        return None;
    }
    core::str::from_utf8(text).ok()
}

fn directory_names(payload: &[u8]) -> Option<Vec<String>> {
    // C xenstored sends nothing for no children; the OCaml one sends a lone NUL.
    let body = payload.strip_suffix(b"\0").unwrap_or(payload);
    if body.is_empty() {
        return Some(Vec::new());
    }
    body.split(|byte| *byte == 0)
        .map(|name| {
            let name = core::str::from_utf8(name).ok()?;
            // A child's name is one path component: a valid relative path without '/'.
            (validate_path(name).is_ok() && !name.contains('/')).then(|| String::from(name))
        })
        .collect()
}

fn decode_payload(kind: ReplyKind, payload: &[u8]) -> Option<Reply> {
    match kind {
        ReplyKind::Value => Some(Reply::Value(payload.to_vec())),
        ReplyKind::Directory => directory_names(payload).map(Reply::Directory),
        ReplyKind::Permissions => NodePermissions::decode(payload).map(Reply::Permissions),
        ReplyKind::Acknowledgement => {
            (single_string(payload)? == "OK").then_some(Reply::Acknowledged)
        }
        ReplyKind::TransactionStarted => {
            let text = single_string(payload)?;
            if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let id: u32 = text.parse().ok()?;
            (id != 0).then_some(Reply::TransactionStarted(TransactionId::new(id)))
        }
        ReplyKind::DomainPath => {
            let path = single_string(payload)?;
            (path.starts_with('/') && validate_path(path).is_ok())
                .then(|| Reply::DomainPath(String::from(path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RequestId;
    use crate::wire::Header;

    fn message(message_type: MessageType, payload: &[u8]) -> Message {
        Message {
            header: Header {
                message_type,
                request_id: RequestId::new(1),
                transaction_id: TransactionId::NONE,
                length: payload.len() as u32,
            },
            payload: payload.to_vec(),
        }
    }

    fn decode(expected: MessageType, kind: ReplyKind, payload: &[u8]) -> Result<Reply, ReplyError> {
        decode_reply(expected, kind, &message(expected, payload))
    }

    #[test]
    fn successful_replies_decode() {
        assert_eq!(
            decode(MessageType::Read, ReplyKind::Value, b"4\0x"),
            Ok(Reply::Value(b"4\0x".to_vec()))
        );
        assert_eq!(
            decode(
                MessageType::Directory,
                ReplyKind::Directory,
                b"0\0vif\0name\0"
            ),
            Ok(Reply::Directory(
                ["0", "vif", "name"].map(String::from).to_vec()
            ))
        );
        assert_eq!(
            decode(MessageType::Write, ReplyKind::Acknowledgement, b"OK\0"),
            Ok(Reply::Acknowledged)
        );
        assert_eq!(
            decode(
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"12\0"
            ),
            Ok(Reply::TransactionStarted(TransactionId::new(12)))
        );
        assert_eq!(
            decode(
                MessageType::GetDomainPath,
                ReplyKind::DomainPath,
                b"/local/domain/3\0"
            ),
            Ok(Reply::DomainPath(String::from("/local/domain/3")))
        );
    }

    #[test]
    fn a_decoded_reply_is_of_the_kind_it_was_decoded_as() {
        let cases: [(MessageType, ReplyKind, &[u8]); 5] = [
            (MessageType::Read, ReplyKind::Value, b"4"),
            (MessageType::Directory, ReplyKind::Directory, b"0\0"),
            (MessageType::Write, ReplyKind::Acknowledgement, b"OK\0"),
            (
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"12\0",
            ),
            (
                MessageType::GetDomainPath,
                ReplyKind::DomainPath,
                b"/local/domain/3\0",
            ),
        ];
        for (expected, kind, payload) in cases {
            assert_eq!(
                decode(expected, kind, payload).map(|reply| reply.kind()),
                Ok(kind)
            );
        }
    }

    #[test]
    fn empty_directories_from_either_xenstored() {
        for payload in [&b""[..], b"\0"] {
            assert_eq!(
                decode(MessageType::Directory, ReplyKind::Directory, payload),
                Ok(Reply::Directory(Vec::new()))
            );
        }
    }

    #[test]
    fn error_replies_become_typed_errors() {
        let reply = message(MessageType::Error, b"EAGAIN\0");
        let result = decode_reply(
            MessageType::TransactionEnd,
            ReplyKind::Acknowledgement,
            &reply,
        );
        assert_eq!(result, Err(ReplyError::Xenstore(XsError::TryAgain)));
        assert!(result.is_err_and(|error| error.is_try_again()));
        let unknown = message(MessageType::Error, b"EFOO\0");
        assert_eq!(
            decode_reply(MessageType::Read, ReplyKind::Value, &unknown),
            Err(ReplyError::UnknownErrorName)
        );
    }

    #[test]
    fn mismatched_or_malformed_replies_are_errors() {
        let wrong = message(MessageType::Write, b"OK\0");
        assert_eq!(
            decode_reply(MessageType::Read, ReplyKind::Value, &wrong),
            Err(ReplyError::UnexpectedType {
                expected: MessageType::Read,
                received: MessageType::Write
            })
        );
        let bad = [
            (MessageType::Write, ReplyKind::Acknowledgement, &b"NO\0"[..]),
            (
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"0\0",
            ),
            (
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"-1\0",
            ),
            (
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"4294967296\0",
            ),
            (
                MessageType::TransactionStart,
                ReplyKind::TransactionStarted,
                b"1\x002\0",
            ),
            (MessageType::Directory, ReplyKind::Directory, b"a\0\0b\0"),
            (MessageType::Directory, ReplyKind::Directory, b"a/b\0"),
            (MessageType::Directory, ReplyKind::Directory, b"\xff\0"),
            (
                MessageType::GetDomainPath,
                ReplyKind::DomainPath,
                b"local\0",
            ),
            (MessageType::GetPermissions, ReplyKind::Permissions, b"q0\0"),
        ];
        for (message_type, kind, payload) in bad {
            assert_eq!(
                decode(message_type, kind, payload),
                Err(ReplyError::BadPayload(kind)),
                "{payload:?}"
            );
        }
    }
}
