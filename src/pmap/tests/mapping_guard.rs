//! GrantMapping: bounds-checked access through the guard, unmap on drop, refusal after the pages went away.

use super::fixture::{check, grant_peer_pages, pmap, tables_in_use, PEER};
use crate::pmap::{
    floor_benchmark, grant_map_benchmark, FloorShape, GrantMapping, PageRange, PAGES_PER_SAMPLE,
};
use crate::shared_memory::SharedMemory;
use alloc::sync::Arc;

#[test]
fn the_guard_reads_writes_and_unmaps_on_drop() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 3, false);
    let baseline = tables_in_use(&mut pmap);
    let shared = Arc::new(spin::Mutex::new(pmap));
    {
        let mapping = GrantMapping::map(shared.clone(), PEER, &refs, false).unwrap();
        assert_eq!(mapping.size(), 3 * 4096);
        let mut bytes = [0; 8];
        mapping.read_bytes(4096, &mut bytes).unwrap();
        assert_eq!(u64::from_le_bytes(bytes), 1);
        mapping.store_u32(8192 + 16, 0xdead_beef).unwrap();
        assert_eq!(mapping.load_u32(8192 + 16).unwrap(), 0xdead_beef);
        assert_eq!(mapping.fetch_or_u8(20, 0x0f).unwrap(), 0);
        assert_eq!(mapping.load_u8(20).unwrap(), 0x0f);
        // Across a page boundary, and out of bounds.
        mapping.write_bytes(4096 - 2, &[1, 2, 3, 4]).unwrap();
        assert!(mapping.read_bytes(3 * 4096 - 1, &mut bytes).is_err());
        assert!(mapping.load_u32(2).is_err());
        let peer_frame = shared.lock().hypervisor().domain(PEER).unwrap().frames[2];
        let frame = *shared.lock().hypervisor().frame_bytes(peer_frame).unwrap();
        assert_eq!(&frame[16..20], &0xdead_beef_u32.to_le_bytes());
        check(&shared.lock());
    }
    let mut pmap = shared.lock();
    assert_eq!(pmap.stats().live_grant_pages, 0);
    assert_eq!(tables_in_use(&mut pmap), baseline);
    check(&pmap);
}

#[test]
fn a_guard_whose_pages_were_removed_refuses_access_and_drops_quietly() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 2, true);
    let lock = spin::Mutex::new(pmap);
    let mapping = GrantMapping::map(&lock, PEER, &refs, true).unwrap();
    assert!(mapping.store_u8(0, 1).is_err(), "read-only mapping");
    let second_page = PageRange::new(mapping.range().page(1).unwrap(), 1).unwrap();
    lock.lock().remove(second_page).unwrap();
    let mut byte = [0; 1];
    assert!(mapping.read_bytes(0, &mut byte).is_ok());
    assert!(mapping.read_bytes(4096, &mut byte).is_err());
    mapping.unmap().unwrap();
    let pmap = lock.lock();
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    check(&pmap);
}

#[test]
fn the_benchmark_runs_batched_and_per_page_and_leaves_nothing_mapped() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 64, false);
    let before = pmap.hypervisor().calls();
    let mut ticks = 0;
    let rows = grant_map_benchmark(&mut pmap, PEER, &refs, 2, &mut || {
        ticks += 1000;
        ticks
    })
    .unwrap();
    assert_eq!(
        rows.iter()
            .map(|row| row.pages)
            .collect::<alloc::vec::Vec<_>>(),
        [1, 8, 64]
    );
    // The fake clock advances 1000 ticks per reading, so every timed round lasts 1000 ticks
    // and each figure is that median divided among the pages.
    for row in &rows {
        assert_eq!(row.batched_ticks_per_page, 1000 / row.pages as u64);
        assert_eq!(row.per_page_ticks_per_page, 1000 / row.pages as u64);
    }
    let after = pmap.hypervisor().calls();
    // Batched: one map per round per size; per page: one per page per round.
    assert_eq!(after.grant_map - before.grant_map, 2 * 3 + 2 * (1 + 8 + 64));
    assert_eq!(pmap.stats().live_grant_pages, 0);
    check(&pmap);
}

#[test]
fn the_floor_benchmark_issues_the_same_grant_calls_both_ways_and_leaves_nothing_mapped() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 64, false);
    let baseline = tables_in_use(&mut pmap);
    let mut ticks = 0;
    let rows = floor_benchmark(&mut pmap, PEER, &refs, &[1, 8, 64, 128], 16, 3, &mut || {
        ticks += 512_000;
        ticks
    })
    .unwrap();
    // 128 pages are more than were granted: no such row; 16 one-page calls come last.
    let shapes: alloc::vec::Vec<_> = rows.iter().map(|row| row.shape).collect();
    assert_eq!(
        shapes,
        [
            FloorShape::Batch(1),
            FloorShape::Batch(8),
            FloorShape::Batch(64),
            FloorShape::OnePageCalls(16)
        ]
    );
    // Each sample spans one clock step of 512,000 ticks over its pages (at least
    // PAGES_PER_SAMPLE).
    for row in &rows {
        let pages = PAGES_PER_SAMPLE.div_ceil(row.shape.pages()) * row.shape.pages();
        let expected = 512_000 / pages as u64;
        assert_eq!(row.pmap.min, expected);
        assert_eq!(row.raw.max, expected);
    }
    assert_eq!(pmap.stats().live_grant_pages, 0);
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    assert_eq!(tables_in_use(&mut pmap), baseline);
    check(&pmap);
}

#[test]
fn one_pmap_cycle_costs_exactly_the_grant_hypercalls_of_the_raw_one() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 64, false);
    // The first run makes the tables; the counted run finds them kept. The clock steps enough
    // for every sample to count (no sample taken again).
    let mut ticks = 0u64;
    let mut clock = || {
        ticks += 1_000_000;
        ticks
    };
    floor_benchmark(&mut pmap, PEER, &refs, &[8], 0, 1, &mut clock).unwrap();
    let before = pmap.hypervisor().calls();
    // One round: a sample of PAGES_PER_SAMPLE pages each way, 8 pages a cycle.
    floor_benchmark(&mut pmap, PEER, &refs, &[8], 0, 1, &mut clock).unwrap();
    let after = pmap.hypervisor().calls();
    let cycles = (PAGES_PER_SAMPLE / 8) as u64;
    // Plus the untimed cycle that sets the row up.
    assert_eq!(after.grant_map - before.grant_map, cycles + 1 + cycles);
    assert_eq!(after.grant_unmap - before.grant_unmap, cycles + 1 + cycles);
    assert_eq!(after.mmu_update, before.mmu_update, "no page-table writes");
    assert_eq!(after.mmuext_op, before.mmuext_op, "no flush");
    check(&pmap);
}

#[test]
fn a_sample_whose_clock_went_backwards_is_taken_again() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 8, false);
    // Readings: 1000, then 10 (backwards: retaken), then 2000, 2000 + PAGES_PER_SAMPLE * 70 per
    // sample.
    let mut readings = alloc::vec![1000u64, 10].into_iter();
    let mut ticks = 2000;
    let rows = floor_benchmark(&mut pmap, PEER, &refs, &[8], 0, 1, &mut || {
        readings.next().unwrap_or_else(|| {
            ticks += PAGES_PER_SAMPLE as u64 * 70;
            ticks
        })
    })
    .unwrap();
    assert_eq!(rows[0].pmap.min, 70);
    assert_eq!(rows[0].raw.min, 70);
    assert_eq!((rows[0].retaken, rows[0].dropped), (1, 0));
    // A clock that only goes backwards measures nothing: an error, not a zero.
    let mut falling = u64::MAX;
    let error = floor_benchmark(&mut pmap, PEER, &refs, &[8], 0, 1, &mut || {
        falling -= 1;
        falling
    })
    .unwrap_err();
    assert_eq!(error, crate::pmap::BenchError::ClockWentBackwards);
    assert_eq!(pmap.stats().live_grant_pages, 0);
    check(&pmap);
}

#[test]
fn a_sample_timed_implausibly_short_is_taken_again_and_dropped_if_it_stays_so() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 8, false);
    // Two rounds, each a pmap and a raw sample of PAGES_PER_SAMPLE pages. The clock steps
    // PAGES_PER_SAMPLE * 50 ticks a
    // reading, except that the second reading of the first sample comes only 100 ticks after
    // the first (under 10 a page: retaken), and the whole raw sample of round 2 reads the
    // same value three times over (0 a page at every attempt: dropped).
    let mut reading = 0;
    let mut ticks = 0u64;
    let rows = floor_benchmark(&mut pmap, PEER, &refs, &[8], 0, 2, &mut || {
        reading += 1;
        // Readings 1-2: the short first attempt; 3-4: its retake; 5-6: round 1's raw sample;
        // 7-12: round 2's raw sample (first, as the order alternates), stuck; 13-14: its pmap.
        ticks += match reading {
            2 => 100,
            8 | 10 | 12 => 0,
            _ => PAGES_PER_SAMPLE as u64 * 50,
        };
        ticks
    })
    .unwrap();
    let row = &rows[0];
    assert_eq!((row.retaken, row.dropped), (1 + 2, 1));
    assert_eq!((row.pmap.min, row.pmap.max), (50, 50));
    // The raw way kept one sample: round 1's.
    assert_eq!((row.raw.min, row.raw.max), (50, 50));
    assert_eq!(row.paired_ratio_thousandths, 1000);
    assert_eq!(pmap.stats().live_grant_pages, 0);
    check(&pmap);
}
