//! Watch events: the `XS_WATCH_EVENT` payload `"path\0token\0"` decoded.

use alloc::string::String;
use alloc::vec::Vec;

/// A fired watch: which node changed, and the token of the watch that matched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The node that changed (or the special path, such as `@releaseDomain`). Relative when the
    /// watch was registered with a relative path.
    pub path: String,
    pub token: String,
}

impl WatchEvent {
    /// Decodes an event payload: exactly two non-empty UTF-8 strings, each NUL-terminated (the
    /// final NUL may be missing).
    pub fn decode(payload: &[u8]) -> Option<WatchEvent> {
        let body = payload.strip_suffix(b"\0").unwrap_or(payload);
        let mut parts = body.split(|byte| *byte == 0);
        let path = parts.next()?;
        let token = parts.next()?;
        if parts.next().is_some() || path.is_empty() || token.is_empty() {
            return None;
        }
        Some(WatchEvent {
            path: String::from(core::str::from_utf8(path).ok()?),
            token: String::from(core::str::from_utf8(token).ok()?),
        })
    }

    /// The payload xenstored would send for this event (for tests and simulators).
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.path.len() + self.token.len() + 2);
        payload.extend_from_slice(self.path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(self.token.as_bytes());
        payload.push(0);
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_and_round_trip() {
        let event = WatchEvent::decode(b"/local/domain/3/state\0peer-3\0").expect("valid");
        assert_eq!(event.path, "/local/domain/3/state");
        assert_eq!(event.token, "peer-3");
        assert_eq!(WatchEvent::decode(&event.encode()), Some(event));
        assert!(WatchEvent::decode(b"@releaseDomain\0t").is_some());
    }

    #[test]
    fn malformed_events_are_refused() {
        for payload in [
            &b""[..],
            b"\0",
            b"/p\0",
            b"/p",
            b"\0tok\0",
            b"/p\0\0",
            b"/p\0tok\0extra\0",
            b"/p\0\xff\0",
        ] {
            assert_eq!(WatchEvent::decode(payload), None, "{payload:?}");
        }
    }
}
