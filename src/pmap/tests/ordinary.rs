//! Ordinary mappings on the simulated Xen: adoption, enter/extract/protect/remove, foreign frames, the direct map.

use super::fixture::{check, pmap, range, tables_in_use, va, HVM_PEER, PEER};
use crate::abi::mmu::pte;
use crate::addr::{Pfn, VirtAddr};
use crate::hypervisor::XenError;
use crate::pmap::{
    direct_map_address, ForeignFlags, Mapping, PmapError, Prot, ProtectError, MAX_KEPT_EMPTY_TABLES,
};
use crate::sim::SimConfig;

#[test]
fn adoption_counts_xen_tables_and_extension_maps_every_frame() {
    let pmap = pmap();
    let sim = pmap.hypervisor();
    // Xen's tables plus the L1 tables for the frames Xen left unmapped (frames 1024..2048,
    // two of them, in the usual simulation; under Miri's smaller one, none).
    let config = SimConfig::default();
    let new_l1_tables = config.pages.div_ceil(512) - config.initially_mapped.div_ceil(512);
    assert_eq!(
        pmap.stats().page_table_pages,
        sim.initial_page_tables() + new_l1_tables
    );
    let pages = config.pages;
    for frame in [0, pages / 3, config.initially_mapped, pages - 1] {
        let address = direct_map_address(Pfn::new(frame).unwrap()).unwrap();
        assert_eq!(
            pmap.extract(address),
            Some(Mapping::Ordinary {
                frame: Pfn::new(frame).unwrap(),
                prot: Prot::READ_WRITE
            })
        );
    }
    // Page-table frames are mapped read-only in the direct map.
    let table = pmap.root();
    let entry = pmap.extract(direct_map_address(table).unwrap());
    assert_eq!(
        entry,
        Some(Mapping::Ordinary {
            frame: table,
            prot: Prot::READ_ONLY
        })
    );
}

#[test]
fn enter_then_remove_frees_every_table_it_made() {
    let mut pmap = pmap();
    let baseline = pmap.stats().page_table_pages;
    let allocated = pmap.frames().allocated();
    pmap.enter(va(5), Pfn::new(3).unwrap(), Prot::READ_WRITE)
        .unwrap();
    check(&pmap);
    // A fresh L4 slot: L3, L2 and L1 created, in one mmu_update with the leaf separate.
    assert_eq!(pmap.stats().page_table_pages, baseline + 3);
    assert_eq!(
        pmap.extract(va(5).checked_add(17).unwrap()),
        Some(Mapping::Ordinary {
            frame: Pfn::new(3).unwrap(),
            prot: Prot::READ_WRITE
        })
    );
    let expected_mfn = pmap
        .hypervisor()
        .machine_frame(Pfn::new(3).unwrap())
        .unwrap();
    assert_eq!(
        pmap.hypervisor().translate(va(5), true).unwrap().0,
        expected_mfn
    );
    let summary = pmap.remove(range(0, 16)).unwrap();
    // The chosen region's tables stay, empty, for the next mapping; reclaiming frees them.
    assert_eq!((summary.ordinary_pages, summary.page_tables_freed), (1, 0));
    assert_eq!(pmap.extract(va(5)), None);
    assert_eq!(pmap.stats().page_table_pages, baseline + 3);
    check(&pmap);
    assert_eq!(pmap.reclaim_empty_tables(), 3);
    assert_eq!(pmap.stats().page_table_pages, baseline);
    assert_eq!(pmap.frames().allocated(), allocated);
    check(&pmap);
}

#[test]
fn refusals_change_nothing() {
    let mut pmap = pmap();
    let xen = VirtAddr::try_new(0xffff_8000_0000_0000).unwrap();
    assert_eq!(
        pmap.enter(xen, Pfn::new(1).unwrap(), Prot::READ_ONLY),
        Err(PmapError::XenSlots(xen))
    );
    let unaligned = va(1).checked_add(8).unwrap();
    assert_eq!(
        pmap.enter(unaligned, Pfn::new(1).unwrap(), Prot::READ_ONLY),
        Err(PmapError::BadRange)
    );
    let table = pmap.root();
    assert_eq!(
        pmap.enter(va(1), table, Prot::READ_WRITE),
        Err(PmapError::FrameIsPageTable(table))
    );
    // Read-only mappings of a table are fine.
    pmap.enter(va(1), table, Prot::READ_ONLY).unwrap();
    check(&pmap);
}

#[test]
fn replacing_a_mapping_keeps_the_wire_count_and_flushes_the_page() {
    let mut pmap = pmap();
    pmap.enter(va(0), Pfn::new(1).unwrap(), Prot::READ_WRITE)
        .unwrap();
    let flushes = pmap.hypervisor().calls().page_flushes;
    pmap.enter(va(0), Pfn::new(2).unwrap(), Prot::READ_ONLY)
        .unwrap();
    assert_eq!(pmap.hypervisor().calls().page_flushes, flushes + 1);
    assert_eq!(
        pmap.extract(va(0)),
        Some(Mapping::Ordinary {
            frame: Pfn::new(2).unwrap(),
            prot: Prot::READ_ONLY
        })
    );
    check(&pmap);
}

#[test]
fn protect_rewrites_entries_in_one_batch_with_one_flush() {
    let mut pmap = pmap();
    for page in 0..4 {
        pmap.enter(va(page), Pfn::new(page + 1).unwrap(), Prot::READ_WRITE)
            .unwrap();
    }
    let before = pmap.hypervisor().calls();
    pmap.protect(range(0, 8), Prot::READ_ONLY).unwrap();
    let after = pmap.hypervisor().calls();
    assert_eq!(after.mmu_update - before.mmu_update, 1);
    assert_eq!(after.tlb_flushes - before.tlb_flushes, 1);
    for page in 0..4 {
        assert!(pmap.hypervisor().translate(va(page), true).is_none());
        assert!(pmap.hypervisor().translate(va(page), false).is_some());
    }
    check(&pmap);
    let xen =
        crate::pmap::PageRange::new(VirtAddr::try_new(0xffff_8000_0000_0000).unwrap(), 1).unwrap();
    assert!(matches!(
        pmap.protect(xen, Prot::READ_ONLY),
        Err(ProtectError::PageTables(PmapError::XenSlots(_)))
    ));
}

#[test]
fn foreign_frames_map_with_their_owner_and_the_no_translate_flag() {
    let mut pmap = pmap();
    let peer_frame = pmap.hypervisor().domain(PEER).unwrap().frames[3];
    pmap.enter_foreign(
        va(0),
        peer_frame,
        PEER,
        Prot::READ_ONLY,
        ForeignFlags::default(),
    )
    .unwrap();
    assert_eq!(
        pmap.extract(va(0)),
        Some(Mapping::Foreign {
            frame: peer_frame,
            domain: PEER,
            prot: Prot::READ_ONLY
        })
    );
    // The owner must be right: claiming the peer's frame as ours is refused by Xen.
    let refused = pmap.enter_foreign(
        va(1),
        peer_frame,
        crate::ids::DomId::SELF,
        Prot::READ_ONLY,
        ForeignFlags::default(),
    );
    assert!(matches!(
        refused,
        Err(PmapError::MmuUpdate {
            error: XenError::EINVAL,
            ..
        })
    ));
    // A translated peer: a plain update takes the value as a guest frame and fails for an
    // mfn; with no-translate the machine frame is used as given.
    let hvm_frame = pmap.hypervisor().domain(HVM_PEER).unwrap().frames[2];
    let plain = pmap.enter_foreign(
        va(2),
        hvm_frame,
        HVM_PEER,
        Prot::READ_ONLY,
        ForeignFlags::default(),
    );
    assert!(plain.is_err());
    let flags = ForeignFlags { no_translate: true };
    pmap.enter_foreign(va(2), hvm_frame, HVM_PEER, Prot::WRITE, flags)
        .unwrap();
    assert_eq!(
        pmap.hypervisor().translate(va(2), true).unwrap().0,
        hvm_frame
    );
    // Protect keeps the foreign owner and command.
    pmap.protect(range(0, 3), Prot::READ_ONLY).unwrap();
    assert!(pmap.hypervisor().translate(va(2), true).is_none());
    // Own machine frames through the foreign path (the lab's pmap-foreign scenario).
    let own = pmap
        .hypervisor()
        .machine_frame(Pfn::new(4).unwrap())
        .unwrap();
    pmap.enter_foreign(va(3), own, crate::ids::DomId::SELF, Prot::READ_WRITE, flags)
        .unwrap();
    check(&pmap);
    let summary = pmap.remove(range(0, 4)).unwrap();
    assert_eq!(summary.ordinary_pages, 3);
    check(&pmap);
}

#[test]
fn a_failed_update_leaves_no_empty_table_behind() {
    let mut pmap = pmap();
    let baseline = tables_in_use(&mut pmap);
    // The table batch has 6 requests (3 tables); fail the 4th: L3 and L2... partly built.
    pmap.hypervisor_mut()
        .fail_next_mmu_update(3, XenError::ENOMEM);
    let error = pmap
        .enter(va(0), Pfn::new(1).unwrap(), Prot::READ_WRITE)
        .unwrap_err();
    assert!(matches!(
        error,
        PmapError::MmuUpdate {
            error: XenError::ENOMEM,
            ..
        }
    ));
    assert_eq!(tables_in_use(&mut pmap), baseline);
    check(&pmap);
    // Failing the leaf itself also releases the fresh tables.
    let leaf = pmap.enter_foreign(
        va(0),
        crate::addr::Mfn::new(0).unwrap(),
        crate::ids::DomId::SELF,
        Prot::READ_ONLY,
        ForeignFlags::default(),
    );
    assert!(leaf.is_err());
    assert_eq!(tables_in_use(&mut pmap), baseline);
    pmap.reclaim_empty_tables();
    assert_eq!(pmap.stats().page_table_pages, baseline);
    check(&pmap);
    let present = pmap.hypervisor().mapped_in(range(0, 1));
    assert!(present.values().all(|entry| entry & pte::PRESENT == 0));
}

#[test]
fn the_direct_map_and_everything_outside_the_chosen_region_are_refused() {
    let mut pmap = pmap();
    let baseline = pmap.stats().page_table_pages;
    let kernel_image = direct_map_address(Pfn::new(0).unwrap()).unwrap();
    let heap_page = direct_map_address(Pfn::new(SimConfig::default().pages / 3).unwrap()).unwrap();
    for address in [kernel_image, heap_page] {
        assert_eq!(
            pmap.enter(address, Pfn::new(1).unwrap(), Prot::READ_ONLY),
            Err(PmapError::OutsideChosenRegion(address))
        );
        let whole_page = crate::pmap::PageRange::new(address, 1).unwrap();
        assert!(matches!(
            pmap.remove(whole_page),
            Err(crate::pmap::RemoveError::Refused(
                PmapError::OutsideChosenRegion(_)
            ))
        ));
        assert_eq!(
            pmap.protect(whole_page, Prot::READ_ONLY),
            Err(ProtectError::PageTables(PmapError::OutsideChosenRegion(
                address
            )))
        );
        // Still mapped read-write, as the direct map was.
        assert!(matches!(
            pmap.extract(address),
            Some(Mapping::Ordinary { prot, .. }) if prot == Prot::READ_WRITE
        ));
    }
    let lower_half = VirtAddr::try_new(0x1000).unwrap();
    assert_eq!(
        pmap.enter(lower_half, Pfn::new(1).unwrap(), Prot::READ_ONLY),
        Err(PmapError::OutsideChosenRegion(lower_half))
    );
    // A range that starts inside the region but runs past its end is refused too.
    let last_page = VirtAddr::try_new(crate::pmap::CHOSEN_REGION_END - 4096).unwrap();
    let overhanging = crate::pmap::PageRange::new(last_page, 2).unwrap();
    assert!(pmap.remove(overhanging).is_err());
    assert_eq!(pmap.stats().page_table_pages, baseline);
    check(&pmap);
}

#[test]
fn mapped_access_reaches_only_the_pmaps_own_pages_in_the_chosen_region() {
    let mut pmap = pmap();
    pmap.enter(va(3), Pfn::new(5).unwrap(), Prot::READ_WRITE)
        .unwrap();
    pmap.enter(va(4), Pfn::new(6).unwrap(), Prot::READ_ONLY)
        .unwrap();
    let near_end = va(3).checked_add(4090).unwrap();
    // Crossing into the read-only page: refused whole, nothing written.
    pmap.write_mapped(near_end, b"abcdefgh").unwrap_err();
    pmap.write_mapped(va(3).checked_add(10).unwrap(), b"abc")
        .unwrap();
    let mut read = [0u8; 3];
    pmap.read_mapped(va(3).checked_add(10).unwrap(), &mut read)
        .unwrap();
    assert_eq!(&read, b"abc");
    // Across into the read-only page: readable, not writable.
    let mut across = [0u8; 8];
    pmap.read_mapped(near_end, &mut across).unwrap();
    assert!(pmap.write_mapped(va(4), b"x").is_err());
    // Unmapped pages and the direct map are refused.
    assert!(pmap.read_mapped(va(9), &mut read).is_err());
    let direct = direct_map_address(Pfn::new(5).unwrap()).unwrap();
    assert!(pmap.read_mapped(direct, &mut read).is_err());
    assert!(pmap.write_mapped(direct, b"x").is_err());
    check(&pmap);
}

/// Page `n * 512`: the first page of the n-th 2 MiB slot of the chosen region (its own L1).
fn slot(n: u64) -> VirtAddr {
    va(n * 512)
}

#[test]
fn at_most_the_bound_of_empty_tables_stays_hooked() {
    let mut pmap = pmap();
    let frame = Pfn::new(1).unwrap();
    let slots = MAX_KEPT_EMPTY_TABLES as u64 + 6;
    for n in 0..slots {
        pmap.enter(slot(n), frame, Prot::READ_ONLY).unwrap();
    }
    let summary = pmap.remove(range(0, slots * 512)).unwrap();
    assert_eq!(summary.ordinary_pages, slots);
    assert_eq!(pmap.kept_empty_tables(), MAX_KEPT_EMPTY_TABLES);
    assert_eq!(summary.page_tables_freed, 6);
    check(&pmap);
}

#[test]
fn a_new_table_with_no_free_frame_takes_the_kept_ones_back() {
    let mut pmap = pmap();
    // Under Miri (`make miri`), where validating each new table and every check read all of
    // each table's entries, the allocator keeps 24 frames (the rest lent away) instead of
    // about 200: minutes fewer there, the same run-out.
    let mut lent = alloc::vec::Vec::new();
    if cfg!(miri) {
        while let Some(frame) = pmap.lend_frame() {
            lent.push(frame);
        }
        for frame in lent.split_off(lent.len().saturating_sub(24)) {
            pmap.take_back_frame(frame);
        }
    }
    let frame = Pfn::new(1).unwrap();
    // One page per 2 MiB slot, each with its own L1, until the frames run out.
    let mut used = 0;
    loop {
        match pmap.enter(slot(used), frame, Prot::READ_ONLY) {
            Ok(()) => used += 1,
            Err(PmapError::OutOfFrames) => break,
            Err(other) => panic!("slot {used}: {other:?}"),
        }
    }
    assert!(
        used > if cfg!(miri) { 20 } else { 100 },
        "only {used} slots mapped"
    );
    check(&pmap);
    // Emptied, the first ten L1s stay hooked: no frame is free.
    for n in 0..10 {
        pmap.remove(range(n * 512, 1)).unwrap();
    }
    assert_eq!(pmap.kept_empty_tables(), 10);
    // A fresh slot needs a table: the kept ones are reclaimed to make room, and it maps.
    pmap.enter(slot(used), frame, Prot::READ_ONLY).unwrap();
    assert_eq!(pmap.kept_empty_tables(), 0);
    assert!(matches!(
        pmap.extract(slot(used)),
        Some(Mapping::Ordinary { .. })
    ));
    check(&pmap);
}
