//! enter_gnt on the simulated Xen: batching, contents through the mapping, eagain retries, one hypercall for 512 pages.

use super::fixture::{check, grant_peer_pages, pmap, range, va, PEER};
use crate::abi::grant_table::{gtf, GrantStatus};
use crate::addr::Pfn;
use crate::hypervisor::VirtualMemory;
use crate::pmap::{GrantMapError, Mapping, MAX_EAGAIN_RETRIES};
use crate::sim::SIM_DOMID;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

#[test]
fn a_512_page_region_maps_in_one_grant_hypercall_and_one_table_update() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 512, false);
    let before = pmap.hypervisor().calls();
    pmap.enter_gnt(va(0), PEER, &refs, false).unwrap();
    let after = pmap.hypervisor().calls();
    assert_eq!(after.grant_map - before.grant_map, 1);
    assert_eq!(after.grant_map_ops - before.grant_map_ops, 512);
    // L3, L2 and L1 hooked in a single mmu_update; nothing else touched a PTE.
    assert_eq!(after.mmu_update - before.mmu_update, 1);
    assert_eq!(after.mmu_update_entries - before.mmu_update_entries, 6);
    assert_eq!(after.tlb_flushes, before.tlb_flushes);
    check(&pmap);
    // Every page shows the peer's bytes and the peer sees it in use.
    for index in [0u64, 1, 300, 511] {
        let mut bytes = [0; 8];
        pmap.hypervisor()
            .read_virtual(va(index), &mut bytes)
            .unwrap();
        assert_eq!(u64::from_le_bytes(bytes), index);
    }
    let flags = pmap
        .hypervisor()
        .domain(PEER)
        .unwrap()
        .grant_flags(refs[7].get() as usize)
        .unwrap();
    assert_eq!(
        flags & (gtf::READING | gtf::WRITING),
        gtf::READING | gtf::WRITING
    );
    let before = pmap.hypervisor().calls();
    let summary = pmap.remove(range(0, 512)).unwrap();
    let after = pmap.hypervisor().calls();
    assert_eq!(summary.grant_pages, 512);
    assert_eq!(after.grant_unmap - before.grant_unmap, 1);
    // Nothing else: no mmu_update (no grant PTE cleared by it, the empty tables stay) and no
    // TLB flush (Xen's unmap flushed).
    assert_eq!(after.mmu_update - before.mmu_update, 0);
    assert_eq!(after.tlb_flushes - before.tlb_flushes, 0);
    assert_eq!(after.page_flushes - before.page_flushes, 0);
    assert_eq!(pmap.hypervisor().active_mappings(PEER, refs[7]), 0);
    check(&pmap);
}

#[test]
fn a_map_unmap_cycle_after_the_first_is_two_hypercalls_at_any_batch_size() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 512, false);
    // The first cycle hooks the chosen region's L3, L2 and L1; its unmap keeps them.
    pmap.enter_gnt(va(0), PEER, &refs[..1], false).unwrap();
    pmap.remove(range(0, 1)).unwrap();
    assert_eq!(pmap.kept_empty_tables(), 1);
    for pages in [1usize, 8, 64, 512] {
        let before = pmap.hypervisor().calls();
        pmap.enter_gnt(va(0), PEER, &refs[..pages], false).unwrap();
        check(&pmap);
        let summary = pmap.remove(range(0, pages as u64)).unwrap();
        let after = pmap.hypervisor().calls();
        assert_eq!(summary.grant_pages, pages as u64);
        assert_eq!(
            (
                after.grant_map - before.grant_map,
                after.grant_unmap - before.grant_unmap
            ),
            (1, 1),
            "{pages} pages"
        );
        assert_eq!(after.mmu_update, before.mmu_update, "{pages} pages");
        assert_eq!(after.mmuext_op, before.mmuext_op, "{pages} pages: no flush");
        check(&pmap);
    }
    assert_eq!(pmap.kept_empty_tables(), 1);
}

#[test]
fn one_page_per_hypercall_mode_exists_for_the_benchmark() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 8, false);
    let before = pmap.hypervisor().calls().grant_map;
    pmap.enter_gnt_batched(va(0), PEER, &refs, false, 1)
        .unwrap();
    assert_eq!(pmap.hypervisor().calls().grant_map - before, 8);
    check(&pmap);
}

#[test]
fn writes_through_the_mapping_reach_the_granted_frame_and_readonly_is_enforced() {
    let mut pmap = pmap();
    let own = Pfn::new(9).unwrap();
    let grant = pmap.hypervisor_mut().grant_own_frame(own, false);
    let readonly = grant_peer_pages(&mut pmap, 0, 1, true);
    pmap.enter_gnt(va(0), SIM_DOMID, &[grant], false).unwrap();
    pmap.enter_gnt(va(1), PEER, &readonly, true).unwrap();
    pmap.hypervisor_mut()
        .write_virtual(va(0), b"pattern")
        .unwrap();
    let mfn = pmap.hypervisor().machine_frame(own).unwrap();
    assert_eq!(
        &pmap.hypervisor().frame_bytes(mfn).unwrap()[..7],
        b"pattern"
    );
    assert!(pmap.hypervisor_mut().write_virtual(va(1), b"x").is_err());
    assert!(matches!(
        pmap.extract(va(1)),
        Some(Mapping::Grant {
            peer: PEER,
            readonly: true,
            ..
        })
    ));
    check(&pmap);
    pmap.remove(range(0, 2)).unwrap();
    check(&pmap);
}

#[test]
fn eagain_is_retried_with_backoff_then_reported() {
    let mut pmap = pmap();
    let waits = Arc::new(AtomicU32::new(0));
    let counter = waits.clone();
    pmap.set_eagain_backoff(alloc::boxed::Box::new(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    let refs = grant_peer_pages(&mut pmap, 0, 4, false);
    pmap.hypervisor_mut().inject_eagain(PEER, refs[2], 3);
    pmap.enter_gnt(va(0), PEER, &refs, false).unwrap();
    assert_eq!(waits.load(Ordering::Relaxed), 3);
    // Retries re-issue only the op that said eagain.
    assert_eq!(pmap.hypervisor().calls().grant_map_ops, 4 + 3);
    check(&pmap);
    let more = grant_peer_pages(&mut pmap, 4, 2, false);
    pmap.hypervisor_mut()
        .inject_eagain(PEER, more[1], MAX_EAGAIN_RETRIES + 5);
    let error = pmap.enter_gnt(va(10), PEER, &more, false).unwrap_err();
    assert_eq!(
        error,
        GrantMapError::Grant {
            peer: PEER,
            grant_ref: more[1],
            status: GrantStatus::Eagain,
            left_mapped: 0
        }
    );
    assert_eq!(pmap.extract(va(10)), None);
    assert_eq!(pmap.hypervisor().active_mappings(PEER, more[0]), 0);
    check(&pmap);
}

#[test]
fn the_remembered_l1_table_is_forgotten_when_tables_go_and_come_back() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 2, false);
    pmap.enter_gnt(va(5), PEER, &refs[..1], false).unwrap();
    pmap.remove(range(5, 1)).unwrap();
    // The emptied tables are unhooked and their frames freed: an L1 table remembered from the
    // cycle above would now name a freed frame.
    assert!(pmap.reclaim_empty_tables() > 0);
    check(&pmap);
    // The same 2 MiB again: new tables are made and the grant lands in them, and a mapped page
    // there is seen as mapped.
    pmap.enter_gnt(va(5), PEER, &refs[..1], false).unwrap();
    check(&pmap);
    assert!(matches!(
        pmap.enter_gnt(va(5), PEER, &refs[1..], false),
        Err(GrantMapError::OverlapsRegion { .. })
    ));
    pmap.enter_gnt(va(6), PEER, &refs[1..], false).unwrap();
    let mut bytes = [0; 8];
    pmap.hypervisor().read_virtual(va(6), &mut bytes).unwrap();
    assert_eq!(u64::from_le_bytes(bytes), 1);
    assert_eq!(pmap.remove(range(5, 2)).unwrap().grant_pages, 2);
    check(&pmap);
}
