//! The hypervisor interface the target-independent core is written against: real Xen in the kernel, a simulation on the host.
//!
//! Each method is one hypercall with Xen's semantics. Batches go in as slices so that an
//! implementation issues one hypercall per call (splitting only where Xen needs it).

use crate::abi::grant_table::{GnttabMapGrantRef, GnttabUnmapGrantRef};
use crate::abi::mmu::{MmuUpdate, MmuextOp};
use crate::addr::{Mfn, Pfn, VirtAddr};
use crate::ids::DomId;
use core::fmt;

/// A negative errno a hypercall returned (Xen's `-XEN_E*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    pub const EPERM: XenError = XenError(-1);
    pub const ENOENT: XenError = XenError(-2);
    pub const ESRCH: XenError = XenError(-3);
    pub const EAGAIN: XenError = XenError(-11);
    pub const ENOMEM: XenError = XenError(-12);
    pub const EFAULT: XenError = XenError(-14);
    pub const EBUSY: XenError = XenError(-16);
    pub const EINVAL: XenError = XenError(-22);
    pub const ENOSPC: XenError = XenError(-28);
    pub const ENOSYS: XenError = XenError(-38);

    /// `Ok(returned)` for a non-negative hypercall return value, the error otherwise.
    pub const fn check(returned: i64) -> Result<u64, XenError> {
        if returned < 0 {
            Err(XenError(returned))
        } else {
            Ok(returned as u64)
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            XenError::EPERM => "EPERM",
            XenError::ENOENT => "ENOENT",
            XenError::ESRCH => "ESRCH",
            XenError::EAGAIN => "EAGAIN",
            XenError::ENOMEM => "ENOMEM",
            XenError::EFAULT => "EFAULT",
            XenError::EBUSY => "EBUSY",
            XenError::EINVAL => "EINVAL",
            XenError::ENOSPC => "ENOSPC",
            XenError::ENOSYS => "ENOSYS",
            _ => return write!(formatter, "Xen error {}", self.0),
        };
        write!(formatter, "{name} ({})", self.0)
    }
}

/// The MMU and grant-table hypercalls the pmap needs, plus the frame-number translations a PV guest keeps.
///
/// # Soundness: a value is a capability
/// The methods are safe so that the pmap, which denies `unsafe`, can drive the MMU; so they
/// can rewrite any page table, map grants anywhere, zero frames and (with `VirtualMemory`)
/// touch any address. What makes that sound is who holds a value, not the trait:
/// - a real implementation (the kernel's `XenHypervisor`) is made in exactly one place, once,
///   and moved straight into the kernel's [`Pmap`](crate::pmap::Pmap), which is then the
///   sole owner of the page tables and of the VA it maps;
/// - the pmap never hands the value out in production (`Pmap::hypervisor` and
///   `hypervisor_mut` exist only for tests and the simulation), calls `zero_frame` only for
///   frames its allocator just gave it, and its safe API changes only the chosen-VA region,
///   never the direct map.
///
/// An implementation that touches real memory must keep its constructor private to the
/// hypervisor-interface layer in the same way (see `src/kernel/xen/mod.rs`).
pub trait Hypervisor {
    /// `HYPERVISOR_mmu_update`: applies `updates` in order with `foreign` as the owner of the data
    /// frames they reference. On error, returns how many were done before the failing one.
    fn mmu_update(&mut self, updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError>;

    /// `HYPERVISOR_mmuext_op`: pins, unpins, TLB flushes.
    fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<(), XenError>;

    /// `GNTTABOP_map_grant_ref` on a batch: the return is the hypercall's; each op's `status`,
    /// `handle` and `dev_bus_addr` are filled in by the hypervisor.
    fn grant_map(&mut self, ops: &mut [GnttabMapGrantRef]) -> Result<(), XenError>;

    /// `GNTTABOP_unmap_grant_ref` on a batch: each op's `status` is filled in.
    fn grant_unmap(&mut self, ops: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError>;

    /// Reads entry `index` of the page-table page in pseudo-physical frame `table` (page tables
    /// are readable by the guest, only writes go through Xen).
    fn read_pte(&self, table: Pfn, index: usize) -> u64;

    /// Fills a frame of ours with zeroes through its writable direct-map mapping. The pmap
    /// calls it only for a frame its allocator just handed it, before the frame becomes a
    /// page table; the kernel's implementation also refuses frames outside the allocator's
    /// range (image, heap, stacks, Xen's bootstrap area).
    fn zero_frame(&mut self, frame: Pfn);

    /// The p2m: the machine frame backing pseudo-physical frame `frame`.
    fn pfn_to_mfn(&self, frame: Pfn) -> Option<Mfn>;

    /// The M2P: the pseudo-physical frame of one of our machine frames, `None` for frames not ours.
    fn mfn_to_pfn(&self, frame: Mfn) -> Option<Pfn>;
}

/// A failed `mmu_update`: Xen's error and how many requests it completed before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuUpdateError {
    pub error: XenError,
    pub done: usize,
}

impl fmt::Display for MmuUpdateError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "mmu_update failed with {} after {} request(s)",
            self.error, self.done
        )
    }
}

/// A load or store through a virtual address that is not mapped with the access it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryFault {
    /// The first address of the refused access.
    pub address: VirtAddr,
    /// True for a write, false for a read.
    pub write: bool,
}

impl fmt::Display for MemoryFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.write { "write" } else { "read" };
        write!(formatter, "{kind} fault at {}", self.address)
    }
}

/// Loads and stores through this domain's own virtual mappings: raw pointers in the kernel, a
/// walk of the simulated page tables on the host.
///
/// Contract: callers touch only addresses the pmap has mapped and keep the pmap borrowed while
/// they do, so the kernel may dereference the address directly. The callers are the pmap's
/// own `GrantMapping` guard and `Pmap::read_mapped` / `write_mapped`, which check each page
/// first; the implementing value never leaves the pmap in production (see [`Hypervisor`]).
/// Each call is a single access of the shared bytes (no double fetch).
pub trait VirtualMemory {
    /// Copies `into.len()` bytes starting at `address`.
    fn read_virtual(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault>;
    /// Copies `from` to memory starting at `address`.
    fn write_virtual(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault>;
    /// One atomic 32-bit load with acquire ordering (`address` 4-byte aligned).
    fn load_u32_virtual(&self, address: VirtAddr) -> Result<u32, MemoryFault>;
    /// One atomic 32-bit store with release ordering (`address` 4-byte aligned).
    fn store_u32_virtual(&mut self, address: VirtAddr, value: u32) -> Result<(), MemoryFault>;
    /// Atomically applies `operation` to the byte at `address`, returning its previous value.
    fn update_u8_virtual(
        &mut self,
        address: VirtAddr,
        operation: ByteUpdate,
    ) -> Result<u8, MemoryFault>;
}

/// An atomic read-modify-write of one byte (acquire-release ordering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteUpdate {
    /// Load only.
    Load,
    /// Store the value.
    Store(u8),
    /// OR the bits in.
    Or(u8),
    /// AND the bits in.
    And(u8),
}
