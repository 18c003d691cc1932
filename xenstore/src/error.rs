//! The errors xenstored sends in an `XS_ERROR` reply, named by the errno strings of `xsd_errors` in `xs_wire.h` (and oxenstored's `EQUOTA`).

use core::fmt;

/// An error xenstored answered a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XsError {
    /// `EINVAL`: a malformed request or an invalid path.
    InvalidArgument,
    /// `EACCES`: the node's permissions refuse us.
    AccessDenied,
    /// `EEXIST`: the node already exists.
    AlreadyExists,
    /// `EISDIR`.
    IsDirectory,
    /// `ENOENT`: no such node (or transaction, or watch).
    NotFound,
    /// `ENOMEM`.
    OutOfMemory,
    /// `ENOSPC`: a quota is exhausted.
    NoSpace,
    /// `EIO`.
    InputOutput,
    /// `ENOTEMPTY`.
    NotEmpty,
    /// `ENOSYS`: the server does not implement the request.
    NotImplemented,
    /// `EROFS`.
    ReadOnly,
    /// `EBUSY`.
    Busy,
    /// `EAGAIN`: a transaction conflicted with another change; run it again.
    TryAgain,
    /// `EISCONN`.
    AlreadyConnected,
    /// `E2BIG`: the request or reply exceeds a limit.
    TooBig,
    /// `EPERM`.
    NotPermitted,
    /// `EQUOTA`: oxenstored's answer past a node, watch or transaction quota (C xenstored
    /// answers `ENOSPC` or `E2BIG` there). Not in `xs_wire.h`'s list.
    Quota,
}

impl XsError {
    /// Every error: `xsd_errors[]` in its order, then oxenstored's `EQUOTA`.
    pub const ALL: [XsError; 17] = [
        XsError::InvalidArgument,
        XsError::AccessDenied,
        XsError::AlreadyExists,
        XsError::IsDirectory,
        XsError::NotFound,
        XsError::OutOfMemory,
        XsError::NoSpace,
        XsError::InputOutput,
        XsError::NotEmpty,
        XsError::NotImplemented,
        XsError::ReadOnly,
        XsError::Busy,
        XsError::TryAgain,
        XsError::AlreadyConnected,
        XsError::TooBig,
        XsError::NotPermitted,
        XsError::Quota,
    ];

    /// The errno name as it travels on the wire (without the terminating NUL).
    pub const fn errno_name(self) -> &'static str {
        match self {
            XsError::InvalidArgument => "EINVAL",
            XsError::AccessDenied => "EACCES",
            XsError::AlreadyExists => "EEXIST",
            XsError::IsDirectory => "EISDIR",
            XsError::NotFound => "ENOENT",
            XsError::OutOfMemory => "ENOMEM",
            XsError::NoSpace => "ENOSPC",
            XsError::InputOutput => "EIO",
            XsError::NotEmpty => "ENOTEMPTY",
            XsError::NotImplemented => "ENOSYS",
            XsError::ReadOnly => "EROFS",
            XsError::Busy => "EBUSY",
            XsError::TryAgain => "EAGAIN",
            XsError::AlreadyConnected => "EISCONN",
            XsError::TooBig => "E2BIG",
            XsError::NotPermitted => "EPERM",
            XsError::Quota => "EQUOTA",
        }
    }

    /// Decodes an `XS_ERROR` payload: the errno name, NUL-terminated (a missing NUL is
    /// tolerated). `None` for a name not in `xsd_errors[]`.
    pub fn from_payload(payload: &[u8]) -> Option<XsError> {
        let name = payload.strip_suffix(b"\0").unwrap_or(payload);
        XsError::ALL
            .iter()
            .copied()
            .find(|error| error.errno_name().as_bytes() == name)
    }

    /// The payload of an `XS_ERROR` message carrying this error.
    pub fn to_payload(self) -> alloc::vec::Vec<u8> {
        let mut payload = alloc::vec::Vec::from(self.errno_name().as_bytes());
        payload.push(0);
        payload
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "xenstore error {}", self.errno_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_its_payload() {
        for error in XsError::ALL {
            assert_eq!(XsError::from_payload(&error.to_payload()), Some(error));
        }
        assert_eq!(XsError::from_payload(b"EAGAIN"), Some(XsError::TryAgain));
        assert_eq!(XsError::from_payload(b"ENOENT\0"), Some(XsError::NotFound));
        assert_eq!(XsError::from_payload(b"EQUOTA\0"), Some(XsError::Quota));
    }

    #[test]
    fn unknown_or_padded_names_are_refused() {
        assert_eq!(XsError::from_payload(b"EWHATEVER\0"), None);
        assert_eq!(XsError::from_payload(b"enoent\0"), None);
        assert_eq!(XsError::from_payload(b"ENOENT\0\0"), None);
        assert_eq!(XsError::from_payload(b""), None);
    }
}
