//! The boot facts, recorded once from the start_info Xen handed us at entry: the one `BootInfo` and the p2m read from it.
//!
//! Everything in this layer that builds a slice or a mapping from boot facts (the p2m, the
//! ring pages, shared_info, the pmap's hypervisor) takes them from here, never from a
//! caller's `BootInfo`: a `BootInfo` anyone else makes (`BootInfo::from_start_info` is
//! public, for host tests) reaches no memory.

use super::direct_map::P2m;
use super::hypercall::hypercall2;
use grantsvc::abi::hypercall_numbers::{MEMORY_OP, XENMEM_MAXIMUM_RAM_PAGE};
use grantsvc::abi::start_info::StartInfo;
use grantsvc::boot_info::{BootInfo, BootInfoError};

/// The recorded facts.
struct StartOfDay {
    boot_info: BootInfo,
    p2m: P2m,
}

static START_OF_DAY: spin::Once<StartOfDay> = spin::Once::new();

/// Checks and records Xen's start_info and reads the p2m it names. Later calls parse nothing
/// and return the first record.
///
/// # Safety
/// 1. `raw` is a copy of the start_info page Xen handed this domain at entry, and
///    `start_info_address` is where that page lay (`rsi` at entry).
/// 2. Nothing has written Xen's bootstrap area since entry (the p2m at `mfn_list` in
///    particular) and nothing will: the frame allocator manages only frames from
///    `first_free_pfn` on, and no mapping of the bootstrap area is changed.
pub unsafe fn record(
    raw: &StartInfo,
    start_info_address: u64,
) -> Result<&'static BootInfo, BootInfoError> {
    if let Some(recorded) = START_OF_DAY.get() {
        return Ok(&recorded.boot_info);
    }
    let boot_info = BootInfo::from_start_info(raw, start_info_address)?;
    // SAFETY: XENMEM_maximum_ram_page takes no pointer and changes nothing.
    let max_page = unsafe { hypercall2(MEMORY_OP, u64::from(XENMEM_MAXIMUM_RAM_PAGE), 0) };
    // A refusal leaves no M2P entry readable: every translation back fails, and boot says
    // so when the pmap cannot find its root.
    let m2p_frames = u64::try_from(max_page).unwrap_or(0);
    // SAFETY: `boot_info` is Xen's own (contract 1), so its p2m is the one Xen wrote (BootInfo
    // checked it 8-aligned in the bootstrap area), unwritten for good (contract 2); `m2p_frames`
    // is Xen's own `max_page`.
    let p2m = unsafe { P2m::from_boot_info(&boot_info, m2p_frames) };
    let recorded = START_OF_DAY.call_once(|| StartOfDay { boot_info, p2m });
    Ok(&recorded.boot_info)
}

/// The recorded boot facts, once [`record`] succeeded.
pub fn boot_info() -> Option<&'static BootInfo> {
    START_OF_DAY.get().map(|recorded| &recorded.boot_info)
}

/// The domain's p2m, read once from the recorded start_info.
pub fn p2m() -> Option<&'static P2m> {
    START_OF_DAY.get().map(|recorded| &recorded.p2m)
}
