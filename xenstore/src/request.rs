//! Request builders: each operation checked and encoded as an `xs_wire` message.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt;

use crate::ids::{DomId, RequestId, TransactionId};
use crate::message_type::MessageType;
use crate::path::{validate_path, validate_token, validate_watch_path, PathError};
use crate::permissions::NodePermissions;
use crate::reply::ReplyKind;
use crate::wire::{encode_message, PAYLOAD_MAX};

/// One xenstore operation, borrowing its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation<'a> {
    /// The node's value.
    Read {
        path: &'a str,
    },
    /// Sets the node's value, creating the node (and missing parents) if needed.
    Write {
        path: &'a str,
        value: &'a [u8],
    },
    /// Creates the node with an empty value if it does not exist.
    Mkdir {
        path: &'a str,
    },
    /// Removes the node and everything under it.
    Remove {
        path: &'a str,
    },
    /// The names of the node's children.
    Directory {
        path: &'a str,
    },
    GetPermissions {
        path: &'a str,
    },
    SetPermissions {
        path: &'a str,
        permissions: &'a NodePermissions,
    },
    /// Asks for `XS_WATCH_EVENT`s carrying `token` whenever `path` or a node under it changes.
    Watch {
        path: &'a str,
        token: &'a str,
    },
    Unwatch {
        path: &'a str,
        token: &'a str,
    },
    TransactionStart,
    /// Commits (`commit: true`) or abandons the transaction named in the header.
    TransactionEnd {
        commit: bool,
    },
    /// The home path of a domain, `/local/domain/<domid>`.
    GetDomainPath {
        domain: DomId,
    },
}

/// Why a request was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestError {
    Path(PathError),
    /// The payload would exceed `XENSTORE_PAYLOAD_MAX`.
    PayloadTooLong {
        length: usize,
    },
    /// `TransactionEnd` outside a transaction.
    NotInTransaction,
    /// An operation xenstored does not allow inside a transaction (watches, starting another).
    NotAllowedInTransaction,
    /// A watch token already in use by a live watch of this client.
    TokenInUse,
    /// No live watch has this token.
    UnknownToken,
    /// `Watch` and `Unwatch` go through the client's watch methods, which keep the watch table.
    UseWatchMethods,
    /// Too many requests await replies.
    TooManyOutstanding,
}

impl From<PathError> for RequestError {
    fn from(error: PathError) -> RequestError {
        RequestError::Path(error)
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Path(error) => write!(formatter, "invalid path: {error}"),
            RequestError::PayloadTooLong { length } => {
                write!(
                    formatter,
                    "payload of {length} bytes over the {PAYLOAD_MAX}-byte limit"
                )
            }
            RequestError::NotInTransaction => formatter.write_str("no transaction to end"),
            RequestError::NotAllowedInTransaction => {
                formatter.write_str("operation not allowed inside a transaction")
            }
            RequestError::TokenInUse => formatter.write_str("watch token already in use"),
            RequestError::UnknownToken => formatter.write_str("no watch with this token"),
            RequestError::UseWatchMethods => {
                formatter.write_str("watches must go through Client::watch / Client::unwatch")
            }
            RequestError::TooManyOutstanding => formatter.write_str("too many requests in flight"),
        }
    }
}

fn push_string(payload: &mut Vec<u8>, text: &str) {
    payload.extend_from_slice(text.as_bytes());
    payload.push(0);
}

impl Operation<'_> {
    /// The message type of this operation's request (and of its successful reply).
    pub fn message_type(&self) -> MessageType {
        match self {
            Operation::Read { .. } => MessageType::Read,
            Operation::Write { .. } => MessageType::Write,
            Operation::Mkdir { .. } => MessageType::Mkdir,
            Operation::Remove { .. } => MessageType::Remove,
            Operation::Directory { .. } => MessageType::Directory,
            Operation::GetPermissions { .. } => MessageType::GetPermissions,
            Operation::SetPermissions { .. } => MessageType::SetPermissions,
            Operation::Watch { .. } => MessageType::Watch,
            Operation::Unwatch { .. } => MessageType::Unwatch,
            Operation::TransactionStart => MessageType::TransactionStart,
            Operation::TransactionEnd { .. } => MessageType::TransactionEnd,
            Operation::GetDomainPath { .. } => MessageType::GetDomainPath,
        }
    }

    /// How the successful reply's payload is to be decoded.
    pub fn reply_kind(&self) -> ReplyKind {
        match self {
            Operation::Read { .. } => ReplyKind::Value,
            Operation::Directory { .. } => ReplyKind::Directory,
            Operation::GetPermissions { .. } => ReplyKind::Permissions,
            Operation::TransactionStart => ReplyKind::TransactionStarted,
            Operation::GetDomainPath { .. } => ReplyKind::DomainPath,
            Operation::Write { .. }
            | Operation::Mkdir { .. }
            | Operation::Remove { .. }
            | Operation::SetPermissions { .. }
            | Operation::Watch { .. }
            | Operation::Unwatch { .. }
            | Operation::TransactionEnd { .. } => ReplyKind::Acknowledgement,
        }
    }

    /// Checks the arguments and the transaction and builds the payload.
    pub fn payload(&self, transaction: TransactionId) -> Result<Vec<u8>, RequestError> {
        match self {
            Operation::TransactionEnd { .. } if !transaction.is_some() => {
                return Err(RequestError::NotInTransaction)
            }
            Operation::Watch { .. } | Operation::Unwatch { .. } | Operation::TransactionStart
                if transaction.is_some() =>
            {
                return Err(RequestError::NotAllowedInTransaction)
            }
            _ => {}
        }
        let mut payload = Vec::new();
        match self {
            Operation::Read { path }
            | Operation::Mkdir { path }
            | Operation::Remove { path }
            | Operation::Directory { path }
            | Operation::GetPermissions { path } => {
                validate_path(path)?;
                push_string(&mut payload, path);
            }
            Operation::Write { path, value } => {
                validate_path(path)?;
                push_string(&mut payload, path);
                // The value is raw bytes, not NUL-terminated: the length ends it.
                payload.extend_from_slice(value);
            }
            Operation::SetPermissions { path, permissions } => {
                validate_path(path)?;
                push_string(&mut payload, path);
                payload.extend(permissions.encode());
            }
            Operation::Watch { path, token } | Operation::Unwatch { path, token } => {
                validate_watch_path(path)?;
                validate_token(token)?;
                push_string(&mut payload, path);
                push_string(&mut payload, token);
            }
            Operation::TransactionStart => push_string(&mut payload, ""),
            Operation::TransactionEnd { commit } => {
                push_string(&mut payload, if *commit { "T" } else { "F" })
            }
            Operation::GetDomainPath { domain } => {
                push_string(&mut payload, &domain.get().to_string());
            }
        }
        if payload.len() > PAYLOAD_MAX {
            return Err(RequestError::PayloadTooLong {
                length: payload.len(),
            });
        }
        Ok(payload)
    }

    /// The whole request message, header and payload.
    pub fn encode(
        &self,
        request_id: RequestId,
        transaction: TransactionId,
    ) -> Result<Vec<u8>, RequestError> {
        let payload = self.payload(transaction)?;
        encode_message(self.message_type(), request_id, transaction, &payload).ok_or(
            RequestError::PayloadTooLong {
                length: payload.len(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Parsed, Parser};
    use crate::permissions::{Access, Permission};

    fn payload(operation: Operation<'_>) -> Vec<u8> {
        operation
            .payload(TransactionId::NONE)
            .unwrap_or_else(|error| panic!("{operation:?}: {error}"))
    }

    #[test]
    fn payloads_follow_the_wire_format() {
        assert_eq!(payload(Operation::Read { path: "/a/b" }), b"/a/b\0");
        assert_eq!(
            payload(Operation::Write {
                path: "/a",
                value: b"x\0y"
            }),
            b"/a\0x\0y"
        );
        assert_eq!(
            payload(Operation::Watch {
                path: "@releaseDomain",
                token: "t1"
            }),
            b"@releaseDomain\0t1\0"
        );
        assert_eq!(payload(Operation::TransactionStart), b"\0");
        assert_eq!(
            payload(Operation::GetDomainPath {
                domain: DomId::new(42).unwrap()
            }),
            b"42\0"
        );
        let permissions = NodePermissions {
            owner: DomId::new(3).unwrap(),
            others: Access::Read,
            grants: Vec::from([Permission {
                domain: DomId::new(0).unwrap(),
                access: Access::Write,
            }]),
        };
        assert_eq!(
            payload(Operation::SetPermissions {
                path: "/n",
                permissions: &permissions
            }),
            b"/n\0r3\0w0\0"
        );
    }

    #[test]
    fn transaction_rules_are_checked() {
        let end = Operation::TransactionEnd { commit: true };
        assert_eq!(
            end.payload(TransactionId::NONE),
            Err(RequestError::NotInTransaction)
        );
        assert_eq!(end.payload(TransactionId::new(5)), Ok(b"T\0".to_vec()));
        assert_eq!(
            Operation::TransactionEnd { commit: false }.payload(TransactionId::new(5)),
            Ok(b"F\0".to_vec())
        );
        assert_eq!(
            Operation::TransactionStart.payload(TransactionId::new(5)),
            Err(RequestError::NotAllowedInTransaction)
        );
        assert_eq!(
            Operation::Read { path: "/a" }.payload(TransactionId::new(5)),
            Ok(b"/a\0".to_vec())
        );
    }

    #[test]
    fn bad_arguments_and_oversized_payloads_are_refused() {
        assert_eq!(
            Operation::Read { path: "/a//b" }.payload(TransactionId::NONE),
            Err(RequestError::Path(PathError::DoubleSlash))
        );
        assert_eq!(
            Operation::Watch {
                path: "/a",
                token: ""
            }
            .payload(TransactionId::NONE),
            Err(RequestError::Path(PathError::BadToken))
        );
        let value = [0u8; PAYLOAD_MAX];
        assert_eq!(
            Operation::Write {
                path: "/a",
                value: &value
            }
            .payload(TransactionId::NONE),
            Err(RequestError::PayloadTooLong {
                length: PAYLOAD_MAX + 3
            })
        );
        let fits = &value[..PAYLOAD_MAX - 3];
        assert!(Operation::Write {
            path: "/a",
            value: fits
        }
        .payload(TransactionId::NONE)
        .is_ok());
    }

    #[test]
    fn an_encoded_request_parses_back_with_its_header() {
        let bytes = Operation::Mkdir { path: "/x" }
            .encode(RequestId::new(77), TransactionId::new(9))
            .expect("valid request");
        let mut parser = Parser::new();
        parser.feed(&bytes);
        match parser.next_message() {
            Parsed::Message(message) => {
                assert_eq!(message.header.message_type, MessageType::Mkdir);
                assert_eq!(message.header.request_id, RequestId::new(77));
                assert_eq!(message.header.transaction_id, TransactionId::new(9));
                assert_eq!(message.payload, b"/x\0");
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }
}
