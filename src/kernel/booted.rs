//! What boot hands over: the `Kernel` value that the service (or, in the lab build, the lab) runs on.
//!
//! Dependencies point one way: `start` builds a `Kernel`; the service and the lab take one. This
//! module imports neither, so that boot never reaches up into what runs after it.

use super::address_space::PmapHandle;
use grantsvc::boot_info::BootInfo;

/// The kernel's state after boot.
pub struct Kernel {
    /// The one record of start_info (`xen::start_of_day`).
    pub boot_info: &'static BootInfo,
    /// The one pmap (`address_space`), which owns the frame allocator.
    pub pmap: PmapHandle,
    /// What the lab's command-line words ask for (the lab build only).
    #[cfg(feature = "lab")]
    pub lab_words: grantsvc::cmdline::LabWords<'static>,
}
