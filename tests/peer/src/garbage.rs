//! The bad values `share --garbage KIND` publishes, and what grantsvc must answer to each.

use crate::frontend::Publication;
use grantsvc::peer::share::fault::ShareFaultKind;
use grantsvc::peer::share::nodes::MAX_PAGES;

/// A ref no domain has granted (far beyond any grant table's default 64 frames).
pub const UNGRANTED_REF: u32 = 0x0fff_ffff;

/// A port number valid in form but never an unbound port for grantsvc: beyond the 2-level
/// event-channel ABI (4096 ports on x86-64), below the FIFO ABI's limit.
pub const UNBOUND_PORT: u32 = (1 << 17) - 1;

/// Where `pattern` corrupts the last page (past the answer area, so only the check sees it).
pub const CORRUPT_BYTE: u32 = 1234;

/// One kind of bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Garbage {
    RefsNonNumeric,
    RefsLeadingZero,
    RefsCount,
    RefsUngranted,
    NrPagesZero,
    NrPagesHuge,
    NrPagesNonNumeric,
    PortZero,
    PortUnbound,
    BadState,
    Pattern,
}

/// What grantsvc must do with a kind of garbage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expectation {
    /// Refuse the device: `state` Closed, nothing mapped, `error` containing this text.
    Refused(String),
    /// Connect, but report a mismatch at (page, byte) and write no answer.
    Mismatch(u32, u32),
    /// Connect, then, when the frontend writes a garbage `state`, close with this error.
    ClosedAfterConnect(String),
}

impl Garbage {
    pub const ALL: [Garbage; 11] = [
        Garbage::RefsNonNumeric,
        Garbage::RefsLeadingZero,
        Garbage::RefsCount,
        Garbage::RefsUngranted,
        Garbage::NrPagesZero,
        Garbage::NrPagesHuge,
        Garbage::NrPagesNonNumeric,
        Garbage::PortZero,
        Garbage::PortUnbound,
        Garbage::BadState,
        Garbage::Pattern,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Garbage::RefsNonNumeric => "refs-non-numeric",
            Garbage::RefsLeadingZero => "refs-leading-zero",
            Garbage::RefsCount => "refs-count",
            Garbage::RefsUngranted => "refs-ungranted",
            Garbage::NrPagesZero => "nr-pages-zero",
            Garbage::NrPagesHuge => "nr-pages-huge",
            Garbage::NrPagesNonNumeric => "nr-pages-non-numeric",
            Garbage::PortZero => "port-zero",
            Garbage::PortUnbound => "port-unbound",
            Garbage::BadState => "state-garbage",
            Garbage::Pattern => "pattern",
        }
    }

    pub fn parse(name: &str) -> Result<Garbage, String> {
        Garbage::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| format!("unknown garbage kind '{name}'"))
    }

    /// Spoils the nodes about to be published.
    pub fn corrupt(self, publication: &mut Publication) {
        let mut refs: Vec<String> = publication.refs.split(' ').map(str::to_string).collect();
        match self {
            Garbage::RefsNonNumeric => {
                if let Some(last) = refs.last_mut() {
                    *last = "12ab".to_string();
                }
            }
            // The same ref with a zero in front: a number "%u" never writes.
            Garbage::RefsLeadingZero => {
                if let Some(last) = refs.last_mut() {
                    *last = format!("0{last}");
                }
            }
            Garbage::RefsCount => {
                refs.pop();
            }
            Garbage::RefsUngranted => {
                if let Some(first) = refs.first_mut() {
                    *first = UNGRANTED_REF.to_string();
                }
            }
            Garbage::NrPagesZero => publication.nr_pages = "0".to_string(),
            Garbage::NrPagesHuge => publication.nr_pages = u32::MAX.to_string(),
            Garbage::NrPagesNonNumeric => publication.nr_pages = "lots".to_string(),
            Garbage::PortZero => publication.event_channel = "0".to_string(),
            Garbage::PortUnbound => publication.event_channel = UNBOUND_PORT.to_string(),
            Garbage::BadState | Garbage::Pattern => {}
        }
        publication.refs = refs.join(" ");
    }

    /// The page and byte `pattern` corrupts in a share of `pages` pages.
    pub fn corrupted_byte(self, pages: u32) -> Option<(u32, u32)> {
        (self == Garbage::Pattern).then_some((pages.saturating_sub(1), CORRUPT_BYTE))
    }

    /// What grantsvc must do for this garbage in a share of `pages` pages.
    pub fn expectation(self, pages: u32) -> Expectation {
        let refused = |kind: ShareFaultKind| Expectation::Refused(kind.to_string());
        let last = pages.saturating_sub(1);
        match self {
            Garbage::RefsNonNumeric => {
                Expectation::Refused(format!("refs[{last}]: non-numeric value \"12ab\""))
            }
            // The ref itself is whatever gntalloc handed out; the text up to it is grantsvc's.
            Garbage::RefsLeadingZero => {
                Expectation::Refused(format!("refs[{last}]: leading zero in value \"0"))
            }
            Garbage::RefsCount => refused(ShareFaultKind::RefCount {
                expected: pages,
                more: false,
            }),
            // The status is Xen's (bad_gntref); the text up to it is grantsvc's.
            Garbage::RefsUngranted => {
                Expectation::Refused("mapping its refs failed with status".to_string())
            }
            Garbage::NrPagesZero => refused(ShareFaultKind::NrPagesOutOfRange(0)),
            Garbage::NrPagesHuge => refused(ShareFaultKind::NrPagesOutOfRange(u32::MAX)),
            Garbage::NrPagesNonNumeric => {
                Expectation::Refused("nr-pages: non-numeric value \"lots\"".to_string())
            }
            Garbage::PortZero => refused(ShareFaultKind::EventChannelOutOfRange(0)),
            Garbage::PortUnbound => Expectation::Refused(format!(
                "binding its event channel {UNBOUND_PORT} failed with status"
            )),
            Garbage::BadState => {
                Expectation::ClosedAfterConnect("state: non-numeric value \"Closing\"".to_string())
            }
            Garbage::Pattern => Expectation::Mismatch(last, CORRUPT_BYTE),
        }
    }
}

/// The `state` value `state-garbage` writes once connected.
pub const GARBAGE_STATE: &str = "Closing";

const _: () = assert!(MAX_PAGES < UNGRANTED_REF);

#[cfg(test)]
mod tests {
    use super::*;
    use grantsvc::ids::{EvtchnPort, GrantRef};
    use grantsvc::peer::share::nodes::{FrontendNodes, RawFrontendNodes};

    fn publication(pages: u32) -> Publication {
        let refs: Vec<GrantRef> = (0..pages).map(|index| GrantRef::new(10 + index)).collect();
        Publication::new(&refs, EvtchnPort::new(30).unwrap(), 77, true)
    }

    /// What grantsvc's own validation says about `publication`.
    fn decode(publication: &Publication) -> Result<FrontendNodes, ShareFaultKind> {
        FrontendNodes::decode(&RawFrontendNodes {
            nr_pages: Some(publication.nr_pages.as_bytes()),
            refs: Some(publication.refs.as_bytes()),
            event_channel: Some(publication.event_channel.as_bytes()),
            pattern_seed: Some(publication.pattern_seed.as_bytes()),
            writable: Some(publication.writable.as_bytes()),
        })
    }

    #[test]
    fn every_kind_has_a_name_that_parses_back() {
        for kind in Garbage::ALL {
            assert_eq!(Garbage::parse(kind.name()), Ok(kind));
        }
    }

    #[test]
    fn value_garbage_is_refused_by_grantsvc_with_the_expected_text() {
        for kind in Garbage::ALL {
            let mut spoiled = publication(3);
            kind.corrupt(&mut spoiled);
            match (kind.expectation(3), decode(&spoiled)) {
                (Expectation::Refused(text), Err(fault)) => {
                    assert!(
                        fault.to_string().contains(&text),
                        "{kind:?}: {fault} vs {text}"
                    )
                }
                // Ungranted refs and unbound ports are well-formed: only Xen refuses them.
                (Expectation::Refused(_), Ok(nodes)) => match kind {
                    Garbage::RefsUngranted => {
                        assert_eq!(nodes.refs[0], GrantRef::new(UNGRANTED_REF))
                    }
                    Garbage::PortUnbound => assert_eq!(nodes.event_channel.0, UNBOUND_PORT),
                    _ => panic!("{kind:?} was accepted"),
                },
                (_, Ok(nodes)) => assert_eq!(nodes, decode(&publication(3)).unwrap()),
                (expectation, Err(fault)) => panic!("{kind:?}: {expectation:?} but {fault}"),
            }
        }
    }

    #[test]
    fn the_pattern_is_corrupted_in_the_last_page() {
        assert_eq!(Garbage::Pattern.corrupted_byte(4), Some((3, CORRUPT_BYTE)));
        assert_eq!(Garbage::PortZero.corrupted_byte(4), None);
        assert_eq!(
            Garbage::Pattern.expectation(4),
            Expectation::Mismatch(3, CORRUPT_BYTE)
        );
    }
}
