//! Whether the run loop may block, and until when: never while work is queued (ports fired, watch events or replies already read), else until the earliest deadline something waits for.
//!
//! A xenstore request made by the loop itself (publishing the counters, a session's writes)
//! reads whatever xenstored sent meanwhile, watch events included, and takes the store port's
//! wake-up with it; blocking after that would leave those events queued until some unrelated
//! timer fired (the 10-second stalls of issue 8). So the queues, not the ports, decide.

/// What the loop has in hand when it is about to wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuedWork {
    /// Ports fired that no one has taken yet.
    pub ports_ready: bool,
    /// Watch events already read from xenstore, not yet handed out.
    pub watch_events: usize,
    /// Replies already read that a caller will take.
    pub replies: usize,
    /// The last turn stopped before its work was done (a bounded round).
    pub unfinished: bool,
    /// Timers that expired while the turn ran (armed for a moment that has passed since):
    /// they are taken out of the deadlines, so only another turn at once does their work.
    pub timers_expired: usize,
}

impl QueuedWork {
    /// True when anything is waiting to be handled.
    pub fn any(&self) -> bool {
        self.ports_ready
            || self.watch_events > 0
            || self.replies > 0
            || self.unfinished
            || self.timers_expired > 0
    }
}

/// What the loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextWait {
    /// Work is queued: run another turn at once.
    RunAgain,
    /// Nothing is queued: block until an event, or the deadline (`None`: no timeout).
    Block { until: Option<u64> },
}

/// The loop's next step for `work`, with the deadlines something still waits for.
pub fn next_wait(work: &QueuedWork, deadlines: &[Option<u64>]) -> NextWait {
    if work.any() {
        return NextWait::RunAgain;
    }
    NextWait::Block {
        until: deadlines.iter().flatten().copied().min(),
    }
}

/// True when a wait that ended at its deadline with no port fired still found work: the
/// wake-up for that work was lost, and only the timer found it (worth a warning). A port that
/// fires while the turn looks (after its snapshot of fired ports, a block frontend's
/// notification under I/O) brings its own wake-up and is not counted: only what xenstore
/// already delivered into the queues, and work a turn left unfinished, can have lost theirs.
pub fn found_only_at_timer(port_fired: bool, deadline_reached: bool, work: &QueuedWork) -> bool {
    let lost = work.watch_events > 0 || work.replies > 0 || work.unfinished;
    !port_fired && deadline_reached && lost
}

#[cfg(test)]
mod stall_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_watch_events_or_replies_forbid_blocking() {
        let idle = QueuedWork::default();
        assert_eq!(
            next_wait(&idle, &[None, Some(30), Some(20)]),
            NextWait::Block { until: Some(20) }
        );
        assert_eq!(next_wait(&idle, &[None]), NextWait::Block { until: None });
        for work in [
            QueuedWork {
                watch_events: 1,
                ..idle
            },
            QueuedWork { replies: 1, ..idle },
            QueuedWork {
                timers_expired: 1,
                ..idle
            },
            QueuedWork {
                ports_ready: true,
                ..idle
            },
            QueuedWork {
                unfinished: true,
                ..idle
            },
        ] {
            assert_eq!(next_wait(&work, &[Some(10)]), NextWait::RunAgain);
        }
    }

    #[test]
    fn work_found_by_the_timer_alone_is_flagged() {
        let queued = QueuedWork {
            watch_events: 1,
            ..QueuedWork::default()
        };
        assert!(found_only_at_timer(false, true, &queued));
        assert!(!found_only_at_timer(true, true, &queued));
        assert!(!found_only_at_timer(false, false, &queued));
        assert!(!found_only_at_timer(false, true, &QueuedWork::default()));
        let port_fired_meanwhile = QueuedWork {
            ports_ready: true,
            ..QueuedWork::default()
        };
        assert!(
            !found_only_at_timer(false, true, &port_fired_meanwhile),
            "a port firing while the turn looks has its own wake-up"
        );
        for lost in [
            QueuedWork {
                replies: 1,
                ..QueuedWork::default()
            },
            QueuedWork {
                unfinished: true,
                ..QueuedWork::default()
            },
        ] {
            assert!(found_only_at_timer(false, true, &lost));
        }
    }
}
