//! The kernel heap: a static 8 MiB arena in .bss behind `linked_list_allocator`, locked with `spin`.
//!
//! It exists before any page-table work, so everything after boot can use `alloc`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use linked_list_allocator::Heap;

/// Bytes of the heap arena.
pub const HEAP_SIZE: usize = 8 * 1024 * 1024;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the arena's bytes are only reached through the heap, which hands each byte to one
// owner at a time under its lock.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));
static INITIALISED: AtomicBool = AtomicBool::new(false);
/// Most bytes in use at once since boot (updated on each allocation, under the heap's lock).
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The global allocator: a first-fit linked-list heap behind a spin lock.
pub struct KernelHeap(spin::Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(spin::Mutex::new(Heap::empty()));

/// Hands the arena to the heap. Later calls do nothing.
pub fn initialise() {
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the arena is a static of HEAP_SIZE bytes used by nothing but this heap, and the
    // flag above makes this the only `init` call.
    unsafe { HEAP.0.lock().init(ARENA.0.get().cast::<u8>(), HEAP_SIZE) };
}

/// Bytes in use and bytes free, for the lab's self-tests.
#[cfg(feature = "lab")]
pub fn usage() -> (usize, usize) {
    let heap = HEAP.0.lock();
    (heap.used(), heap.free())
}

/// Bytes in use now and the most in use at once since boot, for the published counters.
pub fn in_use_and_peak() -> (usize, usize) {
    let used = HEAP.0.lock().used();
    (used, PEAK.load(Ordering::Relaxed).max(used))
}

// SAFETY: allocation and deallocation go through `Heap`, which returns blocks of at least the
// requested size and alignment from the arena and never hands one out twice.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.0.lock();
        let block = heap.allocate_first_fit(layout);
        PEAK.fetch_max(heap.used(), Ordering::Relaxed);
        block.map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(pointer) {
            // SAFETY: GlobalAlloc's contract: `pointer` came from `alloc` with this `layout`.
            unsafe { self.0.lock().deallocate(block, layout) };
        }
    }
}
