//! Our own grant table's v1 entries, mapped through the pmap: granting a page we own and ending access with the atomics Xen expects (the lab build's self-grant machinery).
//!
//! Xen updates an entry's flags (`GTF_reading` / `GTF_writing`) with a compare-exchange on
//! the flags+domid word while a mapping of the granted frame lives, so every access here is
//! atomic, and ending access is a compare-exchange that refuses while either bit is set: that
//! refusal is how the kernel proves, under a release build of Xen, that a grant is not still
//! mapped somewhere.
//!
//! Sound for any safe caller: the table is the one Xen set up for us (its frames come from
//! `GNTTABOP_setup_table` here, never from the caller); only a page of an [`OwnPages`] can be
//! granted, and the page counts its live grants so that its frame is never given back to the
//! allocator while another domain may map it; ending access counts a grant down only after
//! checking that the entry is valid and names that page's frame. The mapped range is private,
//! so no caller can hand it back to the pmap while the entries are in use.

use super::grant_table::{self, GrantTableError, MAX_SETUP_FRAMES};
use super::own_pages::OwnPages;
use core::sync::atomic::{fence, AtomicBool, AtomicU16, AtomicU32, Ordering};
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
    /// The pages given have no page at this index.
    NoSuchPage { index: usize, pages: usize },
    /// Ending access through an entry that grants nothing (its flags are given).
    NotGranted { grant_ref: GrantRef, flags: u16 },
    /// Ending access with a page that is not the one the entry grants.
    OtherFrame {
        grant_ref: GrantRef,
        granted: u32,
        page: Mfn,
    },
    /// The page already carries as many grants as it can count.
    TooManyGrants { index: usize },
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
            EntryError::NoSuchPage { index, pages } => {
                write!(formatter, "no page {index} among {pages} page(s)")
            }
            EntryError::NotGranted { grant_ref, flags } => {
                write!(
                    formatter,
                    "grant ref {grant_ref} grants nothing (flags {flags:#06x})"
                )
            }
            EntryError::OtherFrame {
                grant_ref,
                granted,
                page,
            } => write!(
                formatter,
                "grant ref {grant_ref} grants mfn {granted:#x}, not the page's mfn {page}"
            ),
            EntryError::TooManyGrants { index } => {
                write!(formatter, "page {index} carries too many grants to count")
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

/// Set by the first [`set_up`], successful or not (a failed one may have left frames mapped).
static SET_UP: AtomicBool = AtomicBool::new(false);

/// Why our grant table could not be set up and mapped.
#[derive(Clone, Copy, Debug)]
pub enum SetUpError {
    /// The table is already mapped: one `GrantEntries` owns it.
    AlreadySetUp,
    QuerySize(GrantTableError),
    Setup(GrantTableError),
    Map(PmapError),
}

impl core::fmt::Display for SetUpError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SetUpError::AlreadySetUp => formatter.write_str("our grant table is already mapped"),
            SetUpError::QuerySize(error) => write!(formatter, "GNTTABOP_query_size: {error}"),
            SetUpError::Setup(error) => write!(formatter, "GNTTABOP_setup_table: {error}"),
            SetUpError::Map(error) => write!(formatter, "mapping the grant table: {error}"),
        }
    }
}

/// Grows our grant table to `wanted` frames (within Xen's limit; never below what is in use)
/// with `GNTTABOP_setup_table` and maps the frames Xen returns at a fresh range of the pmap's
/// chosen-VA region. They are Xen's frames shared with us, not in our p2m, so they go in as
/// foreign mappings owned by `DOMID_SELF` (Xen checks they are shared with us). Once per
/// domain: `&mut self` serialises the check and the update of an entry only with one owner.
pub fn set_up<H: Hypervisor, A: FrameAllocator>(
    pmap: &mut Pmap<H, A>,
    wanted: u32,
) -> Result<GrantEntries, SetUpError> {
    if SET_UP.swap(true, Ordering::AcqRel) {
        return Err(SetUpError::AlreadySetUp);
    }
    let (in_use, most) = grant_table::query_size().map_err(SetUpError::QuerySize)?;
    let count = (wanted.max(in_use).min(most) as usize).min(MAX_SETUP_FRAMES);
    let mut frames = [Mfn::default(); MAX_SETUP_FRAMES];
    let frames = frames.get_mut(..count).unwrap_or_default();
    grant_table::setup_table(count, frames).map_err(SetUpError::Setup)?;
    map_table(pmap, frames).map_err(SetUpError::Map)
}

/// Maps the grant-table `frames` that `setup_table` just returned.
fn map_table<H: Hypervisor, A: FrameAllocator>(
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
    // of it now maps one of our grant-table frames read-write; it is never removed, and it
    // stays private to this value.
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

    /// Grants `domain` access to page `index` of `pages` through `grant_ref`, which must be
    /// unused: frame and domid first, then (after a barrier) the flags that make it valid.
    /// The page counts the grant until [`GrantEntries::end_access`] ends it.
    pub fn grant(
        &mut self,
        grant_ref: GrantRef,
        domain: DomId,
        pages: &OwnPages,
        index: usize,
        readonly: bool,
    ) -> Result<(), EntryError> {
        let frame = pages.mfn(index).ok_or(EntryError::NoSuchPage {
            index,
            pages: pages.len(),
        })?;
        let frame_number =
            u32::try_from(frame.get()).map_err(|_| EntryError::FrameTooLarge(frame))?;
        let flags = self.flags(grant_ref)?;
        if flags & (gtf::TYPE_MASK | gtf::READING | gtf::WRITING) != 0 {
            return Err(EntryError::Busy { grant_ref, flags });
        }
        // Counted before the entry becomes valid: a count too high only keeps a frame out of
        // the allocator, a count too low would let it be reused while granted.
        if !pages.count_grant(index) {
            return Err(EntryError::TooManyGrants { index });
        }
        let (domid_word, frame_word) = self.domid_and_frame_words(grant_ref)?;
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

    /// The domid and frame words of `grant_ref`.
    fn domid_and_frame_words(
        &self,
        grant_ref: GrantRef,
    ) -> Result<(&AtomicU16, &AtomicU32), EntryError> {
        let address = self.entry(grant_ref)?;
        // SAFETY: as in `flags_word`: inside the mapped table, 2-aligned (domid at +2) and
        // 4-aligned (frame at +4); accessed atomically only.
        Ok(unsafe {
            (
                AtomicU16::from_ptr((address + 2) as *mut u16),
                AtomicU32::from_ptr((address + 4) as *mut u32),
            )
        })
    }

    /// Ends access through `grant_ref`, which grants page `index` of `pages`: clears its
    /// flags unless a mapping still pins it (`GTF_reading` / `GTF_writing`), in which case
    /// nothing changes and the flags are reported. Compare-exchange, as Xen may set those bits
    /// at any moment. Only then does the page count the grant down.
    pub fn end_access(
        &mut self,
        grant_ref: GrantRef,
        pages: &OwnPages,
        index: usize,
    ) -> Result<(), EntryError> {
        let page = pages.mfn(index).ok_or(EntryError::NoSuchPage {
            index,
            pages: pages.len(),
        })?;
        let word = self.flags_word(grant_ref)?;
        let mut flags = word.load(Ordering::Acquire);
        if flags & gtf::TYPE_MASK != gtf::PERMIT_ACCESS {
            return Err(EntryError::NotGranted { grant_ref, flags });
        }
        // Xen never writes a v1 entry's frame; only `grant` (which `&mut self` keeps out) does.
        let (_, frame_word) = self.domid_and_frame_words(grant_ref)?;
        let granted = frame_word.load(Ordering::Relaxed);
        if u64::from(granted) != page.get() {
            return Err(EntryError::OtherFrame {
                grant_ref,
                granted,
                page,
            });
        }
        loop {
            if flags & (gtf::READING | gtf::WRITING) != 0 {
                return Err(EntryError::Busy { grant_ref, flags });
            }
            match word.compare_exchange(flags, 0, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => flags = now,
            }
        }
        pages.count_grant_ended(index);
        Ok(())
    }
}
