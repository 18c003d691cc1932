//! The one set of counters grantsvc keeps and publishes as xenstore nodes under its home (sessions, grants, faults, heap), and when to rewrite them (changed, at most once per interval).
//!
//! The same figures answer the vchan command service's `stats`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Where grantsvc's published nodes live, relative to its home.
pub const PUBLISHED_DIRECTORY: &str = "data/grantsvc";

/// The service's life cycle as published in `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    Running,
    /// A shutdown was requested: sessions are being closed.
    Stopping,
    /// Everything is unmapped; the domain is about to go.
    Stopped,
}

impl ServiceState {
    pub fn name(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
        }
    }
}

/// What grantsvc publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceCounters {
    pub state: ServiceState,
    /// Live peer sessions.
    pub peers: u64,
    /// Grant regions mapped now.
    pub mapped_regions: u64,
    /// Grant pages mapped now.
    pub mapped_pages: u64,
    /// Grant pages mapped since boot.
    pub maps: u64,
    /// Grant pages unmapped since boot.
    pub unmaps: u64,
    /// Peer sessions ended for a fault of the peer's.
    pub faults: u64,
    /// Heap bytes in use now.
    pub heap_in_use: u64,
    /// Most heap bytes ever in use at once.
    pub heap_peak: u64,
    /// Turns of the service loop since boot: `stats` answers it, to show that an idle service
    /// does not spin; never published, since a published figure that changes on every turn
    /// would make each publication the cause of the next.
    pub loop_turns: u64,
}

impl ServiceCounters {
    pub const fn new() -> ServiceCounters {
        ServiceCounters {
            state: ServiceState::Running,
            peers: 0,
            mapped_regions: 0,
            mapped_pages: 0,
            maps: 0,
            unmaps: 0,
            faults: 0,
            heap_in_use: 0,
            heap_peak: 0,
            loop_turns: 0,
        }
    }

    /// The counters with the unpublished ones cleared: what a publication compares.
    fn published_part(&self) -> ServiceCounters {
        ServiceCounters {
            loop_turns: 0,
            ..*self
        }
    }

    /// (path relative to the home, value) of every published node.
    pub fn nodes(&self) -> Vec<(String, String)> {
        let numbers = [
            ("peers", self.peers),
            ("mapped-regions", self.mapped_regions),
            ("mapped-pages", self.mapped_pages),
            ("maps", self.maps),
            ("unmaps", self.unmaps),
            ("faults", self.faults),
            ("heap-in-use", self.heap_in_use),
            ("heap-peak", self.heap_peak),
        ];
        let mut nodes = Vec::with_capacity(numbers.len() + 1);
        nodes.push((
            format!("{PUBLISHED_DIRECTORY}/state"),
            String::from(self.state.name()),
        ));
        for (name, value) in numbers {
            nodes.push((format!("{PUBLISHED_DIRECTORY}/{name}"), format!("{value}")));
        }
        nodes
    }
}

impl Default for ServiceCounters {
    fn default() -> Self {
        ServiceCounters::new()
    }
}

/// Decides when to publish: only what changed, at most once per `interval_ns`, except that a
/// state change is published at once (the toolstack and tests wait for it).
#[derive(Clone, Debug)]
pub struct CounterPublisher {
    interval_ns: u64,
    published: Option<ServiceCounters>,
    last_publish_ns: Option<u64>,
}

impl CounterPublisher {
    pub fn new(interval_ns: u64) -> CounterPublisher {
        CounterPublisher {
            interval_ns,
            published: None,
            last_publish_ns: None,
        }
    }

    /// The nodes to write now for `current` (empty: nothing to do yet), or, when held back by
    /// the rate limit, the time at which to ask again.
    pub fn due(
        &self,
        current: &ServiceCounters,
        now_ns: u64,
    ) -> Result<Vec<(String, String)>, u64> {
        let Some(published) = self.published else {
            return Ok(current.nodes());
        };
        if published.published_part() == current.published_part() {
            return Ok(Vec::new());
        }
        let next_allowed = self
            .last_publish_ns
            .map_or(0, |last| last.saturating_add(self.interval_ns));
        if published.state == current.state && now_ns < next_allowed {
            return Err(next_allowed);
        }
        let old = published.nodes();
        Ok(current
            .nodes()
            .into_iter()
            .zip(old)
            .filter(|(new, old)| new != old)
            .map(|(new, _)| new)
            .collect())
    }

    /// Records that `counters` were written at `now_ns`.
    pub fn published(&mut self, counters: ServiceCounters, now_ns: u64) {
        self.published = Some(counters);
        self.last_publish_ns = Some(now_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn nodes_name_every_counter_under_the_published_directory() {
        let counters = ServiceCounters {
            mapped_pages: 3,
            maps: 5,
            ..ServiceCounters::new()
        };
        let nodes = counters.nodes();
        assert_eq!(nodes.len(), 9);
        assert!(nodes.contains(&("data/grantsvc/state".into(), "running".into())));
        assert!(nodes.contains(&("data/grantsvc/mapped-pages".into(), "3".into())));
        assert!(nodes.contains(&("data/grantsvc/maps".into(), "5".into())));
        assert!(nodes.contains(&("data/grantsvc/faults".into(), "0".into())));
        assert!(nodes.contains(&("data/grantsvc/heap-peak".into(), "0".into())));
    }

    #[test]
    fn first_publish_writes_everything_then_only_changes_at_most_once_per_interval() {
        let mut publisher = CounterPublisher::new(SECOND);
        let mut counters = ServiceCounters::new();
        let all = publisher.due(&counters, 0).unwrap();
        assert_eq!(all.len(), 9);
        publisher.published(counters, 0);
        assert_eq!(publisher.due(&counters, 10).unwrap(), Vec::new());

        counters.maps = 1;
        counters.mapped_pages = 1;
        assert_eq!(
            publisher.due(&counters, SECOND / 2),
            Err(SECOND),
            "rate-limited"
        );
        let changed = publisher.due(&counters, SECOND).unwrap();
        assert_eq!(
            changed,
            [
                ("data/grantsvc/mapped-pages".into(), "1".into()),
                ("data/grantsvc/maps".into(), "1".into())
            ]
        );
        publisher.published(counters, SECOND);
    }

    #[test]
    fn a_state_change_is_not_held_back() {
        let mut publisher = CounterPublisher::new(SECOND);
        let mut counters = ServiceCounters::new();
        publisher.published(counters, 100);
        counters.state = ServiceState::Stopping;
        counters.peers = 0;
        assert_eq!(
            publisher.due(&counters, 101).unwrap(),
            [("data/grantsvc/state".into(), "stopping".into())]
        );
    }

    #[test]
    fn loop_turns_alone_publish_nothing() {
        let mut publisher = CounterPublisher::new(SECOND);
        let mut counters = ServiceCounters::new();
        publisher.published(counters, 0);
        counters.loop_turns = 1000;
        assert_eq!(publisher.due(&counters, 5 * SECOND).unwrap(), Vec::new());
        assert!(!counters
            .nodes()
            .iter()
            .any(|(path, _)| path.contains("turns")));
    }
}
