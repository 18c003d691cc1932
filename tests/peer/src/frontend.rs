//! The frontend's side of grant-share as data: the nodes it publishes and the checks of what grantsvc wrote back.

use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::{EvtchnPort, GrantRef};
use grantsvc::share::nodes::{answer, frontend, FrontendNodes};
use grantsvc::share::pattern;
use grantsvc::xenbus::state::XenbusState;

/// The frontend nodes' values, before publication (garbage kinds spoil them here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    pub nr_pages: String,
    pub refs: String,
    pub event_channel: String,
    pub pattern_seed: String,
    pub writable: String,
}

impl Publication {
    pub fn new(refs: &[GrantRef], port: EvtchnPort, seed: u32, writable: bool) -> Publication {
        Publication {
            nr_pages: refs.len().to_string(),
            refs: FrontendNodes::encode_refs(refs),
            event_channel: port.to_string(),
            pattern_seed: seed.to_string(),
            writable: if writable { "1" } else { "0" }.to_string(),
        }
    }

    /// (node, value) pairs to write under the frontend directory, before `state`.
    pub fn nodes(&self) -> [(&'static str, &str); 5] {
        [
            (frontend::NR_PAGES, &self.nr_pages),
            (frontend::REFS, &self.refs),
            (frontend::EVENT_CHANNEL, &self.event_channel),
            (frontend::PATTERN_SEED, &self.pattern_seed),
            (frontend::WRITABLE, &self.writable),
        ]
    }
}

/// The backend's nodes as read (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendResults {
    pub mapped_pages: Option<String>,
    pub pattern: Option<String>,
    pub digest: Option<String>,
    pub answer: Option<String>,
    pub error: Option<String>,
}

/// Reads a backend `state` value; anything unexpected is reported as it is.
pub fn parse_state(value: &[u8]) -> Result<XenbusState, String> {
    XenbusState::parse(value).map_err(|fault| {
        format!(
            "backend state {:?}: {fault}",
            value.escape_ascii().to_string()
        )
    })
}

fn expect_node(name: &str, found: &Option<String>, wanted: &str) -> Result<(), String> {
    match found {
        Some(value) if value == wanted => Ok(()),
        Some(value) => Err(format!("backend {name} is '{value}', expected '{wanted}'")),
        None => Err(format!("backend {name} is missing, expected '{wanted}'")),
    }
}

/// What the frontend shared, for the checks.
#[derive(Clone, Copy, Debug)]
pub struct Shared {
    pub pages: u32,
    pub seed: u32,
    pub writable: bool,
    /// A byte the frontend corrupted on purpose: (page, byte).
    pub corrupted: Option<(u32, u32)>,
}

impl Shared {
    /// The page as the frontend wrote it.
    pub fn written_page(&self, number: u32) -> [u8; PAGE_SIZE] {
        let mut bytes = pattern::page(self.seed, number);
        if let Some((page, byte)) = self.corrupted {
            if page == number {
                if let Some(target) = bytes.get_mut(byte as usize) {
                    *target ^= 0xff;
                }
            }
        }
        bytes
    }

    /// The CRC-32 grantsvc must report: of the pages as written.
    pub fn expected_digest(&self) -> String {
        let mut digest = pattern::Digest::new();
        for number in 0..self.pages {
            digest.update(&self.written_page(number));
        }
        format!("{:08x}", digest.value())
    }

    /// Whether grantsvc must have answered.
    pub fn expects_answer(&self) -> bool {
        self.writable && self.corrupted.is_none()
    }

    /// Checks the results grantsvc published when it connected.
    pub fn check_results(&self, results: &BackendResults) -> Result<(), String> {
        expect_node(
            "mapped-pages",
            &results.mapped_pages,
            &self.pages.to_string(),
        )?;
        let pattern = match self.corrupted {
            None => "ok".to_string(),
            Some((page, byte)) => format!("mismatch at page {page} byte {byte}"),
        };
        expect_node("pattern", &results.pattern, &pattern)?;
        expect_node("digest", &results.digest, &self.expected_digest())?;
        let answer = if self.expects_answer() {
            answer::WRITTEN
        } else if self.corrupted.is_some() {
            answer::SKIPPED
        } else {
            answer::READ_ONLY
        };
        expect_node("answer", &results.answer, answer)
    }

    /// Checks one page as the frontend now sees it through its own mapping.
    pub fn check_page(&self, number: u32, found: &[u8]) -> Result<(), String> {
        let mut expected = self.written_page(number);
        if self.expects_answer() {
            pattern::apply_answer(&mut expected);
        }
        match found.iter().zip(expected.iter()).position(|(a, b)| a != b) {
            None if found.len() == expected.len() => Ok(()),
            None => Err(format!("page {number}: {} bytes read", found.len())),
            Some(byte) => Err(format!(
                "page {number} byte {byte} is {:#04x}, expected {:#04x} ({})",
                found[byte],
                expected[byte],
                if byte < pattern::ANSWER_LENGTH && self.expects_answer() {
                    "grantsvc's answer missing or wrong"
                } else {
                    "grantsvc changed a byte it must leave alone"
                }
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(writable: bool, corrupted: Option<(u32, u32)>) -> Shared {
        Shared {
            pages: 2,
            seed: 99,
            writable,
            corrupted,
        }
    }

    fn results(pattern: &str, digest: String, answer: &str) -> BackendResults {
        BackendResults {
            mapped_pages: Some("2".to_string()),
            pattern: Some(pattern.to_string()),
            digest: Some(digest),
            answer: Some(answer.to_string()),
            error: None,
        }
    }

    #[test]
    fn publication_matches_the_protocol() {
        let publication = Publication::new(
            &[GrantRef::new(8), GrantRef::new(12)],
            EvtchnPort::new(40).unwrap(),
            5,
            false,
        );
        assert_eq!(
            publication.nodes(),
            [
                ("nr-pages", "2"),
                ("refs", "8 12"),
                ("event-channel", "40"),
                ("pattern-seed", "5"),
                ("writable", "0"),
            ]
        );
    }

    #[test]
    fn results_are_checked_node_by_node() {
        let writable = shared(true, None);
        let digest = format!("{:08x}", pattern::expected_digest(99, 2));
        assert_eq!(writable.expected_digest(), digest);
        assert_eq!(
            writable.check_results(&results("ok", digest.clone(), "written")),
            Ok(())
        );
        assert_eq!(
            writable.check_results(&results("ok", "00000000".to_string(), "written")),
            Err(format!("backend digest is '00000000', expected '{digest}'"))
        );
        assert_eq!(
            shared(false, None).check_results(&results("ok", digest.clone(), "written")),
            Err("backend answer is 'written', expected 'none read-only'".to_string())
        );
        let corrupted = shared(true, Some((1, 1234)));
        assert_ne!(corrupted.expected_digest(), digest);
        assert_eq!(
            corrupted.check_results(&results(
                "mismatch at page 1 byte 1234",
                corrupted.expected_digest(),
                "none pattern-mismatch"
            )),
            Ok(())
        );
        assert_eq!(
            writable.check_results(&BackendResults::default()),
            Err("backend mapped-pages is missing, expected '2'".to_string())
        );
    }

    #[test]
    fn pages_must_carry_the_answer_exactly_where_expected() {
        let writable = shared(true, None);
        let mut page = pattern::page(99, 1).to_vec();
        assert!(writable
            .check_page(1, &page)
            .unwrap_err()
            .contains("answer"));
        pattern::apply_answer(&mut page);
        assert_eq!(writable.check_page(1, &page), Ok(()));
        page[4000] ^= 1;
        assert!(writable
            .check_page(1, &page)
            .unwrap_err()
            .contains("must leave alone"));
        let read_only = shared(false, None);
        assert_eq!(read_only.check_page(0, &pattern::page(99, 0)), Ok(()));
        assert_eq!(parse_state(b"4"), Ok(XenbusState::Connected));
        assert!(parse_state(b"x").is_err());
    }
}
