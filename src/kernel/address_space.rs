//! The kernel's one pmap: Xen's initial page tables adopted at boot, the direct map extended to the whole domain.
//!
//! Lock order: the pmap lock may take the frame allocator's lock (page-table pages come from
//! it), never the other way round; and a `GrantMapping` is never dropped while the pmap lock
//! is held (its drop takes the lock).

use super::frames;
use super::xen::xen_hypervisor::{adopt_address_space, AdoptError, XenHypervisor};
use super::xen::{sched, time};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};
use grantsvc::addr::Pfn;
use grantsvc::boot_info::BootInfo;
use grantsvc::frame_alloc::FrameAllocator;
use grantsvc::pmap::{Pmap, PmapError};

/// The kernel's frame allocator, as the pmap's source of page-table pages.
pub struct KernelFrames;

impl FrameAllocator for KernelFrames {
    fn allocate(&mut self) -> Option<Pfn> {
        frames::with_frames(|frames| frames.allocate()).flatten()
    }

    fn free(&mut self, frame: Pfn) {
        if frames::with_frames(|frames| frames.free(frame)).is_none() {
            log::error!("pmap: freeing pfn {frame} before the frame allocator exists");
        }
    }
}

/// The pmap type the kernel runs.
pub type KernelPmap = Pmap<XenHypervisor, KernelFrames>;

static PMAP: spin::Once<spin::Mutex<KernelPmap>> = spin::Once::new();
static DIRECT_MAP_COMPLETE: AtomicBool = AtomicBool::new(false);

/// What boot did to the address space, for the log.
#[derive(Clone, Copy, Debug)]
pub struct Adopted {
    pub adopted_tables: u64,
    pub pages_added: u64,
    pub tables_added: u64,
}

/// Why the pmap could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum AddressSpaceError {
    /// Adopting Xen's tree failed (or ran before).
    Adopt(AdoptError),
    /// Extending the direct map failed.
    Pmap(PmapError),
}

impl core::fmt::Display for AddressSpaceError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AddressSpaceError::Adopt(error) => write!(formatter, "{error}"),
            AddressSpaceError::Pmap(error) => write!(formatter, "{error}"),
        }
    }
}

/// Adopts the tree Xen started us with (its L4 is at `pt_base`) and maps every pfn of the
/// domain at its direct-map address. Needs the frame allocator.
pub fn initialise(boot_info: &BootInfo) -> Result<Adopted, AddressSpaceError> {
    // Works once: the hypervisor interface hands out its one pmap a single time.
    let mut pmap = adopt_address_space(KernelFrames).map_err(AddressSpaceError::Adopt)?;
    let adopted_tables = pmap.stats().page_table_pages;
    // Frames come lowest-first, so each new page table lies in memory already mapped.
    let pages_added = pmap
        .extend_direct_map(Pfn::default(), boot_info.nr_pages())
        .map_err(AddressSpaceError::Pmap)?;
    let tables_added = pmap.stats().page_table_pages - adopted_tables;
    pmap.set_eagain_backoff(Box::new(wait_milliseconds));
    PMAP.call_once(|| spin::Mutex::new(pmap));
    DIRECT_MAP_COMPLETE.store(true, Ordering::Release);
    Ok(Adopted {
        adopted_tables,
        pages_added,
        tables_added,
    })
}

/// The kernel's pmap, once `initialise` succeeded.
pub fn pmap() -> Option<&'static spin::Mutex<KernelPmap>> {
    PMAP.get()
}

/// True once every pfn of the domain is mapped at its direct-map address.
#[cfg(feature = "lab")]
pub fn direct_map_complete() -> bool {
    DIRECT_MAP_COMPLETE.load(Ordering::Acquire)
}

/// The `GNTST_eagain` backoff: `attempt` milliseconds, yielding the cpu meanwhile.
fn wait_milliseconds(attempt: u32) {
    let Some(start) = time::system_time_ns() else {
        sched::yield_now();
        return;
    };
    let until = start.saturating_add(u64::from(attempt) * 1_000_000);
    while time::system_time_ns().is_some_and(|now| now < until) {
        sched::yield_now();
    }
}
