//! The kernel's one pmap: Xen's initial page tables adopted at boot, the direct map extended to the whole domain, handed to the `Kernel` value.
//!
//! The pmap owns the frame allocator its page tables come from, so no other code can allocate
//! or free those frames (the lab's own pages borrow frames from it as owned tokens). Lock
//! order: a `GrantMapping` is never dropped while the pmap lock is held (its drop takes the
//! lock).

use super::xen::xen_hypervisor::{adopt_address_space, AdoptError, XenHypervisor};
use super::xen::{sched, time};
use alloc::boxed::Box;
use grantsvc::addr::Pfn;
use grantsvc::boot_info::BootInfo;
use grantsvc::frame_alloc::BitmapFrameAllocator;
use grantsvc::pmap::{Pmap, PmapError};

/// The pmap type the kernel runs.
pub type KernelPmap = Pmap<XenHypervisor, BitmapFrameAllocator>;

/// The kernel's one pmap, shared by whoever holds a mapping of it.
pub type PmapHandle = &'static spin::Mutex<KernelPmap>;
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

/// Adopts the tree Xen started us with (its L4 is at `pt_base`), with `frames` as the source of
/// page-table pages, and maps every pfn of the domain at its direct-map address.
pub fn initialise(
    boot_info: &BootInfo,
    frames: BitmapFrameAllocator,
) -> Result<(PmapHandle, Adopted), AddressSpaceError> {
    // Works once: the hypervisor interface hands out its one pmap a single time.
    let mut pmap = adopt_address_space(frames).map_err(AddressSpaceError::Adopt)?;
    let adopted_tables = pmap.stats().page_table_pages;
    // Frames come lowest-first, so each new page table lies in memory already mapped.
    let pages_added = pmap
        .extend_direct_map(Pfn::default(), boot_info.nr_pages())
        .map_err(AddressSpaceError::Pmap)?;
    let tables_added = pmap.stats().page_table_pages - adopted_tables;
    pmap.set_eagain_backoff(Box::new(wait_milliseconds));
    // Lives as long as the domain; made once (adoption above succeeds once).
    let handle: PmapHandle = Box::leak(Box::new(spin::Mutex::new(pmap)));
    let adopted = Adopted {
        adopted_tables,
        pages_added,
        tables_added,
    };
    Ok((handle, adopted))
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
