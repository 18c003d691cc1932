//! A pmap over a fresh simulated Xen, peers with granted pages, and the invariant checks every test ends with.

use crate::addr::{Pfn, VirtAddr};
use crate::ids::{DomId, GrantRef};
use crate::pmap::{PageRange, Pmap, CHOSEN_REGION_START, MAX_KEPT_EMPTY_TABLES};
use crate::sim::{SimConfig, SimFrameAllocator, SimXen, SIM_DOMID};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

pub type SimPmap = Pmap<SimXen, SimFrameAllocator>;

/// A PV peer with pages to grant.
pub const PEER: DomId = DomId::new(7).unwrap();
/// A translated (HVM-like) peer.
pub const HVM_PEER: DomId = DomId::new(9).unwrap();

/// A pmap adopted from the simulation's initial tree, with the whole direct map in place.
pub fn pmap() -> SimPmap {
    let mut sim = SimXen::new(SimConfig::default());
    sim.add_domain(PEER, 600, false);
    sim.add_domain(HVM_PEER, 16, true);
    let frames = SimFrameAllocator::new(sim.first_free_frame(), sim.pages());
    let root = sim.root();
    let pages = sim.pages();
    let mut pmap = Pmap::adopt(sim, frames, root).expect("adopt");
    pmap.extend_direct_map(Pfn::new(0).unwrap(), pages)
        .expect("direct map");
    check(&pmap);
    pmap
}

/// Page `index` of the chosen-VA region.
pub fn va(index: u64) -> VirtAddr {
    VirtAddr::try_new(CHOSEN_REGION_START + index * 4096).unwrap()
}

/// `pages` pages from page `index` of the chosen-VA region.
pub fn range(index: u64, pages: u64) -> PageRange {
    PageRange::new(va(index), pages).unwrap()
}

/// Grants `count` of the peer's frames (from `first`) to us, each filled with its index.
pub fn grant_peer_pages(
    pmap: &mut SimPmap,
    first: usize,
    count: usize,
    readonly: bool,
) -> Vec<GrantRef> {
    let sim = pmap.hypervisor_mut();
    (first..first + count)
        .map(|index| {
            let frame = sim.domain(PEER).unwrap().frames[index];
            sim.write_frame(frame, 0, &(index as u64).to_le_bytes());
            sim.grant_access(PEER, frame, SIM_DOMID, readonly)
        })
        .collect()
}

/// Page-table pages once the empty ones kept for reuse are reclaimed: what a failed or undone
/// operation must bring back to its baseline.
pub fn tables_in_use(pmap: &mut SimPmap) -> u64 {
    pmap.reclaim_empty_tables();
    assert_eq!(pmap.kept_empty_tables(), 0);
    pmap.stats().page_table_pages
}

/// The invariants that hold after every operation, whatever it returned.
pub fn check(pmap: &SimPmap) {
    let sim = pmap.hypervisor();
    assert_eq!(sim.violations(), &[], "Xen rules broken");
    let ours: BTreeMap<Pfn, (u32, u32)> = pmap
        .wire_counts()
        .map(|(frame, level, wire)| (frame, (level, wire)))
        .collect();
    assert_eq!(
        ours,
        sim.recount_wire(),
        "wire counts differ from the tables"
    );
    assert_eq!(
        sim.page_table_frames().len(),
        ours.len(),
        "validated tables differ from the pmap's"
    );
    assert_eq!(
        sim.maptrack_in_use(),
        pmap.grant_list().page_count(),
        "handles leaked or lost"
    );
    assert_eq!(pmap.frames().bad_frees, 0);
    // Kept empty tables are empty, counted and bounded.
    let kept: Vec<(Pfn, u32)> = pmap.kept_table_frames().collect();
    assert!(
        kept.iter().all(|(_, wire)| *wire == 0),
        "a kept table is not empty"
    );
    assert_eq!(kept.len(), pmap.kept_empty_tables());
    assert!(kept.len() <= MAX_KEPT_EMPTY_TABLES);
    // No address and no handle appears twice in the grant list; every grant page's PTE is
    // a live grant PTE of the simulation.
    let mut handles = BTreeSet::new();
    let mut previous_end = 0;
    let mut regions: Vec<_> = pmap.grant_list().regions().collect();
    regions.sort_by_key(|region| region.start);
    for region in regions {
        assert!(region.start.as_u64() >= previous_end, "regions overlap");
        previous_end = region.end_raw();
        for page in region.pages.iter() {
            assert!(handles.insert(page.handle), "handle used twice");
        }
    }
}
