//! The `struct xsd_sockmsg` header and the limits of `xs_wire.h`: encoding and checked decoding.

use alloc::vec::Vec;

use crate::ids::{RequestId, TransactionId};
use crate::message_type::MessageType;
use crate::parser::Malformation;

/// Size of the header in bytes: four `uint32_t` fields.
pub const HEADER_SIZE: usize = 16;
/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;
/// Longest absolute path xenstored accepts (`XENSTORE_ABS_PATH_MAX`).
pub const ABSOLUTE_PATH_MAX: usize = 3072;
/// Longest relative path xenstored accepts (`XENSTORE_REL_PATH_MAX`).
pub const RELATIVE_PATH_MAX: usize = 2048;

/// A decoded message header. The fields are in the host's byte order on the wire, as both ends
/// of a xenstore connection run on the same machine (little-endian on x86).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What the message is.
    pub message_type: MessageType,
    /// The request id, echoed in the reply; 0 on watch events.
    pub request_id: RequestId,
    /// The transaction the request belongs to, or [`TransactionId::NONE`].
    pub transaction_id: TransactionId,
    /// Payload length in bytes, at most [`PAYLOAD_MAX`].
    pub length: u32,
}

impl Header {
    /// The header's bytes as they go on the wire.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut bytes = [0u8; HEADER_SIZE];
        let fields = [
            self.message_type.to_wire(),
            self.request_id.get(),
            self.transaction_id.get(),
            self.length,
        ];
        for (chunk, field) in bytes.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&field.to_ne_bytes());
        }
        bytes
    }

    /// Decodes and checks a header: the type must be one Xen defines and the length within
    /// [`PAYLOAD_MAX`]. Either fault means the stream can no longer be framed.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Result<Header, Malformation> {
        let [t0, t1, t2, t3, r0, r1, r2, r3, x0, x1, x2, x3, l0, l1, l2, l3] = *bytes;
        let raw_type = u32::from_ne_bytes([t0, t1, t2, t3]);
        let length = u32::from_ne_bytes([l0, l1, l2, l3]);
        let message_type =
            MessageType::from_wire(raw_type).ok_or(Malformation::UnknownType(raw_type))?;
        if length as usize > PAYLOAD_MAX {
            return Err(Malformation::PayloadTooLong(length));
        }
        Ok(Header {
            message_type,
            request_id: RequestId::new(u32::from_ne_bytes([r0, r1, r2, r3])),
            transaction_id: TransactionId::new(u32::from_ne_bytes([x0, x1, x2, x3])),
            length,
        })
    }
}

/// A whole message (header then payload) as bytes, refusing payloads over [`PAYLOAD_MAX`].
pub fn encode_message(
    message_type: MessageType,
    request_id: RequestId,
    transaction_id: TransactionId,
    payload: &[u8],
) -> Option<Vec<u8>> {
    if payload.len() > PAYLOAD_MAX {
        return None;
    }
    let header = Header {
        message_type,
        request_id,
        transaction_id,
        // Cannot truncate: checked against PAYLOAD_MAX just above.
        length: payload.len() as u32,
    };
    let mut bytes = Vec::with_capacity(HEADER_SIZE + payload.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(payload);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_for_every_type() {
        for message_type in MessageType::ALL {
            let header = Header {
                message_type,
                request_id: RequestId::new(0xdead_beef),
                transaction_id: TransactionId::new(7),
                length: 4096,
            };
            assert_eq!(Header::decode(&header.encode()), Ok(header));
        }
    }

    #[test]
    fn header_layout_is_four_little_endian_words_on_x86() {
        let header = Header {
            message_type: MessageType::Read,
            request_id: RequestId::new(0x0102_0304),
            transaction_id: TransactionId::new(5),
            length: 6,
        };
        let bytes = header.encode();
        if cfg!(target_endian = "little") {
            assert_eq!(
                bytes,
                [2, 0, 0, 0, 4, 3, 2, 1, 5, 0, 0, 0, 6, 0, 0, 0],
                "type, req_id, tx_id, len"
            );
        }
    }

    #[test]
    fn bad_headers_are_refused_with_the_reason() {
        let mut bytes = Header {
            message_type: MessageType::Read,
            request_id: RequestId::new(1),
            transaction_id: TransactionId::NONE,
            length: 4097,
        }
        .encode();
        assert_eq!(
            Header::decode(&bytes),
            Err(Malformation::PayloadTooLong(4097))
        );
        bytes[..4].copy_from_slice(&20u32.to_ne_bytes());
        assert_eq!(Header::decode(&bytes), Err(Malformation::UnknownType(20)));
    }

    #[test]
    fn encode_message_refuses_oversized_payloads() {
        let big = [b'x'; PAYLOAD_MAX + 1];
        assert!(encode_message(
            MessageType::Write,
            RequestId::new(1),
            TransactionId::NONE,
            &big
        )
        .is_none());
        let message = encode_message(
            MessageType::Write,
            RequestId::new(1),
            TransactionId::NONE,
            &big[..PAYLOAD_MAX],
        );
        assert_eq!(
            message.map(|bytes| bytes.len()),
            Some(HEADER_SIZE + PAYLOAD_MAX)
        );
    }
}
