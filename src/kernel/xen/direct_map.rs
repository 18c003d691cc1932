//! The direct map (pfn N at `KERNEL_VIRT_BASE + N * 4096`), the p2m Xen left at `mfn_list`, and Xen's read-only M2P.

use grantsvc::abi::arch_x86_64::{MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_START};
use grantsvc::addr::{Mfn, Pfn, VirtAddr, PAGE_SIZE};
use grantsvc::boot_info::{BootInfo, KERNEL_VIRT_BASE};

/// The direct-map address of `frame` (callers keep `frame` below the domain's size, which
/// `BootInfo` bounds to the 2 GiB the direct map can hold).
pub fn address_of(frame: Pfn) -> VirtAddr {
    VirtAddr::new_const(KERNEL_VIRT_BASE.wrapping_add(frame.get().wrapping_mul(PAGE_SIZE as u64)))
}

/// The domain's p2m: machine frame of each pfn, as Xen wrote it at `mfn_list`.
#[derive(Clone, Copy)]
pub struct P2m {
    entries: &'static [u64],
}

impl P2m {
    /// The p2m of the domain `boot_info` describes.
    pub fn from_boot_info(boot_info: &BootInfo) -> P2m {
        let length = usize::try_from(boot_info.nr_pages).unwrap_or(0);
        // SAFETY: BootInfo checked `mfn_list .. + nr_pages * 8` is 8-aligned and inside Xen's
        // initial mapping (its bootstrap area, never handed to the frame allocator); Xen wrote
        // it before we started and nothing writes it since: a shared 'static slice is sound.
        let entries = unsafe {
            core::slice::from_raw_parts(boot_info.mfn_list.as_u64() as *const u64, length)
        };
        P2m { entries }
    }

    /// The machine frame backing `frame` (`None` also for an entry that is no frame, such as
    /// `INVALID_P2M_ENTRY`).
    pub fn machine_frame(&self, frame: Pfn) -> Option<Mfn> {
        let index = usize::try_from(frame.get()).ok()?;
        self.entries.get(index).and_then(|&mfn| Mfn::new(mfn))
    }

    /// Pages in the domain.
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The pfn of `frame` if it is one of ours: the M2P's answer, confirmed by the p2m (the
    /// M2P holds garbage for frames of other domains).
    pub fn pseudo_physical_frame(&self, frame: Mfn) -> Option<Pfn> {
        let candidate = m2p_entry(frame)?;
        (self.machine_frame(candidate) == Some(frame)).then_some(candidate)
    }
}

/// The M2P's entry for `frame`, unconfirmed.
///
/// Xen maps the M2P read-only for every machine frame of the host; `frame` should be one of
/// ours or one a page table of ours references, as reading the entry of a frame beyond the
/// host's memory may fault.
pub fn m2p_entry(frame: Mfn) -> Option<Pfn> {
    if frame.get() >= MACH2PHYS_NR_ENTRIES {
        return None;
    }
    let entry = (MACH2PHYS_VIRT_START + frame.get() * 8) as *const u64;
    // SAFETY: inside Xen's read-only M2P (bounded above), which Xen keeps mapped in every PV
    // address space; volatile because Xen updates it when frames change owner.
    // The entry of a frame that is no one's pfn is garbage (often `INVALID_M2P_ENTRY`): None.
    Pfn::new(unsafe { core::ptr::read_volatile(entry) })
}
