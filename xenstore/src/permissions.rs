//! Node permissions: the `"n0"`, `"r5"`, `"w3"`, `"b1"` strings of `XS_GET_PERMS` / `XS_SET_PERMS` as typed values.
//!
//! The first entry names the node's owner (who may always read and write it) and, through its
//! letter, the access of every domain not listed; each further entry grants one domain an
//! access. The letter is `n` none, `r` read, `w` write, `b` both.

use alloc::string::ToString;
use alloc::vec::Vec;

use crate::ids::DomId;

/// What a domain may do with a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    None,
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn letter(self) -> u8 {
        match self {
            Access::None => b'n',
            Access::Read => b'r',
            Access::Write => b'w',
            Access::ReadWrite => b'b',
        }
    }

    fn from_letter(letter: u8) -> Option<Access> {
        match letter {
            b'n' => Some(Access::None),
            b'r' => Some(Access::Read),
            b'w' => Some(Access::Write),
            b'b' => Some(Access::ReadWrite),
            _ => None,
        }
    }
}

/// One entry of a permission list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Permission {
    pub domain: DomId,
    pub access: Access,
}

impl Permission {
    /// Parses one entry such as `"r5"`: a letter then a decimal domain id, nothing else. The id
    /// must name an ordinary domain ([`DomId::new`]): permissions name real domains, and a
    /// reserved id in a reply is malformed rather than a value to pass on.
    pub fn parse(text: &[u8]) -> Option<Permission> {
        let (&letter, digits) = text.split_first()?;
        let access = Access::from_letter(letter)?;
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let value = digits
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
        let domain = DomId::new(u16::try_from(value).ok()?)?;
        Some(Permission { domain, access })
    }

    fn append_to(self, payload: &mut Vec<u8>) {
        payload.push(self.access.letter());
        payload.extend_from_slice(self.domain.get().to_string().as_bytes());
        payload.push(0);
    }
}

/// A node's permissions, as `XS_GET_PERMS` returns them and `XS_SET_PERMS` takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePermissions {
    /// The owning domain, which always has full access.
    pub owner: DomId,
    /// The access of every domain not listed in `grants`.
    pub others: Access,
    /// Per-domain access, in order.
    pub grants: Vec<Permission>,
}

impl NodePermissions {
    /// Owned by `owner`, readable by `reader`, closed to every other domain: a node one domain
    /// publishes for one peer (a device's or a vchan's nodes).
    pub fn owner_and_reader(owner: DomId, reader: DomId) -> NodePermissions {
        NodePermissions {
            owner,
            others: Access::None,
            grants: alloc::vec![Permission {
                domain: reader,
                access: Access::Read,
            }],
        }
    }

    /// Decodes a reply payload: NUL-terminated entries, at least one.
    pub fn decode(payload: &[u8]) -> Option<NodePermissions> {
        let body = payload.strip_suffix(b"\0")?;
        let mut entries = body.split(|byte| *byte == 0).map(Permission::parse);
        let first = entries.next()??;
        let grants = entries.collect::<Option<Vec<Permission>>>()?;
        Some(NodePermissions {
            owner: first.domain,
            others: first.access,
            grants,
        })
    }

    /// The entries as NUL-terminated strings, for after the path in `XS_SET_PERMS`.
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        Permission {
            domain: self.owner,
            access: self.others,
        }
        .append_to(&mut payload);
        for grant in &self.grants {
            grant.append_to(&mut payload);
        }
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_for_one_reader_is_closed_to_others() {
        let permissions =
            NodePermissions::owner_and_reader(DomId::new(3).unwrap(), DomId::new(0).unwrap());
        assert_eq!(permissions.encode(), b"n3\0r0\0");
    }

    #[test]
    fn a_get_perms_reply_decodes_to_owner_default_and_grants() {
        let permissions = NodePermissions::decode(b"n0\0r5\0b32751\0").expect("valid");
        assert_eq!(permissions.owner, DomId::new(0).unwrap());
        assert_eq!(permissions.others, Access::None);
        assert_eq!(
            permissions.grants,
            [
                Permission {
                    domain: DomId::new(5).unwrap(),
                    access: Access::Read
                },
                Permission {
                    domain: DomId::new(32751).unwrap(),
                    access: Access::ReadWrite
                }
            ]
        );
        assert_eq!(permissions.encode(), b"n0\0r5\0b32751\0");
    }

    #[test]
    fn every_access_round_trips() {
        for access in [Access::None, Access::Read, Access::Write, Access::ReadWrite] {
            let permissions = NodePermissions {
                owner: DomId::new(7).unwrap(),
                others: access,
                grants: Vec::from([Permission {
                    domain: DomId::new(12).unwrap(),
                    access,
                }]),
            };
            assert_eq!(
                NodePermissions::decode(&permissions.encode()),
                Some(permissions)
            );
        }
    }

    #[test]
    fn malformed_entries_are_refused() {
        for payload in [
            &b""[..],
            b"\0",
            b"n0",
            b"x0\0",
            b"n\0",
            b"n-1\0",
            b"n65536\0",
            b"n32752\0",
            b"n0\0r65535\0",
            b"n123456\0",
            b"n0\0\0",
            b"n0\0r\0",
            b"n 1\0",
        ] {
            assert_eq!(NodePermissions::decode(payload), None, "{payload:?}");
        }
    }
}
