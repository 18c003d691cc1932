//! The direct map (pfn N at `KERNEL_VIRT_BASE + N * 4096`), the p2m Xen left at `mfn_list`, and Xen's read-only M2P.

use grantsvc::abi::arch_x86_64::{MACH2PHYS_NR_ENTRIES, MACH2PHYS_VIRT_START};
use grantsvc::addr::{Mfn, Pfn, VirtAddr, PAGE_SIZE};
use grantsvc::boot_info::{BootInfo, KERNEL_VIRT_BASE};

/// The direct-map address of `frame` (callers keep `frame` below the domain's size, which
/// `BootInfo` bounds to the 2 GiB the direct map can hold). Arithmetic only: nothing is
/// touched.
pub(super) fn address_of(frame: Pfn) -> VirtAddr {
    VirtAddr::new_const(KERNEL_VIRT_BASE.wrapping_add(frame.get().wrapping_mul(PAGE_SIZE as u64)))
}

/// The domain's p2m: machine frame of each pfn, as Xen wrote it at `mfn_list`. There is one,
/// read once at entry (`start_of_day::p2m`); it is neither `Clone` nor made anywhere else.
pub struct P2m {
    entries: &'static [u64],
    /// Machine frames below this have an M2P entry Xen keeps mapped (Xen's `max_page`).
    m2p_frames: u64,
}

impl P2m {
    /// The p2m of the domain `boot_info` describes.
    ///
    /// # Safety
    /// 1. `boot_info` was parsed from the start_info Xen handed this domain, so that
    ///    `mfn_list .. + nr_pages * 8` is the p2m Xen wrote (BootInfo checked it is 8-aligned
    ///    and inside the initial mapping's bootstrap area).
    /// 2. Nothing writes that range or changes its mapping for the rest of the domain's life
    ///    (the frame allocator never hands out bootstrap frames).
    /// 3. `m2p_frames` is Xen's `max_page` (`XENMEM_maximum_ram_page`): the M2P entries of
    ///    frames below it are mapped read-only in every PV address space.
    pub(super) unsafe fn from_boot_info(boot_info: &BootInfo, m2p_frames: u64) -> P2m {
        let length = usize::try_from(boot_info.nr_pages()).unwrap_or(0);
        // SAFETY: by contract 1 the range is Xen's p2m, 8-aligned and mapped; by contract 2
        // it stays mapped and unwritten, so a shared 'static slice over it is sound.
        let entries = unsafe {
            core::slice::from_raw_parts(boot_info.mfn_list().as_u64() as *const u64, length)
        };
        P2m {
            entries,
            m2p_frames: m2p_frames.min(MACH2PHYS_NR_ENTRIES),
        }
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
        let candidate = self.m2p_entry(frame)?;
        (self.machine_frame(candidate) == Some(frame)).then_some(candidate)
    }

    /// The M2P's entry for `frame`, unconfirmed; `None` for a frame beyond the host's memory,
    /// whose entry Xen need not map.
    fn m2p_entry(&self, frame: Mfn) -> Option<Pfn> {
        if frame.get() >= self.m2p_frames {
            return None;
        }
        let entry = (MACH2PHYS_VIRT_START + frame.get() * 8) as *const u64;
        // SAFETY: below Xen's `max_page` and MACH2PHYS_NR_ENTRIES (checked above, contract 3
        // of `from_boot_info`), so inside the read-only M2P Xen keeps mapped in every PV
        // address space; volatile because Xen updates it when frames change owner.
        let raw = unsafe { core::ptr::read_volatile(entry) };
        // The entry of a frame that is no one's pfn is garbage (often `INVALID_M2P_ENTRY`).
        Pfn::new(raw)
    }
}
