//! Our own grant table's v1 entries, mapped through the pmap: granting a frame and ending access with the atomics Xen expects.
//!
//! Xen updates an entry's flags (`GTF_reading` / `GTF_writing`) with a compare-exchange on
//! the flags+domid word while a mapping of the granted frame lives, so every access here is
//! atomic, and ending access is a compare-exchange that refuses while either bit is set: that
//! refusal is how the kernel proves, under a release build of Xen, that a grant is not still
//! mapped somewhere.

use core::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use grantsvc::abi::grant_table::{gtf, GrantEntryV1};
use grantsvc::addr::{Mfn, PAGE_SIZE};
use grantsvc::frame_alloc::FrameAllocator;
use grantsvc::hypervisor::Hypervisor;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::pmap::{ForeignFlags, PageRange, Pmap, PmapError, Prot};

/// Bytes of one v1 entry.
const ENTRY_SIZE: usize = core::mem::size_of::<GrantEntryV1>();

/// v1 entries in one grant-table frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / ENTRY_SIZE) as u32;

/// Why an entry was not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The ref is beyond the mapped table.
    OutOfRange { grant_ref: GrantRef, entries: u32 },
    /// The entry is still granted or still pinned by a mapping (its flags are given).
    Busy { grant_ref: GrantRef, flags: u16 },
    /// v1 entries hold 32-bit frame numbers.
    FrameTooLarge(Mfn),
}

impl core::fmt::Display for EntryError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntryError::OutOfRange { grant_ref, entries } => {
                write!(
                    formatter,
                    "grant ref {grant_ref} beyond our table of {entries} entries"
                )
            }
            EntryError::Busy { grant_ref, flags } => write!(
                formatter,
                "grant ref {grant_ref} busy (flags {flags:#06x}{}{})",
                if flags & gtf::READING != 0 {
                    " reading"
                } else {
                    ""
                },
                if flags & gtf::WRITING != 0 {
                    " writing"
                } else {
                    ""
                }
            ),
            EntryError::FrameTooLarge(frame) => {
                write!(formatter, "mfn {frame} does not fit a v1 grant entry")
            }
        }
    }
}

/// The entries of our grant table, mapped read-write in the pmap's chosen-VA region for the
/// rest of the domain's life.
pub struct GrantEntries {
    base: u64,
    entries: u32,
    range: PageRange,
}

impl core::fmt::Debug for GrantEntries {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            formatter,
            "GrantEntries({} entries at {})",
            self.entries,
            self.range.start()
        )
    }
}

/// Maps the grant-table `frames` Xen gave us (`GNTTABOP_setup_table`) at a fresh range of the
/// pmap's chosen-VA region. They are Xen's frames shared with us, not in our p2m, so they go
/// in as foreign mappings owned by `DOMID_SELF` (Xen checks they are shared with us).
pub fn map_own_table<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    frames: &[Mfn],
) -> Result<GrantEntries, PmapError> {
    let pages = u64::try_from(frames.len()).map_err(|_| PmapError::BadRange)?;
    let range = pmap.allocate_va(pages).ok_or(PmapError::BadRange)?;
    let mut result = Ok(());
    for (index, &frame) in frames.iter().enumerate() {
        let Some(page) = range.page(index as u64) else {
            result = Err(PmapError::BadRange);
            break;
        };
        result = pmap.enter_foreign(
            page,
            frame,
            DomId::SELF,
            Prot::READ_WRITE,
            ForeignFlags::default(),
        );
        if result.is_err() {
            break;
        }
    }
    if let Err(error) = result {
        if pmap.remove(range).is_ok() {
            let _ = pmap.free_va(range);
        }
        return Err(error);
    }
    let entries = u32::try_from(frames.len())
        .ok()
        .and_then(|count| count.checked_mul(ENTRIES_PER_FRAME))
        .ok_or(PmapError::BadRange)?;
    // The range came from the pmap's VA allocator (no one else is handed it) and every page
    // of it now maps one of our grant-table frames read-write; it is never removed.
    Ok(GrantEntries {
        base: range.start().as_u64(),
        entries,
        range,
    })
}

impl GrantEntries {
    /// Entries in the mapped table.
    pub fn len(&self) -> u32 {
        self.entries
    }

    /// Where the table is mapped.
    pub fn range(&self) -> PageRange {
        self.range
    }

    /// The address of entry `grant_ref`, if it is in the table.
    fn entry(&self, grant_ref: GrantRef) -> Result<u64, EntryError> {
        if grant_ref.get() >= self.entries {
            return Err(EntryError::OutOfRange {
                grant_ref,
                entries: self.entries,
            });
        }
        Ok(self.base + u64::from(grant_ref.get()) * ENTRY_SIZE as u64)
    }

    /// The flags word of `grant_ref`.
    fn flags_word(&self, grant_ref: GrantRef) -> Result<&AtomicU16, EntryError> {
        let address = self.entry(grant_ref)?;
        // SAFETY: `address` is an 8-aligned entry inside the range `map_own_table` mapped
        // read-write for good; Xen updates these bytes with atomic operations only, and so do
        // we (no Rust reference to the plain bytes exists).
        Ok(unsafe { AtomicU16::from_ptr(address as *mut u16) })
    }

    /// The flags of `grant_ref` now (`GTF_*`).
    pub fn flags(&self, grant_ref: GrantRef) -> Result<u16, EntryError> {
        Ok(self.flags_word(grant_ref)?.load(Ordering::Acquire))
    }

    /// Grants `domain` access to machine frame `frame` through `grant_ref`, which must be
    /// unused: frame and domid first, then (after a barrier) the flags that make it valid.
    pub fn grant(
        &self,
        grant_ref: GrantRef,
        domain: DomId,
        frame: Mfn,
        readonly: bool,
    ) -> Result<(), EntryError> {
        let frame_number =
            u32::try_from(frame.get()).map_err(|_| EntryError::FrameTooLarge(frame))?;
        let flags = self.flags(grant_ref)?;
        if flags & (gtf::TYPE_MASK | gtf::READING | gtf::WRITING) != 0 {
            return Err(EntryError::Busy { grant_ref, flags });
        }
        let address = self.entry(grant_ref)?;
        // SAFETY: as in `flags_word`: inside the mapped table, 2-aligned (domid at +2) and
        // 4-aligned (frame at +4); accessed atomically only.
        let (domid_word, frame_word) = unsafe {
            (
                AtomicU16::from_ptr((address + 2) as *mut u16),
                AtomicU32::from_ptr((address + 4) as *mut u32),
            )
        };
        frame_word.store(frame_number, Ordering::Relaxed);
        domid_word.store(domain.get(), Ordering::Relaxed);
        // Xen must never see the valid flags with a stale frame or domid.
        fence(Ordering::Release);
        let mut valid = gtf::PERMIT_ACCESS;
        if readonly {
            valid |= gtf::READONLY;
        }
        self.flags_word(grant_ref)?.store(valid, Ordering::Release);
        Ok(())
    }

    /// Ends access through `grant_ref`: clears its flags unless a mapping still pins it
    /// (`GTF_reading` / `GTF_writing`), in which case nothing changes and the flags are
    /// reported. Compare-exchange, as Xen may set those bits at any moment.
    pub fn end_access(&self, grant_ref: GrantRef) -> Result<(), EntryError> {
        let word = self.flags_word(grant_ref)?;
        let mut flags = word.load(Ordering::Acquire);
        loop {
            if flags & (gtf::READING | gtf::WRITING) != 0 {
                return Err(EntryError::Busy { grant_ref, flags });
            }
            match word.compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(now) => flags = now,
            }
        }
    }
}
