//! The PV MMU hypercalls: `mmu_update`, `mmuext_op`, `update_va_mapping`.

use super::hypercall::{hypercall3, hypercall4};
use grantsvc::abi::hypercall_numbers::{MMUEXT_OP, MMU_UPDATE, UPDATE_VA_MAPPING};
use grantsvc::abi::mmu::{MmuUpdate, MmuextOp};
use grantsvc::addr::VirtAddr;
use grantsvc::hypervisor::{MmuUpdateError, XenError};
use grantsvc::ids::DomId;

/// Applies `updates` in order, with `foreign` owning the data frames they map. On failure,
/// reports how many Xen completed.
pub fn mmu_update(updates: &[MmuUpdate], foreign: DomId) -> Result<(), MmuUpdateError> {
    if updates.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(updates.len()).map_err(|_| MmuUpdateError {
        error: XenError::EINVAL,
        done: 0,
    })?;
    let mut done: u32 = 0;
    // SAFETY: Xen reads `count` mmu_update structs from the slice and writes the done count
    // to a u32 on our stack; the page-table effects are Xen-validated.
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
pub fn mmuext_op(operations: &[MmuextOp]) -> Result<(), XenError> {
    if operations.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(operations.len()).map_err(|_| XenError::EINVAL)?;
    let mut done: u32 = 0;
    // SAFETY: Xen reads `count` mmuext_op structs from the slice and writes a u32 on our stack.
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
/// Xen validates the entry, so this cannot map a frame we do not own or a page table
/// writable; it can unmap or remap our own memory, which is why the callers are few and
/// each says what it replaces.
pub fn update_va_mapping(address: VirtAddr, entry: u64, flags: u64) -> Result<(), XenError> {
    // SAFETY: no pointer is passed; Xen checks the new entry against the domain's frames.
    let result = unsafe { hypercall3(UPDATE_VA_MAPPING, address.as_u64(), entry, flags) };
    XenError::check(result).map(|_| ())
}
