//! The kernel heap: a small bootstrap arena in .bss, then a run of the domain's own free frames sized from start_info, both behind `linked_list_allocator`.
//!
//! The bootstrap arena exists before any page-table work, so boot can use `alloc` while the
//! pmap adopts Xen's tables and maps every pfn. [`reserve_frames`] takes the top of the
//! domain's free frames (all but [`KEPT_FREE_FRAMES`], or half in a small domain) out of the
//! frame allocator before the pmap owns it, and [`grow`] hands them to the main heap once the
//! direct map covers them: the image carries no fixed array, so it boots in `memory=8`, and a
//! larger domain gets a larger heap (room for RAM disks) without a rebuild.

use crate::kernel::address_space::PmapHandle;
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use grantsvc::addr::{Pfn, PAGE_SIZE};
use grantsvc::frame_alloc::BitmapFrameAllocator;
use grantsvc::pmap::{direct_map_address, Mapping, Prot};
use linked_list_allocator::Heap;

/// Bytes of the bootstrap arena: enough for adopting the tables and the frame bitmap of a
/// domain of several GiB (the bitmap is 32 KiB per GiB).
pub const BOOTSTRAP_HEAP_SIZE: usize = 512 * 1024;

/// Frames left out of the main heap when the domain has plenty (8 MiB): page tables for grant
/// mappings and other frame allocations come from them. A smaller domain gives the heap half.
pub const KEPT_FREE_FRAMES: u64 = 2048;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; BOOTSTRAP_HEAP_SIZE]>);

// SAFETY: the arena's bytes are only reached through the heap, which hands each byte to one
// owner at a time under its lock.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; BOOTSTRAP_HEAP_SIZE]));
static INITIALISED: AtomicBool = AtomicBool::new(false);
static GROWN: AtomicBool = AtomicBool::new(false);
/// Bytes the heap's callers hold now (their layouts' sizes), kept as blocks come and go so that
/// the published counters need no lock of either arena.
static IN_USE: AtomicUsize = AtomicUsize::new(0);
/// Most of [`IN_USE`] at once since boot.
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Bytes the main heap was given (0 before it grew).
static FRAME_HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The global allocator: the frame heap first (once it exists), the bootstrap arena after it;
/// a block goes back to the heap whose range holds it.
pub struct KernelHeap {
    bootstrap: spin::Mutex<Heap>,
    frames: spin::Mutex<Heap>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    bootstrap: spin::Mutex::new(Heap::empty()),
    frames: spin::Mutex::new(Heap::empty()),
};

/// Hands the bootstrap arena to the heap. Later calls do nothing.
pub fn initialise() {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the arena is a static of BOOTSTRAP_HEAP_SIZE bytes used by nothing but this
    // heap, and the flag above makes this the only `init` call.
    unsafe {
        HEAP.bootstrap
            .lock()
            .init(ARENA.0.get().cast::<u8>(), BOOTSTRAP_HEAP_SIZE)
    };
}

/// Why the heap could not grow into the domain's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapGrowthError {
    AlreadyGrown,
    /// Too few free frames to spare any.
    NoFreeFrames,
    /// The top frames are not all free (something allocated them before the heap).
    TopFramesInUse,
    /// A reserved frame is not mapped read-write at its direct-map address (it stays reserved).
    NotDirectMapped(Pfn),
}

impl fmt::Display for HeapGrowthError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapGrowthError::AlreadyGrown => formatter.write_str("the heap has grown already"),
            HeapGrowthError::NoFreeFrames => formatter.write_str("no free frame to spare"),
            HeapGrowthError::TopFramesInUse => {
                formatter.write_str("the top frames of the domain are in use")
            }
            HeapGrowthError::NotDirectMapped(frame) => {
                write!(
                    formatter,
                    "pfn {frame} is not mapped read-write in the direct map"
                )
            }
        }
    }
}

/// Frames taken out of the frame allocator for good, for the main heap; only
/// [`reserve_frames`] makes one, and [`grow`] consumes it.
pub struct HeapFrames {
    first: Pfn,
    pages: u64,
}

/// Takes the domain's free frames but [`KEPT_FREE_FRAMES`] (half in a small domain) from the
/// top of `frames` for the main heap. Call before the pmap takes the allocator: the frames it
/// keeps are the lowest, where the direct map's new page tables go.
pub fn reserve_frames(frames: &mut BitmapFrameAllocator) -> Result<HeapFrames, HeapGrowthError> {
    let free = frames.free_frames();
    // The heap holds the RAM disks of the block backend, so it takes what the domain has.
    let pages = if free > 2 * KEPT_FREE_FRAMES {
        free - KEPT_FREE_FRAMES
    } else {
        free / 2
    };
    if pages == 0 {
        return Err(HeapGrowthError::NoFreeFrames);
    }
    let first = frames
        .reserve_top(pages)
        .ok_or(HeapGrowthError::TopFramesInUse)?;
    Ok(HeapFrames { first, pages })
}

/// Gives the heap the frames `reserved`, once `pmap` maps every pfn at its direct-map
/// address; returns the bytes added.
pub fn grow(reserved: HeapFrames, pmap: PmapHandle) -> Result<usize, HeapGrowthError> {
    if GROWN.load(Ordering::Acquire) {
        return Err(HeapGrowthError::AlreadyGrown);
    }
    let HeapFrames { first, pages } = reserved;
    // The frames are ours alone (out of the allocator for good); check that each is mapped
    // read-write where the heap will reach it.
    let start = {
        let locked = pmap.lock();
        for index in 0..pages {
            let frame = first
                .checked_add(index)
                .ok_or(HeapGrowthError::NotDirectMapped(first))?;
            let mapped = direct_map_address(frame).and_then(|address| locked.extract(address));
            match mapped {
                Some(Mapping::Ordinary { frame: at, prot })
                    if at == frame && prot == Prot::READ_WRITE => {}
                _ => return Err(HeapGrowthError::NotDirectMapped(frame)),
            }
        }
        direct_map_address(first).ok_or(HeapGrowthError::NotDirectMapped(first))?
    };
    if GROWN.swap(true, Ordering::AcqRel) {
        return Err(HeapGrowthError::AlreadyGrown);
    }
    let bytes = usize::try_from(pages).unwrap_or(0) * PAGE_SIZE;
    // SAFETY: `bytes` bytes from `start` are the direct-map pages of frames just taken out of
    // the frame allocator for good (no one else is handed them) and checked above to be
    // mapped read-write there; the flag above makes this the only `init` of this heap.
    unsafe { HEAP.frames.lock().init(start.as_u64() as *mut u8, bytes) };
    FRAME_HEAP_BYTES.store(bytes, Ordering::Release);
    Ok(bytes)
}

/// Bytes in use and bytes free over both arenas, for the lab's self-tests.
#[cfg(feature = "lab")]
pub fn usage() -> (usize, usize) {
    let bootstrap = HEAP.bootstrap.lock();
    let frames = HEAP.frames.lock();
    (
        bootstrap.used() + frames.used(),
        bootstrap.free() + frames.free(),
    )
}

/// Bytes of the main heap (what the block backend's RAM disks are budgeted from).
pub fn frame_heap_bytes() -> usize {
    FRAME_HEAP_BYTES.load(Ordering::Acquire)
}

/// Bytes in use now and the most in use at once since boot, for the published counters.
pub fn in_use_and_peak() -> (usize, usize) {
    let used = IN_USE.load(Ordering::Relaxed);
    (used, PEAK.load(Ordering::Relaxed).max(used))
}

/// Counts a block handed out.
fn note_allocated(bytes: usize) {
    let used = IN_USE
        .fetch_add(bytes, Ordering::Relaxed)
        .saturating_add(bytes);
    PEAK.fetch_max(used, Ordering::Relaxed);
}

/// True when `pointer` lies in the bootstrap arena.
fn in_bootstrap_arena(pointer: *mut u8) -> bool {
    let start = ARENA.0.get() as usize;
    let address = pointer as usize;
    address >= start && address < start + BOOTSTRAP_HEAP_SIZE
}

// SAFETY: allocation and deallocation go through `Heap`, which returns blocks of at least the
// requested size and alignment from its arena and never hands one out twice; a block is
// returned to the heap whose arena holds it, which is the one that handed it out.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = self
            .frames
            .lock()
            .allocate_first_fit(layout)
            .or_else(|()| self.bootstrap.lock().allocate_first_fit(layout));
        match block {
            Ok(block) => {
                note_allocated(layout.size());
                block.as_ptr()
            }
            Err(()) => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        let Some(block) = NonNull::new(pointer) else {
            return;
        };
        let heap = if in_bootstrap_arena(pointer) {
            &self.bootstrap
        } else {
            &self.frames
        };
        // SAFETY: GlobalAlloc's contract: `pointer` came from `alloc` with this `layout`, and
        // `alloc` took it from the heap whose arena holds it.
        unsafe { heap.lock().deallocate(block, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}
