//! The lab build's command-line words (`selftest`, `scenario=`, `share-peer=`, `panic`, `fault`): known to every image, taken only by the lab build.
//!
//! A production image recognises them only to say that it ignores them, so that a lab word left
//! in a domain.cfg is reported instead of being called unknown; the parsed form ([`LabWords`])
//! exists in the lab build (and in host tests, which check its parsing whatever the features).

#[cfg(any(test, feature = "lab"))]
use super::Problem;

/// Words that are a whole lab request.
const LAB_FLAGS: [&str; 3] = ["selftest", "panic", "fault"];

/// Prefixes of the lab's words that carry a value.
const LAB_PREFIXES: [&str; 2] = ["scenario=", "share-peer="];

/// Whether `word` belongs to the lab build (a bad value included: it is still a lab word).
pub fn is_lab_word(word: &str) -> bool {
    LAB_FLAGS.contains(&word) || LAB_PREFIXES.iter().any(|prefix| word.starts_with(prefix))
}

/// What the lab build's words ask for.
#[cfg(any(test, feature = "lab"))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabWords<'a> {
    /// `selftest`: run the self-tests, then power off.
    pub selftest: bool,
    /// `scenario=<name>`: run one lab scenario's in-kernel part, then power off.
    pub scenario: Option<&'a str>,
    /// `share-peer=<pages>`: act as a grant-share frontend sharing that many pages with the
    /// backend the toolstack names (the lab's `peer-death` peer), instead of serving.
    pub share_peer: Option<u32>,
    /// `panic`: panic on purpose after boot (the lab checks the crash path).
    pub deliberate_panic: bool,
    /// `fault`: take a page fault on purpose after boot (the lab checks the trap report).
    pub deliberate_fault: bool,
}

#[cfg(any(test, feature = "lab"))]
impl<'a> LabWords<'a> {
    /// Takes one word for which [`is_lab_word`] holds; a bad value is the problem returned.
    pub fn take(&mut self, word: &'a str) -> Result<(), Problem<'a>> {
        if let Some(name) = word.strip_prefix("scenario=") {
            if name.is_empty() {
                return Err(Problem::EmptyScenario);
            }
            if self.scenario.is_some() {
                return Err(Problem::ExtraScenario(name));
            }
            self.scenario = Some(name);
        } else if let Some(value) = word.strip_prefix("share-peer=") {
            match value.parse::<u32>() {
                Ok(pages) if pages > 0 => self.share_peer = Some(pages),
                _ => return Err(Problem::BadSharePeer(value)),
            }
        } else {
            match word {
                "selftest" => self.selftest = true,
                "panic" => self.deliberate_panic = true,
                "fault" => self.deliberate_fault = true,
                _ => return Err(Problem::UnknownWord(word)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all(text: &str) -> (LabWords<'_>, Vec<Problem<'_>>) {
        let mut words = LabWords::default();
        let problems = text
            .split_ascii_whitespace()
            .filter_map(|word| words.take(word).err())
            .collect();
        (words, problems)
    }

    #[test]
    fn every_lab_word_is_recognised_and_nothing_else() {
        for word in [
            "selftest",
            "panic",
            "fault",
            "scenario=grant-map",
            "scenario=",
            "share-peer=8",
            "share-peer=x",
        ] {
            assert!(is_lab_word(word), "{word}");
        }
        for word in [
            "loglevel=info",
            "SelfTest",
            "panicky",
            "scenario",
            "share-peer",
        ] {
            assert!(!is_lab_word(word), "{word}");
        }
    }

    #[test]
    fn every_lab_word_is_taken() {
        let (words, problems) = take_all("selftest scenario=grant-map panic fault share-peer=3");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            words,
            LabWords {
                selftest: true,
                scenario: Some("grant-map"),
                share_peer: Some(3),
                deliberate_panic: true,
                deliberate_fault: true,
            }
        );
    }

    #[test]
    fn scenario_mistakes_are_reported_and_the_first_name_wins() {
        let (words, problems) = take_all("scenario= scenario=a scenario=b");
        assert_eq!(words.scenario, Some("a"));
        assert_eq!(
            problems,
            [Problem::EmptyScenario, Problem::ExtraScenario("b")]
        );
    }

    #[test]
    fn share_peer_takes_a_page_count_of_one_or_more() {
        let (words, problems) = take_all("share-peer=0 share-peer=x share-peer=8");
        assert_eq!(words.share_peer, Some(8));
        assert_eq!(
            problems,
            [Problem::BadSharePeer("0"), Problem::BadSharePeer("x")]
        );
    }
}
