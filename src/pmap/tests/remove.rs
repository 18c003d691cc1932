//! remove on the simulated Xen: mixed ranges page by page, partial region removal, unmap failures kept accounted.

use super::fixture::{check, grant_peer_pages, pmap, range, va, PEER};
use crate::abi::grant_table::GrantStatus;
use crate::addr::Pfn;
use crate::pmap::{Mapping, Prot, RemoveError, UnmapCause};

#[test]
fn a_mixed_range_is_removed_in_one_call_without_touching_grant_ptes() {
    let mut pmap = pmap();
    let baseline = pmap.stats().page_table_pages;
    // ordinary 0..3, grants 3..7, hole 7, ordinary 8, grants 9..11, ordinary 600 (another L1).
    for page in [0, 1, 2, 8, 600] {
        pmap.enter(va(page), Pfn::new(page % 20 + 1).unwrap(), Prot::READ_WRITE)
            .unwrap();
    }
    let first = grant_peer_pages(&mut pmap, 0, 4, false);
    let second = grant_peer_pages(&mut pmap, 4, 2, true);
    pmap.enter_gnt(va(3), PEER, &first, false).unwrap();
    pmap.enter_gnt(va(9), PEER, &second, true).unwrap();
    check(&pmap);
    let before = pmap.hypervisor().calls();
    let summary = pmap.remove(range(0, 1024)).unwrap();
    let after = pmap.hypervisor().calls();
    assert_eq!((summary.ordinary_pages, summary.grant_pages), (5, 6));
    assert_eq!(after.grant_unmap - before.grant_unmap, 1);
    // One batch of clears and one flush (for the ordinary pages); the two emptied L1s stay
    // hooked (with the L2 and L3 above them) for the next mappings.
    assert_eq!(after.mmu_update - before.mmu_update, 1);
    assert_eq!(after.tlb_flushes - before.tlb_flushes, 1);
    assert_eq!(summary.page_tables_freed, 0);
    assert!(pmap.hypervisor().mapped_in(range(0, 1024)).is_empty());
    assert_eq!(pmap.kept_empty_tables(), 2);
    assert_eq!(pmap.stats().page_table_pages, baseline + 4);
    assert_eq!(pmap.stats().live_regions, 0);
    check(&pmap);
    // Under memory pressure they go: one batch of unhooks, one flush.
    let before = pmap.hypervisor().calls();
    assert_eq!(pmap.reclaim_empty_tables(), 4);
    let after = pmap.hypervisor().calls();
    assert_eq!(after.mmu_update - before.mmu_update, 1);
    assert_eq!(after.tlb_flushes - before.tlb_flushes, 1);
    assert_eq!(pmap.stats().page_table_pages, baseline);
    check(&pmap);
}

#[test]
fn removing_part_of_a_region_splits_it_and_keeps_the_rest_mapped() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 8, false);
    pmap.enter_gnt(va(0), PEER, &refs, false).unwrap();
    pmap.remove(range(3, 2)).unwrap();
    check(&pmap);
    let regions: alloc::vec::Vec<(u64, usize)> = pmap
        .grant_list()
        .regions()
        .map(|region| {
            (
                (region.start.as_u64() - va(0).as_u64()) / 4096,
                region.pages.len(),
            )
        })
        .collect();
    assert_eq!(regions, [(0, 3), (5, 3)]);
    assert!(
        matches!(pmap.extract(va(6)), Some(Mapping::Grant { grant_ref, .. }) if grant_ref == refs[6])
    );
    assert_eq!(pmap.extract(va(3)), None);
    assert_eq!(pmap.hypervisor().active_mappings(PEER, refs[3]), 0);
    assert_eq!(pmap.hypervisor().active_mappings(PEER, refs[5]), 1);
    // The hole can be reused, then everything goes.
    pmap.enter(va(4), Pfn::new(2).unwrap(), Prot::READ_ONLY)
        .unwrap();
    pmap.remove(range(0, 8)).unwrap();
    assert_eq!(pmap.stats().live_grant_pages, 0);
    check(&pmap);
}

#[test]
fn a_failed_grant_unmap_is_reported_and_the_page_stays_tracked() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 4, false);
    pmap.enter_gnt(va(0), PEER, &refs, false).unwrap();
    pmap.enter(va(4), Pfn::new(1).unwrap(), Prot::READ_WRITE)
        .unwrap();
    pmap.hypervisor_mut().inject_unmap_failure(PEER, refs[2], 1);
    let error = pmap.remove(range(0, 5)).unwrap_err();
    let RemoveError::Incomplete { summary, failures } = error else {
        panic!("expected an incomplete removal, got {error:?}");
    };
    assert_eq!((summary.grant_pages, summary.ordinary_pages), (3, 1));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].address, va(2));
    assert_eq!(
        failures[0].cause,
        UnmapCause::Grant {
            grant_ref: refs[2],
            status: GrantStatus::GeneralError
        }
    );
    assert_eq!(pmap.stats().live_grant_pages, 1);
    assert_eq!(pmap.stats().unmap_failures, 1);
    assert!(pmap.extract(va(2)).is_some());
    check(&pmap);
    // Retrying succeeds and the tables go.
    let summary = pmap.remove(range(0, 5)).unwrap();
    assert_eq!(summary.grant_pages, 1);
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    check(&pmap);
}

#[test]
fn a_failed_unmap_in_a_whole_region_keeps_that_page_listed_and_mapped() {
    // The range is exactly the region: remove's path for one region, not the page walk.
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 4, false);
    pmap.enter_gnt(va(0), PEER, &refs, false).unwrap();
    pmap.hypervisor_mut().inject_unmap_failure(PEER, refs[1], 1);
    let error = pmap.remove(range(0, 4)).unwrap_err();
    let RemoveError::Incomplete { summary, failures } = error else {
        panic!("expected an incomplete removal, got {error:?}");
    };
    assert_eq!((summary.grant_pages, summary.ordinary_pages), (3, 0));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].address, va(1));
    assert_eq!(pmap.stats().live_grant_pages, 1);
    assert!(pmap.extract(va(0)).is_none());
    assert!(pmap.extract(va(1)).is_some());
    assert!(pmap.extract(va(2)).is_none());
    check(&pmap);
    // The page left is a region of its own: removing exactly it takes the same path.
    let summary = pmap.remove(range(1, 1)).unwrap();
    assert_eq!(summary.grant_pages, 1);
    assert_eq!(pmap.grant_list().region_count(), 0);
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    check(&pmap);
}
