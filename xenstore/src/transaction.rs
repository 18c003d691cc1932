//! Transactions retried on `EAGAIN`: a closure runner for blocking callers and a budget for event loops.
//!
//! xenstored answers `XS_TRANSACTION_END` with `EAGAIN` when another change conflicted with the
//! transaction; the client must then run the whole transaction again (start, operations, end)
//! with a fresh id. Any other error ends the attempt for good.

use crate::error::XsError;
use crate::reply::ReplyError;

/// Errors that may mean "conflict, run the transaction again".
pub trait TryAgain {
    fn is_try_again(&self) -> bool;
}

impl TryAgain for XsError {
    fn is_try_again(&self) -> bool {
        *self == XsError::TryAgain
    }
}

impl TryAgain for ReplyError {
    fn is_try_again(&self) -> bool {
        ReplyError::is_try_again(self)
    }
}

/// How many more times a transaction may run. For callers driven by events, which cannot
/// block in a closure: count each attempt and ask on each failure whether to go again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    attempts_made: u32,
    max_attempts: u32,
}

impl RetryBudget {
    /// A budget of `max_attempts` runs in all (at least one).
    pub fn new(max_attempts: u32) -> RetryBudget {
        RetryBudget {
            attempts_made: 0,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Records the start of an attempt; false when the budget is spent.
    pub fn begin_attempt(&mut self) -> bool {
        if self.attempts_made >= self.max_attempts {
            return false;
        }
        self.attempts_made += 1;
        true
    }

    /// Attempts started so far.
    pub fn attempts_made(&self) -> u32 {
        self.attempts_made
    }

    /// True when `error` asks for a retry and an attempt is left.
    pub fn should_retry<E: TryAgain>(&self, error: &E) -> bool {
        error.is_try_again() && self.attempts_made < self.max_attempts
    }
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails with an error
/// other than `EAGAIN`, or has run `max_attempts` times (at least once); returns the last result.
/// `attempt` must run the whole transaction: start, operations, end.
pub fn retry_transaction<T, E: TryAgain>(
    max_attempts: u32,
    mut attempt: impl FnMut(u32) -> Result<T, E>,
) -> Result<T, E> {
    let mut budget = RetryBudget::new(max_attempts);
    loop {
        // The budget always allows the first attempt.
        budget.begin_attempt();
        match attempt(budget.attempts_made()) {
            Err(error) if budget.should_retry(&error) => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eagain_is_retried_until_success() {
        let mut calls = 0;
        let result = retry_transaction(5, |attempt| {
            calls += 1;
            assert_eq!(attempt, calls);
            if attempt < 3 {
                Err(XsError::TryAgain)
            } else {
                Ok(attempt * 10)
            }
        });
        assert_eq!(result, Ok(30));
        assert_eq!(calls, 3);
    }

    #[test]
    fn retries_stop_at_the_limit_with_the_last_error() {
        let mut calls = 0;
        let result: Result<(), XsError> = retry_transaction(4, |_| {
            calls += 1;
            Err(XsError::TryAgain)
        });
        assert_eq!(result, Err(XsError::TryAgain));
        assert_eq!(calls, 4);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let result: Result<(), ReplyError> = retry_transaction(4, |_| {
            calls += 1;
            Err(ReplyError::Xenstore(XsError::AccessDenied))
        });
        assert_eq!(result, Err(ReplyError::Xenstore(XsError::AccessDenied)));
        assert_eq!(calls, 1);
    }

    #[test]
    fn zero_attempts_still_runs_once() {
        let mut calls = 0;
        let _: Result<(), XsError> = retry_transaction(0, |_| {
            calls += 1;
            Err(XsError::TryAgain)
        });
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_budget_tracks_an_event_driven_transaction() {
        let mut budget = RetryBudget::new(2);
        assert!(budget.begin_attempt());
        assert!(budget.should_retry(&XsError::TryAgain));
        assert!(!budget.should_retry(&XsError::NotFound));
        assert!(budget.begin_attempt());
        assert!(!budget.should_retry(&XsError::TryAgain));
        assert!(!budget.begin_attempt());
        assert_eq!(budget.attempts_made(), 2);
    }
}
