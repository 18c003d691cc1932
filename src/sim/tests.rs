//! The simulation's own rules, checked directly: page types, implicit unmaps, contains_pte and handle checks.

use super::machine::sim_pfn;
use super::{SimConfig, SimXen, Violation, SIM_DOMID};
use crate::abi::grant_table::{gntmap, GnttabMapGrantRef, GnttabUnmapGrantRef, GrantStatus};
use crate::abi::mmu::{pte, MmuUpdate, MMU_NORMAL_PT_UPDATE};
use crate::addr::{MachineAddr, Pfn};
use crate::hypervisor::{Hypervisor, XenError};
use crate::ids::DomId;
use crate::pmap::direct_map_address;

/// The machine address of the direct-map entry of `frame`, and its current value.
fn direct_entry(sim: &SimXen, frame: Pfn) -> (MachineAddr, u64) {
    let address = direct_map_address(frame).unwrap();
    let mut table = sim.root();
    for level in (2..=4).rev() {
        let entry = sim.read_raw(table, address.table_index(level));
        table = crate::addr::Mfn::of_page_table_entry(entry);
    }
    let index = address.table_index(1);
    (
        MachineAddr::new_truncate(table.base().get() + index as u64 * 8),
        sim.read_raw(table, index),
    )
}

#[test]
fn page_tables_cannot_be_mapped_writable() {
    let mut sim = SimXen::new(SimConfig::default());
    let root_pfn = sim.mfn_to_pfn(sim.root()).unwrap();
    let (entry_address, entry) = direct_entry(&sim, root_pfn);
    assert_eq!(entry & pte::WRITABLE, 0, "Xen maps tables read-only");
    let update = MmuUpdate::new(entry_address, entry | pte::WRITABLE, MMU_NORMAL_PT_UPDATE);
    let error = sim.mmu_update(&[update], DomId::SELF).unwrap_err();
    assert_eq!((error.error, error.done), (XenError::EINVAL, 0));
    // And a frame with a writable mapping cannot become a table: hook data frame 5 into the
    // direct map's L2 at an unused slot.
    let (l1_entry, _) = direct_entry(&sim, sim_pfn(0));
    let l1_table = sim.mfn_to_pfn(l1_entry.frame()).unwrap();
    let (_, l1_direct) = direct_entry(&sim, l1_table);
    assert_eq!(l1_direct & pte::WRITABLE, 0);
    let address = direct_map_address(sim_pfn(0)).unwrap();
    let mut l2 = sim.root();
    for level in [4, 3] {
        let entry = sim.read_raw(l2, address.table_index(level));
        l2 = crate::addr::Mfn::of_page_table_entry(entry);
    }
    let data = sim.machine_frame(sim_pfn(5)).unwrap();
    let hook = MmuUpdate::new(
        MachineAddr::new_truncate(l2.base().get() + 100 * 8),
        data.base().get() | pte::PRESENT | pte::WRITABLE,
        MMU_NORMAL_PT_UPDATE,
    );
    let error = sim.mmu_update(&[hook], DomId::SELF).unwrap_err();
    assert_eq!(error.error, XenError::EINVAL);
    assert_eq!(sim.violations(), &[]);
}

#[test]
fn clearing_a_grant_pte_with_mmu_update_is_a_violation_and_unmap_checks_handle_and_address() {
    let mut sim = SimXen::new(SimConfig {
        pages: 2048,
        initially_mapped: 1000,
        ..SimConfig::default()
    });
    let peer = DomId::new(4).unwrap();
    sim.add_domain(peer, 2, false);
    let frame = sim.domain(peer).unwrap().frames[0];
    let grant = sim.grant_access(peer, frame, SIM_DOMID, false);
    // An unused entry of the last initial L1: frame 1000 is not mapped yet.
    let (free_entry, unused) = direct_entry(&sim, sim_pfn(1000));
    assert_eq!(unused, 0);
    let mut map = [GnttabMapGrantRef {
        host_addr: free_entry.get(),
        flags: gntmap::HOST_MAP | gntmap::CONTAINS_PTE,
        ref_: grant.get(),
        dom: peer.get(),
        ..Default::default()
    }];
    sim.grant_map(&mut map).unwrap();
    assert_eq!(map[0].status, 0);
    // Mapping over a present entry, or at a misaligned address, is refused.
    let mut again = map;
    sim.grant_map(&mut again).unwrap();
    assert_eq!(
        GrantStatus::from_raw(again[0].status),
        GrantStatus::GeneralError
    );
    again[0].host_addr = free_entry.get() + 4;
    sim.grant_map(&mut again).unwrap();
    assert_eq!(
        GrantStatus::from_raw(again[0].status),
        GrantStatus::GeneralError
    );
    // Unmap needs the right handle and address.
    let mut wrong = [GnttabUnmapGrantRef {
        host_addr: free_entry.get(),
        handle: map[0].handle + 1,
        ..Default::default()
    }];
    sim.grant_unmap(&mut wrong).unwrap();
    assert_eq!(
        GrantStatus::from_raw(wrong[0].status),
        GrantStatus::BadHandle
    );
    wrong[0].handle = map[0].handle;
    wrong[0].host_addr = free_entry.get() + 8;
    sim.grant_unmap(&mut wrong).unwrap();
    assert_eq!(
        GrantStatus::from_raw(wrong[0].status),
        GrantStatus::GeneralError
    );
    assert_eq!(sim.active_mappings(peer, grant), 1);
    // The implicit unmap: refused and recorded.
    let clear = MmuUpdate::new(free_entry, 0, MMU_NORMAL_PT_UPDATE);
    assert!(sim.mmu_update(&[clear], DomId::SELF).is_err());
    assert!(matches!(
        sim.violations(),
        [Violation::ImplicitGrantUnmap { .. }]
    ));
}
