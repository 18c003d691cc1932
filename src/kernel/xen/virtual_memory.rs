//! `VirtualMemory` for the kernel: loads and stores through the live page tables with raw, volatile and atomic accesses.
//!
//! The trait's contract (src/hypervisor.rs) makes the caller, the pmap's grant-mapping guard,
//! responsible for touching only addresses it has mapped while it holds the pmap lock; this
//! side only refuses what it can see is wrong: ranges that wrap or leave the canonical half,
//! and misaligned words.

use super::hypervisor::XenHypervisor;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use grantsvc::addr::VirtAddr;
use grantsvc::hypervisor::{ByteUpdate, MemoryFault, VirtualMemory};

/// The kernel's own address space.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelVirtualMemory;

/// The address of a `length`-byte access at `address`, if the whole range is canonical.
fn range(address: VirtAddr, length: usize, write: bool) -> Result<*mut u8, MemoryFault> {
    let last = (length.max(1) - 1) as u64;
    address
        .checked_add(last)
        .map(|_| address.as_u64() as *mut u8)
        .ok_or(MemoryFault { address, write })
}

/// The address of an aligned `size`-byte word at `address`.
fn aligned(address: VirtAddr, size: u64, write: bool) -> Result<*mut u8, MemoryFault> {
    if address.as_u64() % size != 0 {
        return Err(MemoryFault { address, write });
    }
    range(address, size as usize, write)
}

impl VirtualMemory for KernelVirtualMemory {
    fn read_virtual(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault> {
        let source = range(address, into.len(), false)?;
        for (index, slot) in into.iter_mut().enumerate() {
            // SAFETY: the trait's contract: the caller holds the pmap lock and the range is
            // mapped readable; volatile because a peer may write the page at any moment.
            *slot = unsafe { core::ptr::read_volatile(source.add(index)) };
        }
        Ok(())
    }

    fn write_virtual(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault> {
        let destination = range(address, from.len(), true)?;
        for (index, &byte) in from.iter().enumerate() {
            // SAFETY: the trait's contract: mapped writable while the caller holds the pmap lock.
            unsafe { core::ptr::write_volatile(destination.add(index), byte) };
        }
        Ok(())
    }

    fn load_u32_virtual(&self, address: VirtAddr) -> Result<u32, MemoryFault> {
        let word = aligned(address, 4, false)?;
        // SAFETY: mapped (the contract) and 4-aligned (checked); accessed atomically only.
        Ok(unsafe { AtomicU32::from_ptr(word.cast::<u32>()) }.load(Ordering::Acquire))
    }

    fn store_u32_virtual(&mut self, address: VirtAddr, value: u32) -> Result<(), MemoryFault> {
        let word = aligned(address, 4, true)?;
        // SAFETY: mapped writable (the contract) and 4-aligned (checked).
        unsafe { AtomicU32::from_ptr(word.cast::<u32>()) }.store(value, Ordering::Release);
        Ok(())
    }

    fn update_u8_virtual(
        &mut self,
        address: VirtAddr,
        operation: ByteUpdate,
    ) -> Result<u8, MemoryFault> {
        let write = !matches!(operation, ByteUpdate::Load);
        let pointer = range(address, 1, write)?;
        // SAFETY: mapped with the access the operation needs (the contract); atomic only.
        let byte = unsafe { AtomicU8::from_ptr(pointer) };
        Ok(match operation {
            ByteUpdate::Load => byte.load(Ordering::Acquire),
            ByteUpdate::Store(value) => byte.swap(value, Ordering::AcqRel),
            ByteUpdate::Or(bits) => byte.fetch_or(bits, Ordering::AcqRel),
            ByteUpdate::And(bits) => byte.fetch_and(bits, Ordering::AcqRel),
        })
    }
}

/// The kernel's pmap holds a `XenHypervisor`; its grant mappings reach their bytes through it.
impl VirtualMemory for XenHypervisor {
    fn read_virtual(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault> {
        KernelVirtualMemory.read_virtual(address, into)
    }

    fn write_virtual(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault> {
        KernelVirtualMemory.write_virtual(address, from)
    }

    fn load_u32_virtual(&self, address: VirtAddr) -> Result<u32, MemoryFault> {
        KernelVirtualMemory.load_u32_virtual(address)
    }

    fn store_u32_virtual(&mut self, address: VirtAddr, value: u32) -> Result<(), MemoryFault> {
        KernelVirtualMemory.store_u32_virtual(address, value)
    }

    fn update_u8_virtual(
        &mut self,
        address: VirtAddr,
        operation: ByteUpdate,
    ) -> Result<u8, MemoryFault> {
        KernelVirtualMemory.update_u8_virtual(address, operation)
    }
}
