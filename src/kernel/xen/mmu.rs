//! The PV MMU hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping`, each an `unsafe fn`.
//!
//! Xen validates every page-table write (a PV guest cannot map a frame it does not own or a
//! page table writable), but it cannot know what Rust code relies on: any of these calls can
//! unmap the kernel's stack or heap, map a frame a second time, or unpin a live table. Their
//! callers are the pmap's `XenHypervisor` (through the `Hypervisor` capability it alone
//! holds), the one-time shared-info mapping, and boot's stack guard.

use super::hypercall::{hypercall3, hypercall4};
use grantsvc::abi::hypercall_numbers::{MMUEXT_OP, MMU_UPDATE, UPDATE_VA_MAPPING};
use grantsvc::abi::mmu::{MmuUpdate, MmuextOp};
use grantsvc::addr::VirtAddr;
use grantsvc::hypervisor::{MmuUpdateError, XenError};
use grantsvc::ids::DomId;

/// Applies `updates` in order, with `foreign` owning the data frames they map. On failure,
/// reports how many Xen completed.
///
/// # Safety
/// 1. Every PTE an update writes belongs to a page table whose owner (the pmap) made the
///    update, and the virtual page it translates is not memory that Rust code owns or
///    references outside that owner (the direct map, the kernel image, heap and stacks).
/// 2. A frame mapped writable is not at the same time used by Rust code through another
///    mapping, except as shared memory reached only with volatile or atomic accesses.
pub unsafe fn mmu_update(updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError> {
    if updates.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(updates.len()).map_err(|_| MmuUpdateError {
        error: XenError::EINVAL,
        done: 0,
    })?;
    let mut done: u32 = 0;
    // SAFETY: Xen reads `count` mmu_update structs from the slice and writes the done count
    // to a u32 on our stack (contract 1 of `hypercall5`); the page-table effects are the
    // caller's to justify (this function's contract, which is contract 2 of `hypercall5`).
    let result = unsafe {
        hypercall4(
            MMU_UPDATE,
            updates.as_ptr() as u64,
            u64::from(count),
            core::ptr::addr_of_mut!(done) as u64,
            u64::from(foreign.get()),
        )
    };
    XenError::check(result)
        .map(|_| ())
        .map_err(|error| MmuUpdateError {
            error,
            done: done as usize,
        })
}

/// Runs `operations` (pins, unpins, TLB flushes) for our own domain.
///
/// # Safety
/// 1. An unpin only of a table that its owner (the pmap) has unhooked from the tree, and a
///    pin only of a table it owns.
/// 2. Flushes are always harmless; any other extended operation is justified by the caller
///    as for [`mmu_update`].
pub unsafe fn mmuext_op(operations: &[MmuextOp]) -> Result<(), XenError> {
    if operations.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(operations.len()).map_err(|_| XenError::EINVAL)?;
    let mut done: u32 = 0;
    // SAFETY: Xen reads `count` mmuext_op structs from the slice and writes a u32 on our
    // stack; the effects are the caller's to justify (this function's contract).
    let result = unsafe {
        hypercall4(
            MMUEXT_OP,
            operations.as_ptr() as u64,
            u64::from(count),
            core::ptr::addr_of_mut!(done) as u64,
            u64::from(DomId::SELF.get()),
        )
    };
    XenError::check(result).map(|_| ())
}

/// Sets the L1 entry that maps `address` to `entry` (a machine address with PTE flags), then
/// flushes as `flags` says (`UVMF_*`).
///
/// # Safety
/// 1. Nothing that Rust code owns or references lives at `address` any more (or, for a
///    mapping being made, the page there has no Rust owner that the new frame would
///    replace under it).
/// 2. The frame `entry` names, if present, is not used by Rust code through another mapping
///    except as shared memory reached only with volatile or atomic accesses.
pub unsafe fn update_va_mapping(address: VirtAddr, entry: u64, flags: u64) -> Result<(), XenError> {
    // SAFETY: no pointer is passed; Xen checks the new entry against the domain's frames,
    // and the caller vouches that the change is harmless to Rust code (this function's
    // contract).
    let result = unsafe { hypercall3(UPDATE_VA_MAPPING, address.as_u64(), entry, flags) };
    XenError::check(result).map(|_| ())
}

#[cfg(test)]
mod tests;
