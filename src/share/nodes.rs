//! The grant-share xenstore nodes: names, paths, and the one-time validation of what a frontend wrote.

use super::device_id::DeviceId;
use super::fault::ShareFaultKind;
use crate::ids::{DomId, GrantRef};
use crate::xenbus::value::{parse_u32, RemotePort};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The device type, the directory name under `device/` and `backend/`.
pub const DEVICE_TYPE: &str = "grantsvc-share";

/// Most pages one device may share (so `refs` stays far below xenstore's 4096-byte payload).
pub const MAX_PAGES: u32 = 256;

/// Frontend nodes (written by the granting peer, read by grantsvc).
pub mod frontend {
    pub const BACKEND: &str = "backend";
    pub const BACKEND_ID: &str = "backend-id";
    pub const NR_PAGES: &str = "nr-pages";
    pub const REFS: &str = "refs";
    pub const EVENT_CHANNEL: &str = "event-channel";
    pub const PATTERN_SEED: &str = "pattern-seed";
    pub const WRITABLE: &str = "writable";
    pub const STATE: &str = "state";
}

/// Backend nodes (written by grantsvc, and by the toolstack when it creates the device).
pub mod backend {
    pub const FRONTEND: &str = "frontend";
    pub const FRONTEND_ID: &str = "frontend-id";
    pub const STATE: &str = "state";
    pub const MAPPED_PAGES: &str = "mapped-pages";
    pub const PATTERN: &str = "pattern";
    pub const DIGEST: &str = "digest";
    pub const ANSWER: &str = "answer";
    pub const ERROR: &str = "error";
}

/// Values of the backend's `answer` node.
pub mod answer {
    /// The answer was written into every page.
    pub const WRITTEN: &str = "written";
    /// The pages were granted read-only: nothing written.
    pub const READ_ONLY: &str = "none read-only";
    /// The pattern did not match: nothing written.
    pub const SKIPPED: &str = "none pattern-mismatch";
}

/// `/local/domain/<frontend>/device/grantsvc-share/<devid>`.
pub fn frontend_path(frontend: DomId, device: DeviceId) -> String {
    format!("/local/domain/{frontend}/device/{DEVICE_TYPE}/{device}")
}

/// `/local/domain/<backend>/backend/grantsvc-share/<frontend>/<devid>`.
pub fn backend_path(backend: DomId, frontend: DomId, device: DeviceId) -> String {
    format!("/local/domain/{backend}/backend/{DEVICE_TYPE}/{frontend}/{device}")
}

/// The directory grantsvc watches for new devices: `<home>/backend/grantsvc-share`.
pub fn backend_root(home: &str) -> String {
    format!("{home}/backend/{DEVICE_TYPE}")
}

/// The (frontend, device) a path below [`backend_root`] belongs to, if it is one: a watch on the
/// root reports every node below it, such as `<root>/5/0/state`.
pub fn device_of_backend_path(root: &str, path: &str) -> Option<(DomId, DeviceId)> {
    let rest = path.strip_prefix(root)?.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let frontend = parse_u32(parts.next()?.as_bytes()).ok()?;
    let device = parse_u32(parts.next()?.as_bytes()).ok()?;
    let frontend = DomId::new(u16::try_from(frontend).ok()?)?;
    Some((frontend, DeviceId(device)))
}

/// The frontend's nodes as read, raw and untrusted (`None`: the node does not exist).
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFrontendNodes<'a> {
    pub nr_pages: Option<&'a [u8]>,
    pub refs: Option<&'a [u8]>,
    pub event_channel: Option<&'a [u8]>,
    pub pattern_seed: Option<&'a [u8]>,
    pub writable: Option<&'a [u8]>,
}

/// The frontend's nodes, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrontendNodes {
    /// One ref per page, `1..=MAX_PAGES` of them.
    pub refs: Vec<GrantRef>,
    pub event_channel: RemotePort,
    pub pattern_seed: u32,
    pub writable: bool,
}

fn required<'a>(value: Option<&'a [u8]>, node: &'static str) -> Result<&'a [u8], ShareFaultKind> {
    value.ok_or(ShareFaultKind::Missing(node))
}

impl FrontendNodes {
    /// Decodes and validates every node once; the first fault found is returned.
    pub fn decode(raw: &RawFrontendNodes<'_>) -> Result<FrontendNodes, ShareFaultKind> {
        let nr_pages = required(raw.nr_pages, frontend::NR_PAGES)?;
        let nr_pages = parse_u32(nr_pages).map_err(ShareFaultKind::BadNrPages)?;
        if nr_pages == 0 || nr_pages > MAX_PAGES {
            return Err(ShareFaultKind::NrPagesOutOfRange(nr_pages));
        }
        let refs = Self::decode_refs(required(raw.refs, frontend::REFS)?, nr_pages)?;
        let port = required(raw.event_channel, frontend::EVENT_CHANNEL)?;
        let port = parse_u32(port).map_err(ShareFaultKind::BadEventChannel)?;
        let port = RemotePort::new(port).ok_or(ShareFaultKind::EventChannelOutOfRange(port))?;
        let seed = required(raw.pattern_seed, frontend::PATTERN_SEED)?;
        let pattern_seed = parse_u32(seed).map_err(ShareFaultKind::BadPatternSeed)?;
        let writable = match required(raw.writable, frontend::WRITABLE)? {
            b"1" => true,
            b"0" => false,
            other => {
                return Err(ShareFaultKind::BadWritable(
                    crate::xenbus::value::Excerpt::of(other),
                ))
            }
        };
        Ok(FrontendNodes {
            refs,
            event_channel: port,
            pattern_seed,
            writable,
        })
    }

    /// `refs`: exactly `nr_pages` decimal numbers, each followed by one space but the last.
    fn decode_refs(value: &[u8], nr_pages: u32) -> Result<Vec<GrantRef>, ShareFaultKind> {
        let mut refs = Vec::new();
        for (index, word) in value.split(|&byte| byte == b' ').enumerate() {
            if refs.len() >= nr_pages as usize {
                return Err(ShareFaultKind::RefCount {
                    expected: nr_pages,
                    more: true,
                });
            }
            let number = parse_u32(word).map_err(|fault| ShareFaultKind::BadRef {
                index: index as u32,
                fault,
            })?;
            refs.push(GrantRef::new(number));
        }
        if refs.len() != nr_pages as usize {
            return Err(ShareFaultKind::RefCount {
                expected: nr_pages,
                more: false,
            });
        }
        Ok(refs)
    }

    /// The `refs` node's value for `refs` (what a frontend writes).
    pub fn encode_refs(refs: &[GrantRef]) -> String {
        let words: Vec<String> = refs.iter().map(|grant| format!("{grant}")).collect();
        words.join(" ")
    }
}

#[cfg(test)]
mod tests;
