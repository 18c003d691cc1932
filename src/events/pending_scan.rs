//! The 2-level event scan of an upcall: selector word, then pending words, clearing what it delivers and leaving masked ports pending.
//!
//! Xen sets a port's pending bit, then (unless the port is masked) its word's bit in the vcpu's
//! `evtchn_pending_sel`, then `evtchn_upcall_pending`. The scan undoes that in reverse: clear
//! `upcall_pending` first, take the selector, then for each selected word take the pending and
//! unmasked bits, clearing exactly those. It loops until `upcall_pending` stays clear, so an
//! event that arrives during the scan is seen before the caller unmasks upcalls (the re-check
//! Mini-OS's `do_hypervisor_callback` does). A masked port keeps its pending bit: Xen re-raises
//! it when `EVTCHNOP_unmask` unmasks the port.

use crate::abi::shared_info::EVTCHN_WORDS;
use crate::ids::EvtchnPort;

/// The shared-info words the scan touches, each access atomic. The kernel implements it over
/// vcpu 0's vcpu_info and the shared-info bitmaps; tests over plain cells.
pub trait PendingBitmaps {
    /// Clears `evtchn_upcall_pending`, returning whether it was set.
    fn take_upcall_pending(&self) -> bool;
    /// Atomically exchanges `evtchn_pending_sel` with 0.
    fn take_selector(&self) -> u64;
    /// `evtchn_pending[word]`.
    fn pending(&self, word: usize) -> u64;
    /// `evtchn_mask[word]`.
    fn mask(&self, word: usize) -> u64;
    /// Atomically clears `bits` in `evtchn_pending[word]`, returning the word's old value.
    fn clear_pending(&self, word: usize, bits: u64) -> u64;
}

/// What one scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Ports delivered to the sink.
    pub delivered: u32,
    /// Passes made (each one started with `upcall_pending` set).
    pub passes: u32,
}

/// Passes after which a scan gives up for now: a peer that keeps notifying cannot hold the
/// vcpu in the upcall forever; what is still pending stays pending for the next upcall.
pub const MAX_PASSES: u32 = 64;

/// Scans for pending, unmasked ports and hands each to `deliver` once per pass, clearing its
/// pending bit first. Runs while `upcall_pending` is found set (at most [`MAX_PASSES`]).
pub fn scan_pending(
    bitmaps: &impl PendingBitmaps,
    mut deliver: impl FnMut(EvtchnPort),
) -> ScanSummary {
    let mut summary = ScanSummary::default();
    while summary.passes < MAX_PASSES && bitmaps.take_upcall_pending() {
        summary.passes += 1;
        let mut selector = bitmaps.take_selector();
        while selector != 0 {
            let word = selector.trailing_zeros() as usize;
            selector &= selector - 1;
            if word >= EVTCHN_WORDS {
                continue;
            }
            let ready = bitmaps.pending(word) & !bitmaps.mask(word);
            if ready == 0 {
                continue;
            }
            // Only the bits that were still set when cleared are ours to deliver: another
            // scanner (none today, one vcpu) or a port closed meanwhile may have taken some.
            let mut taken = bitmaps.clear_pending(word, ready) & ready;
            while taken != 0 {
                let bit = taken.trailing_zeros();
                taken &= taken - 1;
                // Always a port: the 2-level bitmaps are far below the FIFO ABI's limit.
                if let Some(port) = EvtchnPort::new(word as u32 * 64 + bit) {
                    summary.delivered += 1;
                    deliver(port);
                }
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    use std::vec::Vec;

    /// Shared-info bitmaps in cells, with a hook that raises events during the scan.
    struct FakeBitmaps {
        upcall_pending: Cell<bool>,
        selector: Cell<u64>,
        pending: RefCell<[u64; EVTCHN_WORDS]>,
        mask: [u64; EVTCHN_WORDS],
        /// Ports to raise (as Xen would) the first time a pending word is read.
        raise_during_scan: RefCell<Vec<u32>>,
    }

    impl FakeBitmaps {
        fn new() -> FakeBitmaps {
            FakeBitmaps {
                upcall_pending: Cell::new(false),
                selector: Cell::new(0),
                pending: RefCell::new([0; EVTCHN_WORDS]),
                mask: [0; EVTCHN_WORDS],
                raise_during_scan: RefCell::new(Vec::new()),
            }
        }

        /// What Xen does when it sets a port pending.
        fn raise(&self, port: u32) {
            let (word, bit) = (port as usize / 64, port % 64);
            self.pending.borrow_mut()[word] |= 1 << bit;
            if self.mask[word] & (1 << bit) == 0 {
                self.selector.set(self.selector.get() | 1 << word);
                self.upcall_pending.set(true);
            }
        }

        fn is_pending(&self, port: u32) -> bool {
            self.pending.borrow()[port as usize / 64] & (1 << (port % 64)) != 0
        }
    }

    impl PendingBitmaps for FakeBitmaps {
        fn take_upcall_pending(&self) -> bool {
            self.upcall_pending.replace(false)
        }
        fn take_selector(&self) -> u64 {
            self.selector.replace(0)
        }
        fn pending(&self, word: usize) -> u64 {
            let raised: Vec<u32> = self.raise_during_scan.borrow_mut().drain(..).collect();
            for port in raised {
                self.raise(port);
            }
            self.pending.borrow()[word]
        }
        fn mask(&self, word: usize) -> u64 {
            self.mask[word]
        }
        fn clear_pending(&self, word: usize, bits: u64) -> u64 {
            let mut pending = self.pending.borrow_mut();
            let old = pending[word];
            pending[word] = old & !bits;
            old
        }
    }

    fn scan(bitmaps: &FakeBitmaps) -> (Vec<u32>, ScanSummary) {
        let mut ports = Vec::new();
        let summary = scan_pending(bitmaps, |port| ports.push(port.get()));
        (ports, summary)
    }

    #[test]
    fn nothing_happens_without_upcall_pending() {
        let bitmaps = FakeBitmaps::new();
        bitmaps.pending.borrow_mut()[0] = 0b10;
        let (ports, summary) = scan(&bitmaps);
        assert!(ports.is_empty());
        assert_eq!(summary.passes, 0);
        assert!(bitmaps.is_pending(1), "not selected, so left alone");
    }

    #[test]
    fn pending_ports_in_several_words_are_delivered_once_and_cleared() {
        let bitmaps = FakeBitmaps::new();
        for port in [3, 64, 130, 4095] {
            bitmaps.raise(port);
        }
        let (ports, summary) = scan(&bitmaps);
        assert_eq!(ports, [3, 64, 130, 4095]);
        assert_eq!(summary.delivered, 4);
        assert_eq!(bitmaps.selector.get(), 0);
        assert!([3, 64, 130, 4095]
            .iter()
            .all(|&port| !bitmaps.is_pending(port)));
        assert_eq!(scan(&bitmaps).0, Vec::<u32>::new(), "nothing twice");
    }

    #[test]
    fn masked_ports_stay_pending_and_undelivered() {
        let mut bitmaps = FakeBitmaps::new();
        bitmaps.mask[0] = 1 << 5;
        bitmaps.raise(5);
        bitmaps.raise(6);
        // A masked port that became pending in a word selected for another port.
        bitmaps.pending.borrow_mut()[0] |= 1 << 5;
        let (ports, _) = scan(&bitmaps);
        assert_eq!(ports, [6]);
        assert!(bitmaps.is_pending(5), "masked port keeps its pending bit");
    }

    #[test]
    fn events_raised_during_the_scan_are_caught_by_the_recheck() {
        let bitmaps = FakeBitmaps::new();
        bitmaps.raise(1);
        bitmaps.raise_during_scan.borrow_mut().extend([200, 2]);
        let (ports, summary) = scan(&bitmaps);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 200]);
        assert_eq!(
            summary.passes, 2,
            "the second pass saw upcall_pending set again"
        );
        assert!(!bitmaps.upcall_pending.get());
    }

    #[test]
    fn a_flood_ends_after_max_passes() {
        struct Flood;
        impl PendingBitmaps for Flood {
            fn take_upcall_pending(&self) -> bool {
                true
            }
            fn take_selector(&self) -> u64 {
                1
            }
            fn pending(&self, _: usize) -> u64 {
                1
            }
            fn mask(&self, _: usize) -> u64 {
                0
            }
            fn clear_pending(&self, _: usize, _: u64) -> u64 {
                1
            }
        }
        let mut count = 0;
        let summary = scan_pending(&Flood, |_| count += 1);
        assert_eq!(summary.passes, MAX_PASSES);
        assert_eq!(count, MAX_PASSES);
    }
}
