//! `SharedMemory` over a mapped kernel VA range that another domain (or Xen) also writes: volatile copies, atomic words.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};

/// A mapped range of shared bytes. Every access is bounds-checked and reads the shared bytes
/// exactly once.
#[derive(Debug)]
pub struct SharedRegion {
    base: *mut u8,
    size: usize,
}

// SAFETY: the region is plain memory reached only through volatile and atomic accesses, which
// are sound from any context; the kernel has one vcpu.
unsafe impl Send for SharedRegion {}
// SAFETY: as above: no method hands out references to the bytes.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// A region of `size` bytes at `base`.
    ///
    /// # Safety
    /// 1. `base .. base + size` stays mapped, readable and writable for as long as the region
    ///    lives.
    /// 2. `base` is 8-byte aligned.
    /// 3. No Rust reference covers those bytes: everything else reaches them, if at all, only
    ///    with volatile or atomic accesses (another domain or Xen may write them any time).
    pub unsafe fn new(base: *mut u8, size: usize) -> SharedRegion {
        debug_assert!(base as usize % 8 == 0);
        SharedRegion { base, size }
    }

    /// A pointer `offset` bytes in, after checking `length` bytes fit.
    fn at(&self, offset: usize, length: usize) -> Result<*mut u8, OutOfBounds> {
        check_bounds(offset, length, self.size)?;
        // SAFETY: offset + length <= size, so the pointer stays inside the region.
        Ok(unsafe { self.base.add(offset) })
    }

    /// The atomic u32 at `offset`, which must be 4-aligned.
    fn word(&self, offset: usize) -> Result<&AtomicU32, OutOfBounds> {
        let pointer = self.at(offset, 4)?;
        if offset % 4 != 0 {
            return Err(OutOfBounds {
                offset,
                length: 4,
                size: self.size,
            });
        }
        // SAFETY: in bounds and 4-aligned (base is 8-aligned); the bytes are only accessed
        // atomically or volatilely, never through a plain reference.
        Ok(unsafe { AtomicU32::from_ptr(pointer.cast::<u32>()) })
    }

    /// The atomic byte at `offset`.
    fn byte(&self, offset: usize) -> Result<&AtomicU8, OutOfBounds> {
        let pointer = self.at(offset, 1)?;
        // SAFETY: in bounds; accessed atomically only.
        Ok(unsafe { AtomicU8::from_ptr(pointer) })
    }
}

impl SharedMemory for SharedRegion {
    fn size(&self) -> usize {
        self.size
    }

    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        let source = self.at(offset, into.len())?;
        for (index, slot) in into.iter_mut().enumerate() {
            // SAFETY: `source .. source + into.len()` is inside the region (checked by `at`).
            *slot = unsafe { core::ptr::read_volatile(source.add(index)) };
        }
        Ok(())
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        let destination = self.at(offset, from.len())?;
        for (index, &byte) in from.iter().enumerate() {
            // SAFETY: inside the region (checked by `at`).
            unsafe { core::ptr::write_volatile(destination.add(index), byte) };
        }
        Ok(())
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        Ok(self.word(offset)?.load(Ordering::Acquire))
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.word(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        Ok(self.byte(offset)?.load(Ordering::Acquire))
    }

    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.byte(offset)?.store(value, Ordering::Release);
        Ok(())
    }

    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        Ok(self.byte(offset)?.fetch_or(bits, Ordering::AcqRel))
    }

    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        Ok(self.byte(offset)?.fetch_and(bits, Ordering::AcqRel))
    }
}

#[cfg(test)]
mod tests;
