//! Pages of our own memory lent by the pmap's frame allocator, read and written through the direct map: the only pages our grant table grants (the lab build's self-grant machinery).
//!
//! The bytes may also be reached through a grant or foreign mapping of the same frame, so
//! every access is volatile and no Rust reference to them is ever made. Each page counts the
//! live grants of it (only `grant_entries`, in this layer, changes the count): dropping the
//! pages gives back to the allocator only the frames that no grant names, and keeps (leaks)
//! the others, as another domain may still map them. Each frame is a [`LentFrame`], which only
//! the pmap makes: these pages are ours alone until they go back. Dropping them takes the pmap
//! lock, so never drop them while holding it.

use super::direct_map::address_of;
use super::start_of_day;
use crate::kernel::address_space::PmapHandle;
use alloc::vec::Vec;
use core::cell::Cell;
use grantsvc::addr::{Mfn, Pfn, PAGE_SIZE};
use grantsvc::pmap::LentFrame;
use grantsvc::shared_memory::{check_bounds, OutOfBounds};

/// One page of ours and the grants of it.
struct OwnPage {
    frame: LentFrame,
    machine: Mfn,
    /// Live grant entries naming this page's frame. A `Cell`: counted through `&OwnPages`
    /// while the holder reads and writes the page; the pages are not shared between contexts.
    grants: Cell<u32>,
}

/// Frames allocated for the holder alone; given back on drop, except those still granted.
pub struct OwnPages {
    pages: Vec<OwnPage>,
    pmap: PmapHandle,
}

impl OwnPages {
    /// `count` free frames of ours lent by `pmap` (whose direct map covers the whole domain
    /// once boot handed it over), or `None` when memory runs out.
    pub fn allocate(pmap: PmapHandle, count: usize) -> Option<OwnPages> {
        let p2m = start_of_day::p2m()?;
        let mut pages = OwnPages {
            pages: Vec::with_capacity(count),
            pmap,
        };
        for _ in 0..count {
            let frame = pmap.lock().lend_frame()?;
            let Some(machine) = p2m.machine_frame(frame.pfn()) else {
                pmap.lock().take_back_frame(frame);
                return None;
            };
            pages.pages.push(OwnPage {
                frame,
                machine,
                grants: Cell::new(0),
            });
        }
        Some(pages)
    }

    /// How many pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Page `index`'s pseudo-physical frame.
    pub fn pfn(&self, index: usize) -> Option<Pfn> {
        self.pages.get(index).map(|page| page.frame.pfn())
    }

    /// Page `index`'s machine frame.
    pub fn mfn(&self, index: usize) -> Option<Mfn> {
        self.pages.get(index).map(|page| page.machine)
    }

    /// Counts a grant of page `index` (before the entry becomes valid); false when the page
    /// does not exist or the count is full.
    pub(super) fn count_grant(&self, index: usize) -> bool {
        let Some(page) = self.pages.get(index) else {
            return false;
        };
        match page.grants.get().checked_add(1) {
            Some(grants) => {
                page.grants.set(grants);
                true
            }
            None => false,
        }
    }

    /// Counts down a grant of page `index` whose entry was just ended.
    pub(super) fn count_grant_ended(&self, index: usize) {
        if let Some(page) = self.pages.get(index) {
            page.grants.set(page.grants.get().saturating_sub(1));
        }
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
            // SAFETY: the frame is lent to us alone and mapped read-write by the direct map,
            // which covers the whole domain once boot hands the pmap over; the write stays in
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
        let mut kept = 0usize;
        let mut pmap = self.pmap.lock();
        for page in self.pages.drain(..) {
            if page.grants.get() == 0 {
                pmap.take_back_frame(page.frame);
            } else {
                kept += 1;
            }
        }
        drop(pmap);
        if kept > 0 {
            log::warn!("own pages: {kept} page(s) still granted are kept out of the allocator");
        }
    }
}
