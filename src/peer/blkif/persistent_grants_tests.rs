//! Tests of the persistent-grant cache against a counting mapper: the bound, LRU eviction, idle purge, close.
#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]

use super::*;
use crate::peer::blkif::request::grant_ref;
use crate::peer::blkif::testing::CountingMapper;

#[test]
fn hits_map_once_and_the_least_recently_used_idle_entry_makes_room() {
    let mut mapper = CountingMapper::default();
    let mut cache = PersistentGrants::new(3, 1000);
    for (time, gref) in [(1, 10), (2, 11), (3, 12)] {
        assert_eq!(
            cache.acquire(grant_ref(gref), time, &mut mapper),
            Ok(Acquired::Cached)
        );
        cache.release(grant_ref(gref), time);
    }
    // A hit refreshes 10, so 11 is now the least recently used.
    assert_eq!(
        cache.acquire(grant_ref(10), 4, &mut mapper),
        Ok(Acquired::Cached)
    );
    cache.release(grant_ref(10), 4);
    assert_eq!(mapper.maps, 3);
    assert_eq!(
        cache.acquire(grant_ref(13), 5, &mut mapper),
        Ok(Acquired::Cached)
    );
    assert_eq!(cache.len(), 3);
    assert!(cache.get(grant_ref(11)).is_none());
    assert!(cache.get(grant_ref(10)).is_some());
    assert_eq!(mapper.unmaps, 1);
}

#[test]
fn a_cache_full_of_grants_in_use_maps_transiently() {
    let mut mapper = CountingMapper::default();
    let mut cache = PersistentGrants::new(2, 1000);
    cache.acquire(grant_ref(1), 0, &mut mapper).unwrap();
    cache.acquire(grant_ref(2), 0, &mut mapper).unwrap();
    let Acquired::Transient(mapping) = cache.acquire(grant_ref(3), 0, &mut mapper).unwrap() else {
        panic!("expected a transient mapping");
    };
    assert_eq!(cache.len(), 2);
    mapper.unmap(mapping);
    assert_eq!(mapper.live.len(), 2);
}

#[test]
fn map_failures_leave_nothing_behind() {
    let mut mapper = CountingMapper::default();
    mapper.refuse.insert(grant_ref(5));
    let mut cache = PersistentGrants::new(2, 1000);
    assert_eq!(
        cache.acquire(grant_ref(5), 0, &mut mapper),
        Err(MapFault { gref: grant_ref(5) })
    );
    assert!(cache.is_empty());
    assert!(mapper.live.is_empty());
}

#[test]
fn idle_entries_are_purged_and_busy_ones_kept() {
    let mut mapper = CountingMapper::default();
    let mut cache = PersistentGrants::new(8, 100);
    cache.acquire(grant_ref(1), 0, &mut mapper).unwrap();
    cache.release(grant_ref(1), 0);
    cache.acquire(grant_ref(2), 0, &mut mapper).unwrap(); // still in use
    cache.acquire(grant_ref(3), 50, &mut mapper).unwrap();
    cache.release(grant_ref(3), 50);
    assert_eq!(cache.purge_due(), Some(100));
    assert_eq!(cache.purge_idle(100, &mut mapper), 1);
    assert!(cache.get(grant_ref(1)).is_none());
    assert_eq!(cache.len(), 2);
    assert_eq!(mapper.live.len(), 2);
    // Grant 2 is still in use: it counts as used now, so 3 (used at 50) is the next due.
    assert_eq!(cache.purge_due(), Some(150));
    assert_eq!(cache.purge_idle(149, &mut mapper), 0);
    assert_eq!(cache.purge_idle(150, &mut mapper), 1);
    cache.release(grant_ref(2), 160);
    assert_eq!(cache.purge_idle(259, &mut mapper), 0);
    assert_eq!(cache.purge_idle(260, &mut mapper), 1);
    assert!(cache.is_empty());
    assert!(mapper.live.is_empty());
    assert_eq!(
        cache.purge_due(),
        None,
        "nothing cached: no purge to wake up for"
    );
}

#[test]
fn the_purge_deadline_is_never_late_and_absent_while_empty() {
    let mut mapper = CountingMapper::default();
    let mut cache = PersistentGrants::new(8, 1000);
    assert_eq!(cache.purge_due(), None);
    cache.acquire(grant_ref(1), 10, &mut mapper).unwrap();
    cache.release(grant_ref(1), 10);
    cache.acquire(grant_ref(2), 20, &mut mapper).unwrap();
    cache.release(grant_ref(2), 20);
    assert_eq!(cache.purge_due(), Some(1010));
    // Grant 1 used again: the deadline may stay early (a purge that finds nothing) ...
    cache.acquire(grant_ref(1), 500, &mut mapper).unwrap();
    cache.release(grant_ref(1), 500);
    assert_eq!(cache.purge_due(), Some(1010));
    assert_eq!(cache.purge_idle(1010, &mut mapper), 0);
    // ... and is exact after a purge.
    assert_eq!(cache.purge_due(), Some(1020));
    assert_eq!(cache.purge_idle(1020, &mut mapper), 1, "grant 2 was idle");
    assert!(cache.get(grant_ref(1)).is_some());
    assert_eq!(cache.purge_due(), Some(1500));
    assert_eq!(cache.close(&mut mapper), 1);
    assert_eq!(cache.purge_due(), None);
}

#[test]
fn close_unmaps_everything() {
    let mut mapper = CountingMapper::default();
    let mut cache = PersistentGrants::new(DEFAULT_CAPACITY, DEFAULT_IDLE_MILLISECONDS);
    for gref in 0..100 {
        cache.acquire(grant_ref(gref), 0, &mut mapper).unwrap();
    }
    assert_eq!(cache.close(&mut mapper), 100);
    assert!(cache.is_empty());
    assert!(mapper.live.is_empty());
    assert_eq!(mapper.maps, mapper.unmaps);
}

// Under Miri (`make miri`) every case runs thousands of times slower: there the property runs
// on fewer and shorter cases, with the same assertions.
const RANDOM_USE_CASES: u32 = if cfg!(miri) { 4 } else { 200 };
const RANDOM_USE_LENGTH: usize = if cfg!(miri) { 40 } else { 400 };

#[test]
fn random_use_never_exceeds_the_bound_and_close_empties_it() {
    use proptest::prelude::*;
    let strategy =
        proptest::collection::vec((0u32..64, any::<bool>(), 0u64..5), 1..RANDOM_USE_LENGTH);
    proptest!(ProptestConfig::with_cases(RANDOM_USE_CASES), |(operations in strategy, capacity in 1usize..16)| {
        let mut mapper = CountingMapper::default();
        let mut cache = PersistentGrants::new(capacity, 3);
        let mut now = 0;
        let mut held: alloc::vec::Vec<u32> = alloc::vec::Vec::new();
        for (gref, release, step) in operations {
            now += step;
            if release && !held.is_empty() {
                let gref = held.remove(0);
                cache.release(grant_ref(gref), now);
            } else if let Ok(acquired) = cache.acquire(grant_ref(gref), now, &mut mapper) {
                match acquired {
                    Acquired::Cached => held.push(gref),
                    Acquired::Transient(mapping) => mapper.unmap(mapping),
                }
            }
            if step == 4 {
                cache.purge_idle(now, &mut mapper);
            }
            // The deadline is absent only when nothing is cached, and never later than the
            // time an unused entry becomes idle.
            let idle_at = cache
                .entries
                .values()
                .filter(|entry| entry.users == 0)
                .map(|entry| entry.last_used + 3)
                .min();
            match (cache.purge_due(), idle_at) {
                (None, _) => prop_assert!(cache.is_empty()),
                (Some(due), Some(idle_at)) => prop_assert!(due <= idle_at),
                (Some(_), None) => {}
            }
            prop_assert!(cache.len() <= capacity);
            prop_assert_eq!(mapper.live.len(), cache.len());
        }
        cache.close(&mut mapper);
        prop_assert!(cache.is_empty());
        prop_assert!(mapper.live.is_empty());
    });
}
