//! The tally of a crowd's answers (served, refused per reason, wrong, unanswered, the slowest named) and its one-line summary.

use crate::share_device::Answer;
use std::collections::BTreeMap;
use std::time::Duration;

/// The tally of the answers, for the figures and the verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub served: u32,
    /// Refusal reasons and how many devices got each.
    pub refused: BTreeMap<String, u32>,
    /// "device K: what was wrong" for every device that answered wrongly.
    pub wrong: Vec<String>,
    pub unanswered: Vec<String>,
    /// The slowest answer after its peer's publication, and whose.
    pub slowest: Option<(Duration, String)>,
}

impl Tally {
    /// Counts (peer's name, its answer and how long after publication) pairs.
    pub fn count<'a>(
        answers: impl IntoIterator<Item = (String, Option<&'a (Answer, Duration)>)>,
    ) -> Tally {
        let mut tally = Tally::default();
        for (name, answer) in answers {
            let Some((answer, took)) = answer else {
                tally.unanswered.push(name);
                continue;
            };
            if tally.slowest.as_ref().is_none_or(|(worst, _)| took > worst) {
                tally.slowest = Some((*took, name.clone()));
            }
            match answer {
                Answer::Served => tally.served += 1,
                Answer::Refused(reason) => *tally.refused.entry(reason.clone()).or_default() += 1,
                Answer::ConnectedWrongly(wrong) => {
                    tally.wrong.push(format!("{name} Connected but {wrong}"))
                }
                Answer::ClosedSilently => tally
                    .wrong
                    .push(format!("{name} Closed with no error node")),
            }
        }
        tally
    }

    /// One line of figures: "served 120, refused 8 (3 kinds), wrong 0, unanswered 0".
    pub fn line(&self) -> String {
        format!(
            "served {}, refused {} ({} reason(s)), wrong {}, unanswered {}",
            self.served,
            self.refused.values().sum::<u32>(),
            self.refused.len(),
            self.wrong.len(),
            self.unanswered.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_tallied_by_kind_with_the_slowest_named() {
        let ms = Duration::from_millis;
        let answers = [
            (Answer::Served, ms(40)),
            (Answer::Refused("quota: nodes".to_string()), ms(900)),
            (Answer::Refused("quota: nodes".to_string()), ms(20)),
            (
                Answer::ConnectedWrongly("digest missing".to_string()),
                ms(30),
            ),
            (Answer::ClosedSilently, ms(10)),
        ];
        let named = answers
            .iter()
            .enumerate()
            .map(|(index, answer)| (format!("device {index}"), Some(answer)))
            .chain([("device 9".to_string(), None)]);
        let tally = Tally::count(named);
        assert_eq!(tally.served, 1);
        assert_eq!(tally.refused.get("quota: nodes"), Some(&2));
        assert_eq!(
            tally.wrong,
            [
                "device 3 Connected but digest missing",
                "device 4 Closed with no error node"
            ]
        );
        assert_eq!(tally.unanswered, ["device 9"]);
        assert_eq!(tally.slowest, Some((ms(900), "device 1".to_string())));
        assert_eq!(
            tally.line(),
            "served 1, refused 2 (1 reason(s)), wrong 2, unanswered 1"
        );
    }
}
