//! Pages of our own memory taken from the frame allocator, read and written through the direct map (for self-granting until peers exist).
//!
//! The bytes may also be reached through a grant or foreign mapping of the same frame, so
//! every access is volatile and no Rust reference to them is ever made.

use super::direct_map::address_of;
use super::start_of_day;
use crate::kernel::{address_space, memory};
use alloc::vec::Vec;
use grantsvc::addr::{Mfn, Pfn, PAGE_SIZE};
use grantsvc::frame_alloc::FrameAllocator;
use grantsvc::shared_memory::{check_bounds, OutOfBounds};

/// Frames allocated for the holder alone; given back on drop. The holder ends every grant or
/// foreign mapping of them first (the scenarios check that with the grant flags).
pub struct OwnPages {
    frames: Vec<(Pfn, Mfn)>,
}

impl OwnPages {
    /// `count` free frames of ours, or `None` when memory runs out or the direct map does
    /// not yet cover the whole domain (the pmap extends it at boot).
    pub fn allocate(count: usize) -> Option<OwnPages> {
        if !address_space::direct_map_complete() {
            return None;
        }
        let p2m = start_of_day::p2m()?;
        let mut pages = OwnPages {
            frames: Vec::with_capacity(count),
        };
        for _ in 0..count {
            let frame = memory::with_frames(|frames| frames.allocate()).flatten()?;
            let Some(machine) = p2m.machine_frame(frame) else {
                memory::with_frames(|frames| frames.free(frame));
                return None;
            };
            pages.frames.push((frame, machine));
        }
        Some(pages)
    }

    /// How many pages.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Page `index`'s pseudo-physical frame.
    pub fn pfn(&self, index: usize) -> Option<Pfn> {
        self.frames.get(index).map(|&(frame, _)| frame)
    }

    /// Page `index`'s machine frame.
    pub fn mfn(&self, index: usize) -> Option<Mfn> {
        self.frames.get(index).map(|&(_, machine)| machine)
    }

    /// The direct-map address of byte `offset` of page `index`, `length` bytes checked.
    fn at(&self, index: usize, offset: usize, length: usize) -> Result<*mut u8, OutOfBounds> {
        check_bounds(offset, length, PAGE_SIZE)?;
        let frame = self.pfn(index).ok_or(OutOfBounds {
            offset: index.saturating_mul(PAGE_SIZE),
            length,
            size: self.len() * PAGE_SIZE,
        })?;
        Ok((address_of(frame).as_u64() + offset as u64) as *mut u8)
    }

    /// Copies `from` into page `index` at `offset`.
    pub fn write(&self, index: usize, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        let destination = self.at(index, offset, from.len())?;
        for (position, &byte) in from.iter().enumerate() {
            // SAFETY: the frame is allocated to us alone and mapped read-write by the direct
            // map, which covers the whole domain (checked at allocation); the write stays in
            // the page (bounds checked by `at`).
            unsafe { core::ptr::write_volatile(destination.add(position), byte) };
        }
        Ok(())
    }

    /// Copies bytes of page `index` at `offset` into `into`.
    pub fn read(&self, index: usize, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        let source = self.at(index, offset, into.len())?;
        for (position, slot) in into.iter_mut().enumerate() {
            // SAFETY: as in `write`; volatile because a grant mapping may change the bytes.
            *slot = unsafe { core::ptr::read_volatile(source.add(position)) };
        }
        Ok(())
    }
}

impl Drop for OwnPages {
    fn drop(&mut self) {
        memory::with_frames(|frames| {
            for &(frame, _) in &self.frames {
                frames.free(frame);
            }
        });
    }
}
