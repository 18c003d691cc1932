//! The kernel command line (`extra=` in domain.cfg): `loglevel=`, `selftest`, `scenario=`, `share-peer=`, `panic`, `fault`.
//!
//! Words are separated by spaces. Unknown words and bad values do not stop the boot: they are
//! collected as [`Problem`]s for the kernel to log once its console is up.

use core::fmt;
use log::LevelFilter;

/// Most problems kept; later ones are only counted.
const MAX_PROBLEMS: usize = 8;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// Messages below this level are dropped (`loglevel=`, default `info`).
    pub log_level: LevelFilter,
    /// `selftest`: run the self-tests, then power off.
    pub selftest: bool,
    /// `scenario=<name>`: run one lab scenario's in-kernel part, then power off.
    pub scenario: Option<&'a str>,
    /// `share-peer=<pages>`: act as a grant-share frontend sharing that many pages with the
    /// backend the toolstack names (the lab's `peer-death` peer), instead of serving.
    pub share_peer: Option<u32>,
    /// `panic`: panic on purpose after the banner (the lab checks the crash path).
    pub deliberate_panic: bool,
    /// `fault`: take a page fault on purpose after the banner (the lab checks the trap report).
    pub deliberate_fault: bool,
    problems: heapless::Vec<Problem<'a>, MAX_PROBLEMS>,
    problems_dropped: usize,
}

/// A word of the command line that was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem<'a> {
    /// A word that is none of the known ones.
    UnknownWord(&'a str),
    /// `loglevel=` with a value that is not a level.
    BadLogLevel(&'a str),
    /// `scenario=` with nothing after it.
    EmptyScenario,
    /// A second `scenario=`: the first one wins.
    ExtraScenario(&'a str),
    /// `share-peer=` with a value that is not a page count of 1 or more.
    BadSharePeer(&'a str),
}

impl fmt::Display for Problem<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownWord(word) => write!(formatter, "unknown word {word:?} ignored"),
            Problem::BadLogLevel(value) => write!(
                formatter,
                "loglevel={value:?} is not one of off, error, warn, info, debug, trace; keeping info"
            ),
            Problem::EmptyScenario => write!(formatter, "scenario= names no scenario; ignored"),
            Problem::ExtraScenario(name) => {
                write!(formatter, "second scenario={name:?} ignored: one scenario per boot")
            }
            Problem::BadSharePeer(value) => {
                write!(formatter, "share-peer={value:?} is not a page count of 1 or more; ignored")
            }
        }
    }
}

impl<'a> CommandLine<'a> {
    /// Parses a command line. Never fails: problems are recorded, see [`CommandLine::problems`].
    pub fn parse(text: &'a str) -> CommandLine<'a> {
        let mut command_line = CommandLine {
            log_level: LevelFilter::Info,
            selftest: false,
            scenario: None,
            share_peer: None,
            deliberate_panic: false,
            deliberate_fault: false,
            problems: heapless::Vec::new(),
            problems_dropped: 0,
        };
        for word in text.split_ascii_whitespace() {
            command_line.take_word(word);
        }
        command_line
    }

    fn take_word(&mut self, word: &'a str) {
        if let Some(value) = word.strip_prefix("loglevel=") {
            match parse_level(value) {
                Some(level) => self.log_level = level,
                None => self.record(Problem::BadLogLevel(value)),
            }
        } else if let Some(name) = word.strip_prefix("scenario=") {
            if name.is_empty() {
                self.record(Problem::EmptyScenario);
            } else if self.scenario.is_some() {
                self.record(Problem::ExtraScenario(name));
            } else {
                self.scenario = Some(name);
            }
        } else if let Some(value) = word.strip_prefix("share-peer=") {
            match value.parse::<u32>() {
                Ok(pages) if pages > 0 => self.share_peer = Some(pages),
                _ => self.record(Problem::BadSharePeer(value)),
            }
        } else {
            match word {
                "selftest" => self.selftest = true,
                "panic" => self.deliberate_panic = true,
                "fault" => self.deliberate_fault = true,
                _ => self.record(Problem::UnknownWord(word)),
            }
        }
    }

    fn record(&mut self, problem: Problem<'a>) {
        if self.problems.push(problem).is_err() {
            self.problems_dropped += 1;
        }
    }

    /// The words that were not understood, in order (at most eight).
    pub fn problems(&self) -> &[Problem<'a>] {
        &self.problems
    }

    /// How many further problems were not kept.
    pub fn problems_dropped(&self) -> usize {
        self.problems_dropped
    }
}

/// A `log` level filter from its lower-case name.
fn parse_level(value: &str) -> Option<LevelFilter> {
    match value {
        "off" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_line_means_info_and_nothing_else() {
        let command_line = CommandLine::parse("");
        assert_eq!(command_line.log_level, LevelFilter::Info);
        assert!(!command_line.selftest);
        assert_eq!(command_line.scenario, None);
        assert!(!command_line.deliberate_panic);
        assert!(!command_line.deliberate_fault);
        assert!(command_line.problems().is_empty());
    }

    #[test]
    fn every_known_word_is_understood() {
        let command_line =
            CommandLine::parse("  loglevel=debug selftest\tscenario=grant-map panic fault ");
        assert_eq!(command_line.log_level, LevelFilter::Debug);
        assert!(command_line.selftest);
        assert_eq!(command_line.scenario, Some("grant-map"));
        assert!(command_line.deliberate_panic);
        assert!(command_line.deliberate_fault);
        assert!(command_line.problems().is_empty());
    }

    #[test]
    fn a_bad_level_keeps_the_default_and_is_reported() {
        let command_line = CommandLine::parse("loglevel=loud");
        assert_eq!(command_line.log_level, LevelFilter::Info);
        assert_eq!(command_line.problems(), &[Problem::BadLogLevel("loud")]);
    }

    #[test]
    fn the_last_good_level_wins() {
        let command_line = CommandLine::parse("loglevel=trace loglevel=warn");
        assert_eq!(command_line.log_level, LevelFilter::Warn);
    }

    #[test]
    fn unknown_words_and_scenario_mistakes_are_reported_in_order() {
        let command_line = CommandLine::parse("root=/dev/xvda scenario= scenario=a scenario=b");
        assert_eq!(command_line.scenario, Some("a"));
        assert_eq!(
            command_line.problems(),
            &[
                Problem::UnknownWord("root=/dev/xvda"),
                Problem::EmptyScenario,
                Problem::ExtraScenario("b"),
            ]
        );
    }

    #[test]
    fn problems_beyond_the_limit_are_counted() {
        let command_line = CommandLine::parse("a b c d e f g h i j");
        assert_eq!(command_line.problems().len(), MAX_PROBLEMS);
        assert_eq!(command_line.problems_dropped(), 2);
    }

    #[test]
    fn share_peer_takes_a_page_count() {
        assert_eq!(CommandLine::parse("share-peer=8").share_peer, Some(8));
        let command_line = CommandLine::parse("share-peer=0 share-peer=x");
        assert_eq!(command_line.share_peer, None);
        assert_eq!(
            command_line.problems(),
            &[Problem::BadSharePeer("0"), Problem::BadSharePeer("x")]
        );
    }

    #[test]
    fn words_are_case_sensitive() {
        let command_line = CommandLine::parse("SelfTest");
        assert!(!command_line.selftest);
        assert_eq!(command_line.problems(), &[Problem::UnknownWord("SelfTest")]);
    }
}
