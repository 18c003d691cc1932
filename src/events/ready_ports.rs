//! Ports marked ready by the event upcall and taken by the run loop: a lock-free bitmap, safe to mark from the upcall.
//!
//! The upcall may interrupt the run loop (in the window where `SCHEDOP_block` unmasks events),
//! so it takes no lock: it only sets bits here with atomic ORs. The run loop swaps each word
//! out in one atomic exchange, so a port marked during the swap is either in this snapshot or
//! the next, never lost.

use crate::abi::event_channel::EVTCHN_2L_NR_CHANNELS;
use crate::abi::shared_info::EVTCHN_WORDS;
use crate::ids::EvtchnPort;
use core::sync::atomic::{AtomicU64, Ordering};

/// The set of ports with an event not yet taken by the run loop.
pub struct ReadyPorts {
    words: [AtomicU64; EVTCHN_WORDS],
}

impl Default for ReadyPorts {
    fn default() -> Self {
        ReadyPorts::new()
    }
}

impl ReadyPorts {
    pub const fn new() -> ReadyPorts {
        ReadyPorts {
            words: [const { AtomicU64::new(0) }; EVTCHN_WORDS],
        }
    }

    /// Marks `port` ready; false for a port beyond the 2-level ABI (ignored).
    pub fn mark(&self, port: EvtchnPort) -> bool {
        if port.get() >= EVTCHN_2L_NR_CHANNELS {
            return false;
        }
        let (word, bit) = (port.get() as usize / 64, port.get() % 64);
        self.words
            .get(word)
            .map(|slot| slot.fetch_or(1 << bit, Ordering::AcqRel))
            .is_some()
    }

    /// Takes every ready port, leaving the set empty.
    pub fn take(&self) -> ReadySnapshot {
        let mut snapshot = ReadySnapshot::default();
        for (slot, word) in snapshot.words.iter_mut().zip(&self.words) {
            *slot = word.swap(0, Ordering::AcqRel);
        }
        snapshot
    }

    /// Takes `port` alone if it is ready, leaving the others for the run loop.
    pub fn take_port(&self, port: EvtchnPort) -> bool {
        let (word, bit) = (port.get() as usize / 64, port.get() % 64);
        self.words
            .get(word)
            .is_some_and(|slot| slot.fetch_and(!(1 << bit), Ordering::AcqRel) & (1 << bit) != 0)
    }

    /// True when some port is ready (without taking it).
    pub fn any(&self) -> bool {
        self.words
            .iter()
            .any(|word| word.load(Ordering::Acquire) != 0)
    }
}

/// Ports that were ready when taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadySnapshot {
    words: [u64; EVTCHN_WORDS],
}

impl Default for ReadySnapshot {
    fn default() -> Self {
        ReadySnapshot {
            words: [0; EVTCHN_WORDS],
        }
    }
}

impl ReadySnapshot {
    pub fn contains(&self, port: EvtchnPort) -> bool {
        let (word, bit) = (port.get() as usize / 64, port.get() % 64);
        self.words
            .get(word)
            .is_some_and(|value| value & (1 << bit) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&word| word == 0)
    }

    /// The ports, lowest first.
    pub fn ports(&self) -> impl Iterator<Item = EvtchnPort> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            (0..64u32)
                .filter(move |bit| word & (1 << bit) != 0)
                .filter_map(move |bit| EvtchnPort::new(index as u32 * 64 + bit))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn marked_ports_are_taken_once() {
        let ready = ReadyPorts::new();
        assert!(!ready.any());
        for port in [0, 63, 64, 4095] {
            assert!(ready.mark(EvtchnPort::new(port).unwrap()));
        }
        assert!(
            ready.mark(EvtchnPort::new(63).unwrap()),
            "marking twice is harmless"
        );
        assert!(ready.any());
        let snapshot = ready.take();
        assert_eq!(
            snapshot.ports().map(|port| port.get()).collect::<Vec<_>>(),
            [0, 63, 64, 4095]
        );
        assert!(snapshot.contains(EvtchnPort::new(64).unwrap()));
        assert!(!snapshot.contains(EvtchnPort::new(65).unwrap()));
        assert!(!ready.any());
        assert!(ready.take().is_empty());
    }

    #[test]
    fn one_port_can_be_taken_alone() {
        let ready = ReadyPorts::new();
        ready.mark(EvtchnPort::new(7).unwrap());
        ready.mark(EvtchnPort::new(9).unwrap());
        assert!(ready.take_port(EvtchnPort::new(7).unwrap()));
        assert!(!ready.take_port(EvtchnPort::new(7).unwrap()));
        assert!(!ready.take_port(EvtchnPort::new(5000).unwrap()));
        assert_eq!(
            ready
                .take()
                .ports()
                .map(|port| port.get())
                .collect::<Vec<_>>(),
            [9]
        );
    }

    #[test]
    fn ports_beyond_the_two_level_abi_are_refused() {
        let ready = ReadyPorts::new();
        assert!(!ready.mark(EvtchnPort::new(4096).unwrap()));
        let last = EvtchnPort::new(EvtchnPort::LIMIT - 1).unwrap();
        assert!(!ready.mark(last));
        assert!(!ready.any());
        assert!(!ready.take().contains(last));
    }
}
