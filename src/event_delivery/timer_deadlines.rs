//! Named timer deadlines for the run loop: arm, cancel, the earliest one for `set_timer_op`, and those that expired.

use alloc::vec::Vec;
use litemap::LiteMap;

/// Deadlines in Xen system time (nanoseconds), one per timer key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerDeadlines<Key: Ord + Copy> {
    deadlines: LiteMap<Key, u64>,
}

impl<Key: Ord + Copy> TimerDeadlines<Key> {
    pub fn new() -> TimerDeadlines<Key> {
        TimerDeadlines {
            deadlines: LiteMap::new(),
        }
    }

    /// Sets (or moves) `key`'s deadline.
    pub fn arm(&mut self, key: Key, deadline_ns: u64) {
        self.deadlines.insert(key, deadline_ns);
    }

    pub fn cancel(&mut self, key: Key) {
        self.deadlines.remove(&key);
    }

    /// The earliest deadline, for the one-shot hardware timer.
    pub fn earliest(&self) -> Option<u64> {
        self.deadlines.values().copied().min()
    }

    /// Removes and returns the keys whose deadline is at or before `now_ns`, earliest first.
    pub fn take_expired(&mut self, now_ns: u64) -> Vec<Key> {
        // Each put in deadline order as it is found (ties in key order): a handful of timers,
        // and the library's stable sort was 2.9 KB of code for this one type (issue 10).
        let mut expired: Vec<(u64, Key)> = Vec::new();
        for (&key, &deadline) in self.deadlines.iter() {
            if deadline <= now_ns {
                let at = expired.partition_point(|&(earlier, _)| earlier <= deadline);
                expired.insert(at, (deadline, key));
            }
        }
        for (_, key) in &expired {
            self.deadlines.remove(key);
        }
        expired.into_iter().map(|(_, key)| key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_timers_come_out_earliest_first_and_once() {
        let mut timers = TimerDeadlines::new();
        timers.arm('a', 300);
        timers.arm('b', 100);
        timers.arm('c', 900);
        assert_eq!(timers.earliest(), Some(100));
        assert_eq!(timers.take_expired(50), Vec::<char>::new());
        assert_eq!(timers.take_expired(300), ['b', 'a']);
        assert_eq!(timers.take_expired(300), Vec::<char>::new());
        assert_eq!(timers.earliest(), Some(900));
    }

    #[test]
    fn rearming_moves_and_cancel_removes() {
        let mut timers = TimerDeadlines::new();
        timers.arm(1, 500);
        timers.arm(1, 700);
        assert_eq!(timers.earliest(), Some(700));
        timers.cancel(1);
        assert_eq!(timers.earliest(), None);
    }
}
