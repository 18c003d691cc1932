//! Finding dead peers without privilege: every bounded period, the status of each session's bound event channel; a remote end that is no longer the peer's (unbound, closed, or its domain gone) ends the session as a death.
//!
//! xenstored sends `@releaseDomain` only to privileged domains and those the special node's
//! permissions admit (XSA-115), so an unprivileged driver domain cannot rely on it. Xen closes
//! every port of a dying domain (`evtchn_destroy` in `domain_kill`), which leaves our end of an
//! interdomain channel unbound; `EVTCHNOP_status` of our own port needs no privilege. A vchan
//! server that closes its event channel while `srv_live` stays 1 is found the same way.
//!
//! The check costs one hypercall per bound session per period, and nothing when no session is
//! bound (no deadline is armed).

use crate::ids::DomId;

/// How often bound sessions are checked.
pub const LIVENESS_PERIOD_NS: u64 = 500_000_000;

/// What `EVTCHNOP_status` says of our port, as far as liveness is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Interdomain, connected to `remote`.
    Interdomain { remote: DomId },
    /// Unbound (its remote end was closed), closed, or bound to something else.
    NotInterdomain,
    /// The status could not be read (logged; the session is left alone).
    Unknown,
}

/// True when a session with `peer` whose port is in `state` has lost its peer.
pub fn peer_lost(peer: DomId, state: PortState) -> bool {
    match state {
        PortState::Interdomain { remote } => remote != peer,
        PortState::NotInterdomain => true,
        PortState::Unknown => false,
    }
}

/// When the next check is due: none while no session is bound, else one period after the
/// last check (or now, for the first).
#[derive(Clone, Copy, Debug, Default)]
pub struct LivenessSchedule {
    next_ns: Option<u64>,
}

impl LivenessSchedule {
    /// The deadline the run loop must wake for, if any.
    pub fn deadline(&self) -> Option<u64> {
        self.next_ns
    }

    /// True when a check is due at `now_ns`; re-arms for the next period (or disarms when
    /// `bound_sessions` is 0).
    pub fn due(&mut self, now_ns: u64, bound_sessions: usize) -> bool {
        if bound_sessions == 0 {
            self.next_ns = None;
            return false;
        }
        match self.next_ns {
            Some(at) if now_ns < at => false,
            Some(_) => {
                self.next_ns = Some(now_ns.saturating_add(LIVENESS_PERIOD_NS));
                true
            }
            None => {
                // The first bound session: check one period from now (it was just bound).
                self.next_ns = Some(now_ns.saturating_add(LIVENESS_PERIOD_NS));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_no_longer_connected_to_the_peer_means_the_peer_is_lost() {
        let peer = DomId::new(5).unwrap();
        assert!(!peer_lost(peer, PortState::Interdomain { remote: peer }));
        assert!(peer_lost(
            peer,
            PortState::Interdomain {
                remote: DomId::new(6).unwrap()
            }
        ));
        assert!(peer_lost(peer, PortState::NotInterdomain));
        assert!(!peer_lost(peer, PortState::Unknown));
    }

    #[test]
    fn checks_run_once_per_period_and_not_at_all_while_idle() {
        let mut schedule = LivenessSchedule::default();
        assert!(!schedule.due(0, 0));
        assert_eq!(schedule.deadline(), None, "idle: no wake-up armed");
        assert!(
            !schedule.due(10, 1),
            "the first bound session arms the period"
        );
        assert_eq!(schedule.deadline(), Some(10 + LIVENESS_PERIOD_NS));
        assert!(!schedule.due(LIVENESS_PERIOD_NS, 1));
        assert!(schedule.due(10 + LIVENESS_PERIOD_NS, 1));
        assert_eq!(schedule.deadline(), Some(10 + 2 * LIVENESS_PERIOD_NS));
        assert!(!schedule.due(10 + 2 * LIVENESS_PERIOD_NS, 0));
        assert_eq!(
            schedule.deadline(),
            None,
            "disarmed when the last session goes"
        );
    }
}
