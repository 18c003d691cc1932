//! enter_gnt's refusals and failures: typed errors naming the ref and status, nothing left mapped, counts back to baseline.

use super::fixture::{check, grant_peer_pages, pmap, range, tables_in_use, va, SimPmap, PEER};
use crate::abi::grant_table::GrantStatus;
use crate::addr::Pfn;
use crate::hypervisor::XenError;
use crate::ids::{DomId, GrantRef};
use crate::pmap::{GrantMapError, Prot, MAX_REGION_PAGES};

fn assert_clean(pmap: &mut SimPmap, baseline_tables: u64) {
    check(pmap);
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    assert_eq!(pmap.stats().live_grant_pages, 0);
    assert_eq!(tables_in_use(pmap), baseline_tables);
    assert!(pmap.hypervisor().mapped_in(range(0, 64)).is_empty());
}

#[test]
fn requests_are_refused_before_anything_is_mapped() {
    let mut pmap = pmap();
    let baseline = tables_in_use(&mut pmap);
    let refs = grant_peer_pages(&mut pmap, 0, 4, false);
    assert_eq!(
        pmap.enter_gnt(va(0), PEER, &[], false),
        Err(GrantMapError::Empty)
    );
    let unaligned = va(0).checked_add(512).unwrap();
    assert_eq!(
        pmap.enter_gnt(unaligned, PEER, &refs, false),
        Err(GrantMapError::BadRange)
    );
    let huge = alloc::vec![refs[0]; MAX_REGION_PAGES + 1];
    assert!(matches!(
        pmap.enter_gnt(va(0), PEER, &huge, false),
        Err(GrantMapError::TooLarge { .. })
    ));
    let xen = crate::addr::VirtAddr::try_new(0xffff_8000_0000_0000).unwrap();
    assert_eq!(
        pmap.enter_gnt(xen, PEER, &refs, false),
        Err(GrantMapError::XenSlots)
    );
    // The direct map (where the kernel image, heap and stacks live) and a range that runs off
    // the end of the chosen-VA region are refused before anything is mapped.
    let direct_map =
        crate::pmap::layout::direct_map_address(crate::addr::Pfn::new(16).unwrap()).unwrap();
    assert_eq!(
        pmap.enter_gnt(direct_map, PEER, &refs, false),
        Err(GrantMapError::OutsideChosenRegion)
    );
    let last_page =
        crate::addr::VirtAddr::try_new(crate::pmap::layout::CHOSEN_REGION_END - 4096).unwrap();
    let two = alloc::vec![refs[0]; 2];
    assert_eq!(
        pmap.enter_gnt(last_page, PEER, &two, false),
        Err(GrantMapError::OutsideChosenRegion)
    );
    let before = pmap.hypervisor().calls();
    assert_eq!(pmap.hypervisor().calls(), before);
    assert_clean(&mut pmap, baseline);
    // Overlap with a live region, and with an ordinary mapping.
    pmap.enter_gnt(va(4), PEER, &refs[..2], false).unwrap();
    assert_eq!(
        pmap.enter_gnt(va(5), PEER, &refs[2..], false),
        Err(GrantMapError::OverlapsRegion {
            region_start: va(4)
        })
    );
    assert_eq!(
        pmap.enter_gnt(va(3), PEER, &refs[2..], false),
        Err(GrantMapError::OverlapsRegion {
            region_start: va(4)
        })
    );
    pmap.enter(va(20), Pfn::new(1).unwrap(), Prot::READ_ONLY)
        .unwrap();
    assert_eq!(
        pmap.enter_gnt(va(19), PEER, &refs[2..], false),
        Err(GrantMapError::AlreadyMapped(va(20)))
    );
    check(&pmap);
    pmap.remove(range(0, 64)).unwrap();
    assert_clean(&mut pmap, baseline);
}

#[test]
fn each_bad_grant_is_named_and_the_batch_is_unmapped() {
    let mut pmap = pmap();
    let baseline = tables_in_use(&mut pmap);
    let good = grant_peer_pages(&mut pmap, 0, 4, false);
    let invalid = pmap.hypervisor_mut().add_invalid_grant(PEER);
    let revoked = grant_peer_pages(&mut pmap, 4, 1, false)[0];
    pmap.hypervisor_mut().revoke(PEER, revoked).unwrap();
    let readonly = grant_peer_pages(&mut pmap, 5, 1, true)[0];
    let cases = [
        (GrantRef::new(100_000), GrantStatus::BadGntref),
        (invalid, GrantStatus::GeneralError),
        (revoked, GrantStatus::GeneralError),
        (readonly, GrantStatus::GeneralError),
    ];
    for (bad, status) in cases {
        let refs = [good[0], good[1], bad, good[2]];
        let error = pmap.enter_gnt(va(0), PEER, &refs, false).unwrap_err();
        assert_eq!(
            error,
            GrantMapError::Grant {
                peer: PEER,
                grant_ref: bad,
                status,
                left_mapped: 0
            }
        );
        assert_eq!(pmap.hypervisor().active_mappings(PEER, good[0]), 0);
        assert_clean(&mut pmap, baseline);
    }
    let error = pmap
        .enter_gnt(va(0), DomId::new(55).unwrap(), &good, false)
        .unwrap_err();
    assert!(matches!(
        error,
        GrantMapError::Grant {
            status: GrantStatus::BadDomain,
            ..
        }
    ));
    assert_clean(&mut pmap, baseline);
}

#[test]
fn maptrack_exhaustion_and_hypercall_failure_are_clean_errors() {
    let mut pmap = pmap();
    let baseline = tables_in_use(&mut pmap);
    let refs = grant_peer_pages(&mut pmap, 0, 8, false);
    pmap.hypervisor_mut().set_maptrack_limit(5);
    let error = pmap.enter_gnt(va(0), PEER, &refs, false).unwrap_err();
    assert_eq!(
        error,
        GrantMapError::Grant {
            peer: PEER,
            grant_ref: refs[5],
            status: GrantStatus::NoSpace,
            left_mapped: 0
        }
    );
    assert_clean(&mut pmap, baseline);
    pmap.hypervisor_mut().set_maptrack_limit(1000);
    pmap.hypervisor_mut().fail_next_grant_map(XenError::EFAULT);
    let error = pmap.enter_gnt(va(0), PEER, &refs, false).unwrap_err();
    assert_eq!(
        error,
        GrantMapError::Hypercall {
            error: XenError::EFAULT,
            left_mapped: 0
        }
    );
    assert_clean(&mut pmap, baseline);
}

#[test]
fn a_rollback_unmap_that_fails_keeps_the_page_accounted() {
    let mut pmap = pmap();
    let refs = grant_peer_pages(&mut pmap, 0, 3, false);
    let bad = GrantRef::new(77_777);
    pmap.hypervisor_mut().inject_unmap_failure(PEER, refs[1], 1);
    let error = pmap
        .enter_gnt(va(0), PEER, &[refs[0], refs[1], bad], false)
        .unwrap_err();
    assert!(matches!(
        error,
        GrantMapError::Grant { grant_ref, left_mapped: 1, .. } if grant_ref == bad
    ));
    // The page that could not be unmapped is in the grant list, so remove retries it.
    assert_eq!(pmap.stats().live_grant_pages, 1);
    check(&pmap);
    pmap.remove(range(0, 3)).unwrap();
    assert_eq!(pmap.hypervisor().maptrack_in_use(), 0);
    check(&pmap);
}
