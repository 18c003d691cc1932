//! The kernel command line (`extra=` in domain.cfg): `loglevel=` in every image, the lab build's words in the lab build only.
//!
//! Words are separated by spaces. Unknown words and bad values do not stop the boot: they are
//! collected as [`Problem`]s for the kernel to log once its console is up. The lab's words
//! (`selftest`, `scenario=`, `share-peer=`, `panic`, `fault`; see [`lab_words`]) are taken only
//! with the `lab` feature; a production image reports each as a lab word it ignores.

mod lab_words;

#[cfg(any(test, feature = "lab"))]
pub use self::lab_words::LabWords;
use core::fmt;
use log::LevelFilter;

/// Most problems kept; later ones are only counted.
const MAX_PROBLEMS: usize = 8;

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// Messages below this level are dropped (`loglevel=`, default `info`).
    pub log_level: LevelFilter,
    /// What the lab's words ask for (the lab build only).
    #[cfg(feature = "lab")]
    pub lab: LabWords<'a>,
    problems: heapless::Vec<Problem<'a>, MAX_PROBLEMS>,
    problems_dropped: usize,
}

/// A word of the command line that was not understood or not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem<'a> {
    /// A word that is none of the known ones.
    UnknownWord(&'a str),
    /// `loglevel=` with a value that is not a level.
    BadLogLevel(&'a str),
    /// A word of the lab build given to a production image, which ignores it.
    LabWordIgnored(&'a str),
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
            // Quoted with their bytes escaped (`escape_ascii`, which the image has anyway)
            // rather than `{:?}`, whose str escaping and Unicode tables are 7 KB (issue 10).
            Problem::UnknownWord(word) => write!(
                formatter,
                "unknown word \"{}\" ignored",
                word.as_bytes().escape_ascii()
            ),
            Problem::BadLogLevel(value) => write!(
                formatter,
                "loglevel=\"{}\" is not one of off, error, warn, info, debug, trace; keeping info",
                value.as_bytes().escape_ascii()
            ),
            Problem::LabWordIgnored(word) => write!(
                formatter,
                "\"{}\" is a word of the lab build (`make lab-kernel`); this production image ignores it",
                word.as_bytes().escape_ascii()
            ),
            Problem::EmptyScenario => write!(formatter, "scenario= names no scenario; ignored"),
            Problem::ExtraScenario(name) => write!(
                formatter,
                "second scenario=\"{}\" ignored: one scenario per boot",
                name.as_bytes().escape_ascii()
            ),
            Problem::BadSharePeer(value) => write!(
                formatter,
                "share-peer=\"{}\" is not a page count of 1 or more; ignored",
                value.as_bytes().escape_ascii()
            ),
        }
    }
}

impl<'a> CommandLine<'a> {
    /// Parses a command line. Never fails: problems are recorded, see [`CommandLine::problems`].
    pub fn parse(text: &'a str) -> CommandLine<'a> {
        let mut command_line = CommandLine {
            log_level: LevelFilter::Info,
            #[cfg(feature = "lab")]
            lab: LabWords::default(),
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
        } else if lab_words::is_lab_word(word) {
            self.take_lab_word(word);
        } else {
            self.record(Problem::UnknownWord(word));
        }
    }

    #[cfg(feature = "lab")]
    fn take_lab_word(&mut self, word: &'a str) {
        if let Err(problem) = self.lab.take(word) {
            self.record(problem);
        }
    }

    #[cfg(not(feature = "lab"))]
    fn take_lab_word(&mut self, word: &'a str) {
        self.record(Problem::LabWordIgnored(word));
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
        #[cfg(feature = "lab")]
        assert_eq!(command_line.lab, LabWords::default());
        assert!(command_line.problems().is_empty());
    }

    #[cfg(feature = "lab")]
    #[test]
    fn the_lab_build_takes_its_words() {
        let command_line =
            CommandLine::parse("  loglevel=debug selftest\tscenario=grant-map panic fault ");
        assert_eq!(command_line.log_level, LevelFilter::Debug);
        assert!(command_line.lab.selftest);
        assert_eq!(command_line.lab.scenario, Some("grant-map"));
        assert!(command_line.lab.deliberate_panic);
        assert!(command_line.lab.deliberate_fault);
        assert!(command_line.problems().is_empty());
    }

    #[cfg(feature = "lab")]
    #[test]
    fn the_lab_build_reports_its_words_bad_values() {
        let command_line = CommandLine::parse("scenario= share-peer=0 scenario=a scenario=b");
        assert_eq!(command_line.lab.scenario, Some("a"));
        assert_eq!(
            command_line.problems(),
            &[
                Problem::EmptyScenario,
                Problem::BadSharePeer("0"),
                Problem::ExtraScenario("b")
            ]
        );
    }

    #[cfg(not(feature = "lab"))]
    #[test]
    fn a_production_image_names_each_lab_word_it_ignores() {
        let command_line = CommandLine::parse(
            "loglevel=debug selftest scenario=grant-map panic fault share-peer=4",
        );
        assert_eq!(command_line.log_level, LevelFilter::Debug);
        assert_eq!(
            command_line.problems(),
            &[
                Problem::LabWordIgnored("selftest"),
                Problem::LabWordIgnored("scenario=grant-map"),
                Problem::LabWordIgnored("panic"),
                Problem::LabWordIgnored("fault"),
                Problem::LabWordIgnored("share-peer=4"),
            ]
        );
        assert!(format!("{}", Problem::LabWordIgnored("panic")).contains("lab build"));
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
    fn unknown_words_are_reported_in_order() {
        let command_line = CommandLine::parse("root=/dev/xvda loglevel=x quiet");
        assert_eq!(
            command_line.problems(),
            &[
                Problem::UnknownWord("root=/dev/xvda"),
                Problem::BadLogLevel("x"),
                Problem::UnknownWord("quiet"),
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
    fn words_are_case_sensitive() {
        let command_line = CommandLine::parse("SelfTest");
        assert_eq!(command_line.problems(), &[Problem::UnknownWord("SelfTest")]);
    }

    #[test]
    fn reported_words_are_quoted_with_their_bytes_escaped() {
        assert_eq!(
            Problem::UnknownWord("quiet").to_string(),
            "unknown word \"quiet\" ignored"
        );
        assert_eq!(
            Problem::BadLogLevel("a\"b\\\u{7f}\u{e9}").to_string(),
            "loglevel=\"a\\\"b\\\\\\x7f\\xc3\\xa9\" is not one of off, error, warn, info, debug, trace; keeping info"
        );
    }
}
