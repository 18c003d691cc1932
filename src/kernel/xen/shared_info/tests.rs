//! Host tests of the shared-info page: the one-time mapping through the fake Xen, then every reader over a page the test writes as Xen would.
//!
//! One test, because the mapping is one-time state of the whole test binary.

use super::super::fake_xen::{with_xen, Call};
use super::*;
use grantsvc::abi::hypercall_numbers::UPDATE_VA_MAPPING;
use grantsvc::event_delivery::scan_pending;
use std::vec::Vec;

/// Xen's side: the 64-bit word of the page at `offset`.
fn xen_word(offset: usize) -> &'static AtomicU64 {
    assert!(offset % 8 == 0 && offset + 8 <= 4096);
    // SAFETY: inside the reserved page, aligned; shared with the layer only atomically.
    unsafe { AtomicU64::from_ptr(base().add(offset).cast::<u64>()) }
}

/// Xen's side: the byte of the page at `offset`.
fn xen_byte(offset: usize) -> &'static AtomicU8 {
    assert!(offset < 4096);
    // SAFETY: inside the reserved page; shared with the layer only atomically.
    unsafe { AtomicU8::from_ptr(base().add(offset)) }
}

fn port(raw: u32) -> EvtchnPort {
    EvtchnPort::new(raw).unwrap()
}

#[test]
fn the_page_is_mapped_once_then_read_as_xen_writes_it() {
    // Before the mapping every reader answers "nothing", never touching the page.
    assert_eq!(upcall_masked(), None);
    assert!(!take_pending(port(70)));
    assert_eq!(SharedInfoBitmaps.mask(0), u64::MAX);
    assert_eq!(time_info(), None);

    let frame = MachineAddr::new(0x1_2345_6000).unwrap();
    // SAFETY: the fake Xen changes no mapping; the frame is only recorded.
    let (result, calls) = with_xen(|_| 0, || unsafe { map_frame(frame) });
    assert_eq!(result, Ok(()));
    let entry = 0x1_2345_6000 | pte::PRESENT | pte::WRITABLE | pte::ACCESSED | pte::DIRTY;
    assert_eq!(
        calls,
        [Call {
            number: UPDATE_VA_MAPPING,
            arguments: [base() as u64, entry, UVMF_INVLPG, 0, 0]
        }]
    );
    assert!(is_mapped());
    assert_eq!(upcall_masked(), Some(true), "upcalls are masked at once");
    // SAFETY: refused before any hypercall (the fake would panic otherwise).
    let (again, calls) = with_xen(
        |_| panic!("no second mapping"),
        || unsafe { map_frame(frame) },
    );
    assert_eq!((again, calls.len()), (Err(XenError::EBUSY), 0));

    // Xen raises ports 70 (word 1) and 3 (word 0), with 3 masked.
    xen_word(OFFSET_EVTCHN_PENDING + 8).fetch_or(1 << (70 - 64), Ordering::SeqCst);
    xen_word(OFFSET_EVTCHN_PENDING).fetch_or(1 << 3, Ordering::SeqCst);
    xen_word(OFFSET_EVTCHN_MASK).fetch_or(1 << 3, Ordering::SeqCst);
    xen_word(OFFSET_PENDING_SEL).fetch_or(0b11, Ordering::SeqCst);
    xen_byte(OFFSET_UPCALL_PENDING).store(1, Ordering::SeqCst);
    let mut delivered = Vec::new();
    let summary = scan_pending(&SharedInfoBitmaps, |ready| delivered.push(ready));
    assert_eq!(delivered, [port(70)]);
    assert_eq!(summary.delivered, 1);
    assert_eq!(
        xen_word(OFFSET_EVTCHN_PENDING + 8).load(Ordering::SeqCst),
        0
    );
    assert_eq!(xen_word(OFFSET_PENDING_SEL).load(Ordering::SeqCst), 0);
    assert_eq!(xen_byte(OFFSET_UPCALL_PENDING).load(Ordering::SeqCst), 0);
    // The masked port stays pending, for whoever unmasks it.
    assert!(take_pending(port(3)));
    assert!(!take_pending(port(3)));
    // Ports beyond the 2-level bitmaps are never read.
    assert!(!take_pending(port(64 * 64)));

    set_upcall_mask(false);
    assert_eq!(xen_byte(OFFSET_UPCALL_MASK).load(Ordering::SeqCst), 0);
    xen_word(OFFSET_CR2).store(0xdead_b000, Ordering::SeqCst);
    assert_eq!(cr2(), Some(0xdead_b000));

    // Time info is copied whole while its version is even.
    let info = VcpuTimeInfo {
        version: 4,
        tsc_timestamp: 1_000,
        system_time: 5_000_000,
        tsc_to_system_mul: 1 << 31,
        tsc_shift: -1,
        ..VcpuTimeInfo::default()
    };
    // SAFETY: Xen's side: the struct lies inside vcpu_info[0], 8-aligned.
    unsafe { core::ptr::write_volatile(base().add(OFFSET_TIME).cast::<VcpuTimeInfo>(), info) };
    assert_eq!(time_info(), Some(info));
}
