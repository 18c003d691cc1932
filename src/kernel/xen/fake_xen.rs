//! The host tests' stand-in for Xen's hypercall page: each test installs a handler that plays Xen.
//!
//! `hypercall::hypercall5` calls [`hypercall`] under `cfg(test)` instead of the `asm!` entry (as
//! rust-vmm's vm-memory swaps its Xen ioctls for mocks). The handler gets the number and the five
//! raw arguments, reads and writes the caller's structs through those very addresses with
//! [`structs_mut`] and [`struct_mut`], as Xen would, and returns Xen's result. Miri then checks
//! what Xen cannot: that every pointer the layer passes is valid, aligned and exclusive for the
//! size the operation implies. Every call is recorded for the test to inspect.

use std::boxed::Box;
use std::cell::RefCell;
use std::vec::Vec;

/// One hypercall as the layer issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub number: u32,
    pub arguments: [u64; 5],
}

type Handler = Box<dyn FnMut(&Call) -> i64>;

std::thread_local! {
    // One per test thread: the harness runs each test on its own thread.
    static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
    static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
}

/// Runs `body` with `handler` answering its hypercalls; returns what `body` returned and every
/// call it made, in order.
pub fn with_xen<R>(
    handler: impl FnMut(&Call) -> i64 + 'static,
    body: impl FnOnce() -> R,
) -> (R, Vec<Call>) {
    HANDLER.with(|slot| *slot.borrow_mut() = Some(Box::new(handler)));
    CALLS.with(|calls| calls.borrow_mut().clear());
    let result = body();
    HANDLER.with(|slot| *slot.borrow_mut() = None);
    (result, CALLS.with(|calls| calls.take()))
}

/// The fake entry: records the call, then lets the installed handler answer it.
///
/// # Safety
/// As `hypercall::hypercall5`: the handler dereferences the pointers among the arguments.
pub unsafe fn hypercall(number: u32, arguments: [u64; 5]) -> i64 {
    let call = Call { number, arguments };
    CALLS.with(|calls| calls.borrow_mut().push(call));
    HANDLER.with(|slot| match slot.borrow_mut().as_mut() {
        Some(handler) => handler(&call),
        None => panic!("hypercall {number} made with no fake Xen installed"),
    })
}

/// Xen's view of `count` structs of type `T` at guest address `address`.
///
/// # Safety
/// `address` is an argument of the hypercall being answered, which the layer vouched (contract
/// 1 of `hypercall5`) points to `count` such structs, exclusively Xen's for the call.
pub unsafe fn structs_mut<'call, T>(address: u64, count: u64) -> &'call mut [T] {
    let length = usize::try_from(count).unwrap_or(usize::MAX);
    // SAFETY: the layer's promise (this function's contract); Miri checks it.
    unsafe { core::slice::from_raw_parts_mut(address as *mut T, length) }
}

/// Xen's view of one struct of type `T` at guest address `address`.
///
/// # Safety
/// As [`structs_mut`] with a count of one.
pub unsafe fn struct_mut<'call, T>(address: u64) -> &'call mut T {
    // SAFETY: the layer's promise (this function's contract); Miri checks it.
    unsafe { &mut *(address as *mut T) }
}
