//! The kernel's frame allocator: one lowest-first bitmap over the pfns after Xen's bootstrap area.

use grantsvc::boot_info::BootInfo;
use grantsvc::frame_alloc::BitmapFrameAllocator;

static FRAMES: spin::Mutex<Option<BitmapFrameAllocator>> = spin::Mutex::new(None);

/// Creates the allocator for `boot_info`'s domain; false if it has no free frame (BootInfo
/// already refuses such a domain, so this does not happen in practice).
pub fn initialise(boot_info: &BootInfo) -> bool {
    let allocator = BitmapFrameAllocator::new(boot_info.first_free_pfn(), boot_info.end_pfn());
    let created = allocator.is_some();
    *FRAMES.lock() = allocator;
    created
}

/// Runs `action` with the frame allocator locked; `None` before `initialise`.
pub fn with_frames<R>(action: impl FnOnce(&mut BitmapFrameAllocator) -> R) -> Option<R> {
    FRAMES.lock().as_mut().map(action)
}
