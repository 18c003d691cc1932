//! `VirtualMemory` for the kernel: loads and stores through the live page tables with raw, volatile and atomic accesses (bulk copies a word at a time).
//!
//! There is no free-standing way in: the only implementor is the one `XenHypervisor`, which
//! lives inside the kernel's pmap (see `hypervisor.rs`), so the callers are the pmap's
//! `GrantMapping` guard and its `read_mapped` / `write_mapped`, which check that every page
//! is one the pmap mapped, with the access needed, while they hold the pmap. This side only
//! refuses what it can see is wrong: ranges that wrap or leave the canonical half, and
//! misaligned words.

use super::xen_hypervisor::XenHypervisor;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use grantsvc::addr::VirtAddr;
use grantsvc::hypervisor::{ByteUpdate, MemoryFault, VirtualMemory};

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

/// Bytes per word of a bulk copy.
const WORD: usize = core::mem::size_of::<u64>();

/// A copy of `length` bytes at `address` as (bytes before the first 8-aligned address, whole
/// words, bytes after them).
fn word_split(address: usize, length: usize) -> (usize, usize, usize) {
    let head = address.wrapping_neg() % WORD;
    if head >= length {
        return (length, 0, 0);
    }
    let words = (length - head) / WORD;
    (head, words, length - head - words * WORD)
}

/// The kernel's pmap holds the one `XenHypervisor`; its grant mappings (and its checked
/// `read_mapped` / `write_mapped`) reach their bytes through it, and nothing else can.
impl VirtualMemory for XenHypervisor {
    fn read_virtual(&self, address: VirtAddr, into: &mut [u8]) -> Result<(), MemoryFault> {
        let source = range(address, into.len(), false)?;
        let (head, words, tail) = word_split(source as usize, into.len());
        let (head_bytes, rest) = into.split_at_mut(head);
        let (word_bytes, tail_bytes) = rest.split_at_mut(words * WORD);
        for (index, slot) in head_bytes.iter_mut().enumerate() {
            // SAFETY: only the pmap calls this, holding itself borrowed, for pages it
            // checked it mapped readable; volatile because a peer may write the page at any moment.
            *slot = unsafe { core::ptr::read_volatile(source.add(index)) };
        }
        for (index, slot) in word_bytes.chunks_exact_mut(WORD).enumerate() {
            // SAFETY: as above, inside the checked range, and 8-aligned (word_split): one
            // volatile load per word, an eighth of the emulated accesses of a byte loop.
            let word =
                unsafe { core::ptr::read_volatile(source.add(head + index * WORD).cast::<u64>()) };
            slot.copy_from_slice(&word.to_ne_bytes());
        }
        let tail_start = head + words * WORD;
        for (index, slot) in tail_bytes.iter_mut().enumerate().take(tail) {
            // SAFETY: as above, the last bytes of the checked range.
            *slot = unsafe { core::ptr::read_volatile(source.add(tail_start + index)) };
        }
        Ok(())
    }

    fn write_virtual(&mut self, address: VirtAddr, from: &[u8]) -> Result<(), MemoryFault> {
        let destination = range(address, from.len(), true)?;
        let (head, words, tail) = word_split(destination as usize, from.len());
        let (head_bytes, rest) = from.split_at(head);
        let (word_bytes, tail_bytes) = rest.split_at(words * WORD);
        for (index, &byte) in head_bytes.iter().enumerate() {
            // SAFETY: only the pmap calls this, holding itself borrowed, for pages it
            // checked it mapped writable.
            unsafe { core::ptr::write_volatile(destination.add(index), byte) };
        }
        for (index, chunk) in word_bytes.chunks_exact(WORD).enumerate() {
            let mut bytes = [0; WORD];
            bytes.copy_from_slice(chunk);
            // SAFETY: as above, inside the checked range, and 8-aligned (word_split).
            unsafe {
                core::ptr::write_volatile(
                    destination.add(head + index * WORD).cast::<u64>(),
                    u64::from_ne_bytes(bytes),
                )
            };
        }
        let tail_start = head + words * WORD;
        for (index, &byte) in tail_bytes.iter().enumerate().take(tail) {
            // SAFETY: as above, the last bytes of the checked range.
            unsafe { core::ptr::write_volatile(destination.add(tail_start + index), byte) };
        }
        Ok(())
    }

    fn load_u32_virtual(&self, address: VirtAddr) -> Result<u32, MemoryFault> {
        let word = aligned(address, 4, false)?;
        // SAFETY: mapped (the pmap checked it) and 4-aligned (checked); accessed atomically only.
        Ok(unsafe { AtomicU32::from_ptr(word.cast::<u32>()) }.load(Ordering::Acquire))
    }

    fn store_u32_virtual(&mut self, address: VirtAddr, value: u32) -> Result<(), MemoryFault> {
        let word = aligned(address, 4, true)?;
        // SAFETY: mapped writable (the pmap checked it) and 4-aligned (checked).
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
        // SAFETY: mapped with the access the operation needs (the pmap checked it); atomic only.
        let byte = unsafe { AtomicU8::from_ptr(pointer) };
        Ok(match operation {
            ByteUpdate::Load => byte.load(Ordering::Acquire),
            ByteUpdate::Store(value) => byte.swap(value, Ordering::AcqRel),
            ByteUpdate::Or(bits) => byte.fetch_or(bits, Ordering::AcqRel),
            ByteUpdate::And(bits) => byte.fetch_and(bits, Ordering::AcqRel),
        })
    }
}
