//! What the toolstack asks for in `control/shutdown` (`xl shutdown`, `xl reboot`), decoded from the untrusted node value.

use crate::abi::sched::ShutdownReason;

/// A request read from `control/shutdown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownRequest {
    /// "poweroff" (`xl shutdown`) or "halt": stop for good.
    Poweroff,
    /// "reboot" (`xl reboot`): stop, the toolstack starts us again.
    Reboot,
    /// "suspend": grantsvc cannot save its peers' mappings; refused.
    Suspend,
}

impl ShutdownRequest {
    /// Decodes a node value. `None` for the empty value (no request, or our own
    /// acknowledgement) and for anything not a known request; a trailing NUL is tolerated.
    pub fn parse(value: &[u8]) -> Option<ShutdownRequest> {
        let value = value.strip_suffix(b"\0").unwrap_or(value);
        match value {
            b"poweroff" | b"halt" => Some(ShutdownRequest::Poweroff),
            b"reboot" => Some(ShutdownRequest::Reboot),
            b"suspend" => Some(ShutdownRequest::Suspend),
            _ => None,
        }
    }

    /// The `SCHEDOP_shutdown` reason that carries it out, `None` for requests we refuse.
    pub fn reason(self) -> Option<ShutdownReason> {
        match self {
            ShutdownRequest::Poweroff => Some(ShutdownReason::Poweroff),
            ShutdownRequest::Reboot => Some(ShutdownReason::Reboot),
            ShutdownRequest::Suspend => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ShutdownRequest::Poweroff => "poweroff",
            ShutdownRequest::Reboot => "reboot",
            ShutdownRequest::Suspend => "suspend",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolstack_words_are_understood() {
        assert_eq!(
            ShutdownRequest::parse(b"poweroff"),
            Some(ShutdownRequest::Poweroff)
        );
        assert_eq!(
            ShutdownRequest::parse(b"halt"),
            Some(ShutdownRequest::Poweroff)
        );
        assert_eq!(
            ShutdownRequest::parse(b"reboot\0"),
            Some(ShutdownRequest::Reboot)
        );
        assert_eq!(
            ShutdownRequest::parse(b"suspend"),
            Some(ShutdownRequest::Suspend)
        );
        assert_eq!(
            ShutdownRequest::Poweroff.reason(),
            Some(ShutdownReason::Poweroff)
        );
        assert_eq!(
            ShutdownRequest::Reboot.reason(),
            Some(ShutdownReason::Reboot)
        );
        assert_eq!(ShutdownRequest::Suspend.reason(), None);
    }

    #[test]
    fn empty_and_unknown_values_are_no_request() {
        for value in [
            &b""[..],
            b"\0",
            b"POWEROFF",
            b"poweroff ",
            b"reboot\0\0",
            b"\xff",
        ] {
            assert_eq!(ShutdownRequest::parse(value), None, "{value:?}");
        }
    }
}
