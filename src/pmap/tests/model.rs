//! Property test: random enter / enter_gnt / protect / remove sequences against a simple model, invariants checked after every step.

use super::fixture::{check, pmap, SimPmap, PEER};
use crate::abi::mmu::pte;
use crate::addr::{Pfn, VirtAddr};
use crate::ids::GrantRef;
use crate::pmap::{
    GrantMapError, Mapping, PageRange, Prot, ProtectError, RemoveError, CHOSEN_REGION_START,
    MAX_EAGAIN_RETRIES,
};
use crate::sim::SIM_DOMID;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use proptest::prelude::*;

/// The window straddles an L1 boundary so tables are made and freed on both sides.
const WINDOW_PAGES: u64 = 48;
const WINDOW_START: u64 = CHOSEN_REGION_START + (512 - 24) * 4096;

#[derive(Clone, Debug)]
enum Step {
    Enter {
        page: u64,
        frame: u64,
        write: bool,
    },
    EnterGnt {
        page: u64,
        pages: u64,
        bad_at: Option<u64>,
        eagain: u32,
        readonly: bool,
    },
    Protect {
        page: u64,
        pages: u64,
        write: bool,
    },
    Remove {
        page: u64,
        pages: u64,
    },
    FailNextUnmap {
        pick: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Ordinary { frame: u64, write: bool },
    Grant { grant_ref: GrantRef, readonly: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..WINDOW_PAGES, 1..30u64, any::<bool>()).prop_map(|(page, frame, write)| Step::Enter {
            page,
            frame,
            write
        }),
        (
            0..WINDOW_PAGES,
            1..9u64,
            prop::option::weighted(0.2, 0..9u64),
            prop_oneof![4 => Just(0u32), 1 => 1..3u32, 1 => Just(MAX_EAGAIN_RETRIES + 1)],
            any::<bool>()
        )
            .prop_map(|(page, pages, bad_at, eagain, readonly)| Step::EnterGnt {
                page,
                pages,
                bad_at,
                eagain,
                readonly
            }),
        (0..WINDOW_PAGES, 1..12u64, any::<bool>()).prop_map(|(page, pages, write)| Step::Protect {
            page,
            pages,
            write
        }),
        (0..WINDOW_PAGES, 1..20u64).prop_map(|(page, pages)| Step::Remove { page, pages }),
        any::<usize>().prop_map(|pick| Step::FailNextUnmap { pick }),
    ]
}

fn address(page: u64) -> VirtAddr {
    VirtAddr::try_new(WINDOW_START + page * 4096).unwrap()
}

fn window_range(page: u64, pages: u64) -> PageRange {
    PageRange::new(address(page), pages.min(WINDOW_PAGES - page)).unwrap()
}

struct Harness {
    pmap: SimPmap,
    model: BTreeMap<u64, Page>,
    failing_unmaps: BTreeSet<GrantRef>,
    next_peer_frame: usize,
}

impl Harness {
    fn run(&mut self, step: &Step) {
        match *step {
            Step::Enter { page, frame, write } => {
                let prot = if write {
                    Prot::READ_WRITE
                } else {
                    Prot::READ_ONLY
                };
                let result = self
                    .pmap
                    .enter(address(page), Pfn::new(frame).unwrap(), prot);
                match self.model.get(&page) {
                    Some(Page::Grant { .. }) => assert!(result.is_err()),
                    _ => {
                        result.unwrap();
                        self.model.insert(page, Page::Ordinary { frame, write });
                    }
                }
            }
            Step::EnterGnt {
                page,
                pages,
                bad_at,
                eagain,
                readonly,
            } => {
                let pages = pages.min(WINDOW_PAGES - page);
                let mut refs = Vec::new();
                for index in 0..pages {
                    let sim = self.pmap.hypervisor_mut();
                    let grant_ref = if bad_at == Some(index) {
                        sim.add_invalid_grant(PEER)
                    } else {
                        let frame = sim.domain(PEER).unwrap().frames[self.next_peer_frame % 256];
                        self.next_peer_frame += 1;
                        sim.grant_access(PEER, frame, SIM_DOMID, readonly)
                    };
                    refs.push(grant_ref);
                }
                if eagain > 0 {
                    self.pmap
                        .hypervisor_mut()
                        .inject_eagain(PEER, refs[0], eagain);
                }
                let result = self.pmap.enter_gnt(address(page), PEER, &refs, readonly);
                let occupied = (page..page + pages).any(|p| self.model.contains_key(&p));
                let bad = bad_at.filter(|&at| at < pages);
                match result {
                    Ok(_) => {
                        assert!(!occupied && bad.is_none() && eagain <= MAX_EAGAIN_RETRIES);
                        for (index, grant_ref) in refs.iter().enumerate() {
                            self.model.insert(
                                page + index as u64,
                                Page::Grant {
                                    grant_ref: *grant_ref,
                                    readonly,
                                },
                            );
                        }
                    }
                    Err(GrantMapError::OverlapsRegion { .. } | GrantMapError::AlreadyMapped(_)) => {
                        assert!(occupied)
                    }
                    Err(GrantMapError::Grant {
                        grant_ref,
                        left_mapped: 0,
                        ..
                    }) => {
                        assert!(!occupied);
                        assert!(bad.is_some() || eagain > MAX_EAGAIN_RETRIES);
                        let eagain_wins =
                            eagain > MAX_EAGAIN_RETRIES && bad.is_none_or(|at| at == 0);
                        let named = if eagain_wins { 0 } else { bad.unwrap_or(0) };
                        assert_eq!(grant_ref, refs[named as usize]);
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            Step::Protect { page, pages, write } => {
                let range = window_range(page, pages);
                let prot = if write {
                    Prot::READ_WRITE
                } else {
                    Prot::READ_ONLY
                };
                let result = self.pmap.protect(range, prot);
                let pages_in = page..page + range.pages();
                let has_grant = pages_in
                    .clone()
                    .any(|p| matches!(self.model.get(&p), Some(Page::Grant { .. })));
                if has_grant {
                    assert!(matches!(result, Err(ProtectError::GrantPagesInRange(_))));
                } else {
                    result.unwrap();
                    for p in pages_in {
                        if let Some(Page::Ordinary { write: w, .. }) = self.model.get_mut(&p) {
                            *w = write;
                        }
                    }
                }
            }
            Step::Remove { page, pages } => {
                let range = window_range(page, pages);
                let result = self.pmap.remove(range);
                let mut expected_failures = Vec::new();
                for p in page..page + range.pages() {
                    match self.model.get(&p) {
                        Some(Page::Grant { grant_ref, .. })
                            if self.failing_unmaps.remove(grant_ref) =>
                        {
                            expected_failures.push(address(p));
                        }
                        _ => {
                            self.model.remove(&p);
                        }
                    }
                }
                match result {
                    Ok(_) => assert!(expected_failures.is_empty()),
                    Err(RemoveError::Incomplete { failures, .. }) => {
                        let got: Vec<VirtAddr> = failures.iter().map(|f| f.address).collect();
                        assert_eq!(got, expected_failures);
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            Step::FailNextUnmap { pick } => {
                let grants: Vec<GrantRef> = self
                    .model
                    .values()
                    .filter_map(|page| match page {
                        Page::Grant { grant_ref, .. } => Some(*grant_ref),
                        Page::Ordinary { .. } => None,
                    })
                    .filter(|grant_ref| !self.failing_unmaps.contains(grant_ref))
                    .collect();
                if !grants.is_empty() {
                    let grant_ref = grants[pick % grants.len()];
                    self.pmap
                        .hypervisor_mut()
                        .inject_unmap_failure(PEER, grant_ref, 1);
                    self.failing_unmaps.insert(grant_ref);
                }
            }
        }
    }

    /// The page tables, the pmap's extract and the model say the same thing.
    fn agree(&self) {
        let sim = self.pmap.hypervisor();
        let mapped = sim.mapped_in(window_range(0, WINDOW_PAGES));
        let mapped_pages: BTreeSet<u64> = mapped
            .keys()
            .map(|va| (va.as_u64() - WINDOW_START) / 4096)
            .collect();
        let model_pages: BTreeSet<u64> = self.model.keys().copied().collect();
        assert_eq!(mapped_pages, model_pages);
        for (&page, expected) in &self.model {
            let entry = mapped[&address(page)];
            let mfn = crate::addr::Mfn::of_page_table_entry(entry);
            match *expected {
                Page::Ordinary { frame, write } => {
                    assert_eq!(Some(mfn), sim.machine_frame(Pfn::new(frame).unwrap()));
                    assert_eq!(entry & pte::WRITABLE != 0, write);
                    let prot = if write {
                        Prot::READ_WRITE
                    } else {
                        Prot::READ_ONLY
                    };
                    assert_eq!(
                        self.pmap.extract(address(page)),
                        Some(Mapping::Ordinary {
                            frame: Pfn::new(frame).unwrap(),
                            prot
                        })
                    );
                }
                Page::Grant {
                    grant_ref,
                    readonly,
                } => {
                    assert_eq!(entry & pte::WRITABLE == 0, readonly);
                    assert_eq!(sim.active_mappings(PEER, grant_ref), 1);
                    assert!(matches!(
                        self.pmap.extract(address(page)),
                        Some(Mapping::Grant { grant_ref: r, readonly: ro, .. }) if r == grant_ref && ro == readonly
                    ));
                }
            }
        }
        check(&self.pmap);
    }
}

// Under Miri (`make miri`) every case runs thousands of times slower: there the property runs
// on fewer and shorter cases, with the same assertions.
const SEQUENCE_CASES: u32 = if cfg!(miri) { 3 } else { 48 };
const SEQUENCE_LENGTH: usize = if cfg!(miri) { 10 } else { 40 };

proptest! {
    #![proptest_config(ProptestConfig { cases: SEQUENCE_CASES, ..ProptestConfig::default() })]
    #[test]
    fn random_operation_sequences_keep_the_model_and_the_tables_in_agreement(
        steps in prop::collection::vec(step(), 1..SEQUENCE_LENGTH)
    ) {
        let pmap = pmap();
        let baseline_tables = pmap.stats().page_table_pages;
        let baseline_frames = pmap.frames().allocated();
        let mut harness = Harness { pmap, model: BTreeMap::new(), failing_unmaps: BTreeSet::new(), next_peer_frame: 0 };
        for step in &steps {
            harness.run(step);
            harness.agree();
        }
        // Clearing everything (twice: injected unmap failures are one-shot) returns to baseline.
        let _ = harness.pmap.remove(window_range(0, WINDOW_PAGES));
        harness.failing_unmaps.clear();
        harness.pmap.remove(window_range(0, WINDOW_PAGES)).unwrap();
        harness.model.clear();
        harness.agree();
        // The emptied tables of the window stayed for reuse; reclaiming gives them back.
        harness.pmap.reclaim_empty_tables();
        prop_assert_eq!(harness.pmap.kept_empty_tables(), 0);
        harness.agree();
        prop_assert_eq!(harness.pmap.stats().page_table_pages, baseline_tables);
        prop_assert_eq!(harness.pmap.frames().allocated(), baseline_frames);
        prop_assert_eq!(harness.pmap.hypervisor().maptrack_in_use(), 0);
    }
}
