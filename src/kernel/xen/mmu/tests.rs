//! Host tests of the MMU hypercalls against the fake Xen: the batch Xen reads, the done count it writes back.

use super::super::fake_xen::{struct_mut, structs_mut, with_xen, Call};
use super::*;
use grantsvc::abi::mmu::{mmuext, MMU_NORMAL_PT_UPDATE};
use grantsvc::addr::MachineAddr;
use std::vec::Vec;

fn update(pte: u64, value: u64) -> MmuUpdate {
    let pte = MachineAddr::new(pte).unwrap();
    MmuUpdate::new(pte, value, MMU_NORMAL_PT_UPDATE)
}

/// A Xen that applies updates in order until one writes value 0xbad, then fails with `EINVAL`
/// after writing how many it completed; `applied` gets each update it read.
fn page_table_xen(
    applied: std::rc::Rc<std::cell::RefCell<Vec<MmuUpdate>>>,
) -> impl FnMut(&Call) -> i64 {
    move |call| {
        assert_eq!(call.number, MMU_UPDATE);
        let [requests, count, done, foreign, _] = call.arguments;
        assert_eq!(foreign, 9, "the foreign domain is passed on");
        // SAFETY: Xen's side of `mmu_update`: `count` updates at `requests`, a u32 at `done`.
        let batch: &[MmuUpdate] = unsafe { structs_mut(requests, count) };
        let mut completed: u32 = 0;
        let mut result = 0;
        for request in batch {
            if request.val == 0xbad {
                result = XenError::EINVAL.0;
                break;
            }
            applied.borrow_mut().push(*request);
            completed += 1;
        }
        // SAFETY: as above.
        *unsafe { struct_mut::<u32>(done) } = completed;
        result
    }
}

#[test]
fn an_mmu_update_batch_reaches_xen_in_order_and_a_failure_reports_how_many_were_done() {
    let foreign = DomId::new(9).unwrap();
    let applied = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let batch = [
        update(0x1000, 0x5001),
        update(0x1008, 0x6001),
        update(0x1010, 0x7001),
    ];
    // SAFETY: the fake Xen writes no page table.
    let (result, calls) = with_xen(page_table_xen(applied.clone()), || unsafe {
        mmu_update(&batch, foreign)
    });
    assert_eq!(result, Ok(()));
    assert_eq!(calls.len(), 1);
    assert_eq!(*applied.borrow(), batch);

    applied.borrow_mut().clear();
    let failing = [
        update(0x2000, 0x5001),
        update(0x2008, 0xbad),
        update(0x2010, 0x7001),
    ];
    // SAFETY: as above.
    let (result, _) = with_xen(page_table_xen(applied.clone()), || unsafe {
        mmu_update(&failing, foreign)
    });
    assert_eq!(
        result,
        Err(MmuUpdateError {
            error: XenError::EINVAL,
            done: 1
        })
    );
    assert_eq!(*applied.borrow(), failing[..1]);
}

#[test]
fn an_mmuext_batch_is_read_whole_for_our_own_domain() {
    let operations = [
        MmuextOp {
            cmd: mmuext::PIN_L1_TABLE,
            arg1: 0x42,
            arg2: 0,
        },
        MmuextOp::invlpg_all(0xffff_8000_0000_1000),
        MmuextOp::tlb_flush_all(),
    ];
    let xen = |call: &Call| {
        assert_eq!(call.number, MMUEXT_OP);
        let [requests, count, done, domain, _] = call.arguments;
        assert_eq!(domain, u64::from(DomId::SELF.get()));
        // SAFETY: Xen's side of `mmuext_op`: `count` ops at `requests`, a u32 at `done`.
        let batch: &[MmuextOp] = unsafe { structs_mut(requests, count) };
        let commands: Vec<u32> = batch.iter().map(|operation| operation.cmd).collect();
        assert_eq!(
            commands,
            [
                mmuext::PIN_L1_TABLE,
                mmuext::INVLPG_ALL,
                mmuext::TLB_FLUSH_ALL
            ]
        );
        assert_eq!(batch[1].arg1, 0xffff_8000_0000_1000);
        // SAFETY: as above.
        *unsafe { struct_mut::<u32>(done) } = count as u32;
        0
    };
    // SAFETY: the fake Xen pins and flushes nothing.
    let (result, calls) = with_xen(xen, || unsafe { mmuext_op(&operations) });
    assert_eq!(result, Ok(()));
    assert_eq!(calls.len(), 1);
    // SAFETY: as above; an empty list is no hypercall.
    let (result, calls) = with_xen(|_| panic!("no call"), || unsafe { mmuext_op(&[]) });
    assert_eq!((result, calls.len()), (Ok(()), 0));
}

#[test]
fn update_va_mapping_passes_address_entry_and_flags_and_returns_xens_error() {
    let address = VirtAddr::try_new(0xffff_8000_0020_0000).unwrap();
    // SAFETY: the fake Xen changes no mapping.
    let (result, calls) = with_xen(
        |_| XenError::EPERM.0,
        || unsafe { update_va_mapping(address, 0x1234_5067, 2) },
    );
    assert_eq!(result, Err(XenError::EPERM));
    assert_eq!(
        calls,
        [Call {
            number: UPDATE_VA_MAPPING,
            arguments: [0xffff_8000_0020_0000, 0x1234_5067, 2, 0, 0]
        }]
    );
}
