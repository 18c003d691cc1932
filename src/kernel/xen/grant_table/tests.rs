//! Host tests of the grant map and unmap batches against the fake Xen: what reaches Xen, and what Xen writes back.

use super::super::fake_xen::{structs_mut, with_xen, Call};
use super::*;
use grantsvc::abi::grant_table::{gntmap, GrantStatus};
use std::cell::RefCell;
use std::vec::Vec;

fn map_op(grant: u32, host_addr: u64) -> GnttabMapGrantRef {
    GnttabMapGrantRef {
        host_addr,
        flags: gntmap::HOST_MAP | gntmap::CONTAINS_PTE,
        ref_: grant,
        dom: 7,
        ..GnttabMapGrantRef::default()
    }
}

/// A Xen that maps every op of a batch but those whose ref is 0 (`GNTST_bad_gntref`), handing
/// out handles from 100 and answering `seen` with what it read.
fn mapping_xen(seen: std::rc::Rc<RefCell<Vec<(u32, u16, u64)>>>) -> impl FnMut(&Call) -> i64 {
    move |call| {
        assert_eq!(call.number, GRANT_TABLE_OP);
        assert_eq!(call.arguments[0], u64::from(op::MAP_GRANT_REF));
        // SAFETY: Xen's side of `map`: the batch is the caller's slice, `count` long.
        let batch: &mut [GnttabMapGrantRef] =
            unsafe { structs_mut(call.arguments[1], call.arguments[2]) };
        for (index, operation) in batch.iter_mut().enumerate() {
            seen.borrow_mut()
                .push((operation.ref_, operation.dom, operation.host_addr));
            if operation.ref_ == 0 {
                operation.status = GrantStatus::BadGntref.to_raw();
            } else {
                operation.status = GrantStatus::Okay.to_raw();
                operation.handle = 100 + index as u32;
            }
        }
        0
    }
}

#[test]
fn a_map_batch_reaches_xen_whole_and_gets_each_status_and_handle_back() {
    let seen = std::rc::Rc::new(RefCell::new(Vec::new()));
    let mut batch = [map_op(8, 0x1000), map_op(0, 0x2008), map_op(9, 0x3010)];
    // SAFETY: the fake Xen maps nothing; the addresses are only recorded.
    let (result, calls) = with_xen(mapping_xen(seen.clone()), || unsafe { map(&mut batch) });
    assert_eq!(result, Ok(()));
    assert_eq!(calls.len(), 1, "one hypercall for the batch");
    assert_eq!(
        *seen.borrow(),
        [(8, 7, 0x1000), (0, 7, 0x2008), (9, 7, 0x3010)]
    );
    let statuses: Vec<GrantStatus> = batch
        .iter()
        .map(|operation| GrantStatus::from_raw(operation.status))
        .collect();
    assert_eq!(
        statuses,
        [GrantStatus::Okay, GrantStatus::BadGntref, GrantStatus::Okay]
    );
    assert_eq!((batch[0].handle, batch[2].handle), (100, 102));
}

#[test]
fn an_empty_batch_makes_no_hypercall() {
    let (result, calls) = with_xen(
        |_| panic!("no hypercall expected"),
        // SAFETY: nothing is mapped or unmapped.
        || unsafe { (map(&mut []), unmap(&mut [])) },
    );
    assert_eq!(result, (Ok(()), Ok(())));
    assert!(calls.is_empty());
}

#[test]
fn an_unmap_batch_gets_its_statuses_and_a_refused_call_its_error() {
    let mut batch = [
        GnttabUnmapGrantRef {
            host_addr: 0x1000,
            handle: 100,
            ..GnttabUnmapGrantRef::default()
        },
        GnttabUnmapGrantRef {
            host_addr: 0x2000,
            handle: 55,
            ..GnttabUnmapGrantRef::default()
        },
    ];
    let xen = |call: &Call| {
        assert_eq!(call.arguments[0], u64::from(op::UNMAP_GRANT_REF));
        // SAFETY: Xen's side of `unmap`: the caller's slice, `count` long.
        let batch: &mut [GnttabUnmapGrantRef] =
            unsafe { structs_mut(call.arguments[1], call.arguments[2]) };
        for operation in batch.iter_mut() {
            let known = operation.handle == 100;
            operation.status = if known {
                GrantStatus::Okay.to_raw()
            } else {
                GrantStatus::BadHandle.to_raw()
            };
        }
        0
    };
    // SAFETY: the fake Xen unmaps nothing.
    let (result, calls) = with_xen(xen, || unsafe { unmap(&mut batch) });
    assert_eq!(result, Ok(()));
    assert_eq!(calls[0].arguments[2], 2);
    assert_eq!(GrantStatus::from_raw(batch[0].status), GrantStatus::Okay);
    assert_eq!(
        GrantStatus::from_raw(batch[1].status),
        GrantStatus::BadHandle
    );

    // A hypercall that fails as a whole (Xen could not copy the batch) is the caller's error.
    // SAFETY: as above.
    let (result, _) = with_xen(|_| XenError::EFAULT.0, || unsafe { unmap(&mut batch) });
    assert_eq!(result, Err(XenError::EFAULT));
}
