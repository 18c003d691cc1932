//! The console and xenstore ring pages: machine frames in start_info, reached through the M2P and the direct map.

use super::direct_map::{address_of, P2m};
use super::shared_region::SharedRegion;
use grantsvc::addr::{Mfn, PAGE_SIZE};
use grantsvc::boot_info::BootInfo;

/// Why a ring page cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingPageError {
    /// The frame is not one of ours (the M2P and p2m disagree).
    NotOurs(Mfn),
    /// The frame is ours but not in Xen's bootstrap area, where Xen puts ring pages.
    OutsideBootstrapArea(Mfn),
}

impl core::fmt::Display for RingPageError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingPageError::NotOurs(frame) => write!(formatter, "mfn {frame} is not ours"),
            RingPageError::OutsideBootstrapArea(frame) => {
                write!(formatter, "mfn {frame} is outside Xen's bootstrap area")
            }
        }
    }
}

/// The page of machine frame `frame`, which must be a bootstrap page of ours.
fn bootstrap_page(boot_info: &BootInfo, frame: Mfn) -> Result<SharedRegion, RingPageError> {
    let p2m = P2m::from_boot_info(boot_info);
    let pfn = p2m
        .pseudo_physical_frame(frame)
        .ok_or(RingPageError::NotOurs(frame))?;
    if pfn >= boot_info.first_free_pfn {
        return Err(RingPageError::OutsideBootstrapArea(frame));
    }
    let address = address_of(pfn);
    // SAFETY: the page is one of our frames below `first_free_pfn`, so it is mapped by Xen's
    // initial mapping and the frame allocator never hands it out; Rust code touches it only
    // through SharedRegion's volatile and atomic accesses, as the peer shares it with us.
    Ok(unsafe { SharedRegion::new(address.as_u64() as *mut u8, PAGE_SIZE) })
}

/// The PV console ring page.
pub fn console(boot_info: &BootInfo) -> Result<SharedRegion, RingPageError> {
    bootstrap_page(boot_info, boot_info.console_mfn)
}

/// The xenstore ring page.
pub fn xenstore(boot_info: &BootInfo) -> Result<SharedRegion, RingPageError> {
    bootstrap_page(boot_info, boot_info.store_mfn)
}
