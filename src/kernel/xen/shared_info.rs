//! The shared-info page: mapped once at boot over a reserved page of the image, then read with volatile and atomic accesses.
//!
//! Xen gives the machine address of shared_info in start_info. `map` points the VA of the
//! reserved `shared_info_page` (see `boot::entry`) at that frame with `update_va_mapping`; the
//! frame that was there belongs to the image's .bss and is never used again. Only vcpu 0 exists.
//! `map` takes the frame from the recorded start_info and works once: no caller can point the
//! page elsewhere.

use super::mmu::update_va_mapping;
use super::start_of_day;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use grantsvc::abi::hypercall_numbers::UVMF_INVLPG;
use grantsvc::abi::mmu::pte;
#[cfg(any(test, feature = "lab"))]
use grantsvc::abi::shared_info::evtchn_word_and_bit;
use grantsvc::abi::shared_info::{
    VcpuTimeInfo, EVTCHN_WORDS, OFFSET_CR2, OFFSET_EVTCHN_MASK, OFFSET_EVTCHN_PENDING,
    OFFSET_PENDING_SEL, OFFSET_TIME, OFFSET_UPCALL_MASK, OFFSET_UPCALL_PENDING,
};
use grantsvc::addr::{MachineAddr, VirtAddr};
use grantsvc::event_delivery::PendingBitmaps;
use grantsvc::hypervisor::XenError;
#[cfg(any(test, feature = "lab"))]
use grantsvc::ids::EvtchnPort;

#[cfg(not(test))]
extern "C" {
    /// A page-aligned page of .bss whose mapping `map` replaces.
    static shared_info_page: [u8; 4096];
}

/// Host tests' stand-in for the reserved page: the fake Xen's `update_va_mapping` leaves it in
/// place, and the test writes Xen's side of it.
#[cfg(test)]
#[repr(C, align(4096))]
struct ReservedPage(core::cell::UnsafeCell<[u8; 4096]>);

// SAFETY: reached only through `base()`, with atomic and volatile accesses, like the real page.
#[cfg(test)]
unsafe impl Sync for ReservedPage {}

#[cfg(test)]
static SHARED_INFO_PAGE: ReservedPage = ReservedPage(core::cell::UnsafeCell::new([0; 4096]));

/// Set by the first `map`, before anything else happens: the one-time token.
static MAP_TAKEN: AtomicBool = AtomicBool::new(false);
static MAPPED: AtomicBool = AtomicBool::new(false);

/// The VA where shared_info is (or will be) mapped.
#[cfg(not(test))]
fn base() -> *mut u8 {
    core::ptr::addr_of!(shared_info_page)
        .cast::<u8>()
        .cast_mut()
}

/// The host tests' reserved page.
#[cfg(test)]
fn base() -> *mut u8 {
    SHARED_INFO_PAGE.0.get().cast::<u8>()
}

/// Maps the shared-info frame the recorded start_info names, then masks event upcalls for
/// vcpu 0 (no upcall handler does real work yet). Only the first call does anything: later
/// ones (and one before start_info is recorded) return `EBUSY` / `EINVAL`.
pub fn map() -> Result<(), XenError> {
    let machine_address: MachineAddr = start_of_day::boot_info()
        .ok_or(XenError::EINVAL)?
        .shared_info();
    // SAFETY: the recorded start_info is Xen's own, so its address is the shared-info frame.
    unsafe { map_frame(machine_address) }
}

/// [`map`] for the frame at `machine_address`, once.
///
/// # Safety
/// 1. `machine_address` is Xen's shared-info frame of this domain.
unsafe fn map_frame(machine_address: MachineAddr) -> Result<(), XenError> {
    if MAP_TAKEN.swap(true, Ordering::AcqRel) {
        return Err(XenError::EBUSY);
    }
    let address = VirtAddr::try_new(base() as u64).ok_or(XenError::EINVAL)?;
    let entry = (machine_address.get() & pte::FRAME_MASK)
        | pte::PRESENT
        | pte::WRITABLE
        | pte::ACCESSED
        | pte::DIRTY;
    // SAFETY: (1) the VA is the reserved page, unreferenced and reached only via `base()` once
    // MAPPED is set, and this runs once (MAP_TAKEN); (2) the frame is Xen's shared info (our
    // contract 1), which Rust code reaches only with volatile and atomic accesses.
    unsafe { update_va_mapping(address, entry, UVMF_INVLPG)? };
    MAPPED.store(true, Ordering::Release);
    set_upcall_mask(true);
    Ok(())
}

/// True once `map` succeeded.
pub fn is_mapped() -> bool {
    MAPPED.load(Ordering::Acquire)
}

/// A byte of vcpu 0's vcpu_info at `offset`, as an atomic.
fn vcpu0_byte(offset: usize) -> Option<&'static AtomicU8> {
    if !is_mapped() || offset >= 64 {
        return None;
    }
    // SAFETY: the page is mapped (checked above) for the rest of the domain's life, the
    // offset lies inside vcpu_info[0], and Xen and we access these bytes atomically.
    Some(unsafe { AtomicU8::from_ptr(base().add(offset)) })
}

/// A 64-bit word of shared_info at `offset` (8-aligned), as an atomic.
fn word(offset: usize) -> Option<&'static AtomicU64> {
    if !is_mapped() || offset % 8 != 0 || offset + 8 > 4096 {
        return None;
    }
    // SAFETY: mapped (checked), aligned and inside the page (checked); Xen updates these
    // words with locked instructions and so do we.
    Some(unsafe { AtomicU64::from_ptr(base().add(offset).cast::<u64>()) })
}

/// Sets or clears vcpu 0's `evtchn_upcall_mask` (a PV guest's interrupt flag).
pub fn set_upcall_mask(masked: bool) {
    if let Some(mask) = vcpu0_byte(OFFSET_UPCALL_MASK) {
        mask.store(u8::from(masked), Ordering::SeqCst);
    }
}

/// Whether vcpu 0's upcalls are masked.
#[cfg(any(test, feature = "lab"))]
pub fn upcall_masked() -> Option<bool> {
    vcpu0_byte(OFFSET_UPCALL_MASK).map(|mask| mask.load(Ordering::SeqCst) != 0)
}

/// Clears vcpu 0's `evtchn_upcall_pending`, returning its old value.
pub fn take_upcall_pending() -> bool {
    vcpu0_byte(OFFSET_UPCALL_PENDING).is_some_and(|pending| pending.swap(0, Ordering::SeqCst) != 0)
}

/// The faulting address of the last page fault Xen delivered to vcpu 0.
pub fn cr2() -> Option<u64> {
    word(OFFSET_CR2).map(|cr2| cr2.load(Ordering::SeqCst))
}

/// Atomically clears `port`'s pending bit, returning whether it was set.
#[cfg(any(test, feature = "lab"))]
pub fn take_pending(port: EvtchnPort) -> bool {
    let Some((index, bit)) = evtchn_word_and_bit(port) else {
        return false;
    };
    word(OFFSET_EVTCHN_PENDING + index * 8)
        .is_some_and(|pending| pending.fetch_and(!(1 << bit), Ordering::SeqCst) & (1 << bit) != 0)
}

/// The 2-level event bitmaps of vcpu 0 as the event scan sees them (all zero before `map`).
pub struct SharedInfoBitmaps;

/// The word `index` of the bitmap at `offset` (pending or mask), if it exists.
fn bitmap_word(offset: usize, index: usize) -> Option<&'static AtomicU64> {
    if index >= EVTCHN_WORDS {
        return None;
    }
    word(offset + index * 8)
}

impl PendingBitmaps for SharedInfoBitmaps {
    fn take_upcall_pending(&self) -> bool {
        take_upcall_pending()
    }

    fn take_selector(&self) -> u64 {
        word(OFFSET_PENDING_SEL).map_or(0, |selector| selector.swap(0, Ordering::SeqCst))
    }

    fn pending(&self, index: usize) -> u64 {
        bitmap_word(OFFSET_EVTCHN_PENDING, index).map_or(0, |word| word.load(Ordering::SeqCst))
    }

    fn mask(&self, index: usize) -> u64 {
        // An unreadable mask word means "masked": never deliver what cannot be checked.
        bitmap_word(OFFSET_EVTCHN_MASK, index).map_or(u64::MAX, |word| word.load(Ordering::SeqCst))
    }

    fn clear_pending(&self, index: usize, bits: u64) -> u64 {
        bitmap_word(OFFSET_EVTCHN_PENDING, index)
            .map_or(0, |word| word.fetch_and(!bits, Ordering::SeqCst))
    }
}

/// A consistent copy of vcpu 0's time info (retrying while Xen updates it).
pub fn time_info() -> Option<VcpuTimeInfo> {
    if !is_mapped() {
        return None;
    }
    // SAFETY: mapped (checked); the struct lies inside vcpu_info[0].
    let source = unsafe { base().add(OFFSET_TIME).cast::<VcpuTimeInfo>() };
    loop {
        // SAFETY: as above; volatile because Xen rewrites it at any time.
        let version_before = unsafe { core::ptr::read_volatile(source.cast::<u32>()) };
        core::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: as above.
        let copy = unsafe { core::ptr::read_volatile(source) };
        core::sync::atomic::fence(Ordering::Acquire);
        // SAFETY: as above.
        let version_after = unsafe { core::ptr::read_volatile(source.cast::<u32>()) };
        if version_before % 2 == 0 && version_before == version_after {
            return Some(copy);
        }
        core::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests;
