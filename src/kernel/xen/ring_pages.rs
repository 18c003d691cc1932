//! The console and xenstore ring pages: machine frames in start_info, reached through the M2P and the direct map.
//!
//! The frames come from the recorded start_info (`start_of_day`), never from a caller, so no
//! safe caller can make a `SharedRegion` over memory of its choosing.

use super::direct_map::address_of;
use super::shared_region::SharedRegion;
use super::start_of_day;
use grantsvc::addr::{Mfn, PAGE_SIZE};

/// Why a ring page cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingPageError {
    /// The frame is not one of ours (the M2P and p2m disagree).
    NotOurs(Mfn),
    /// The frame is ours but not in Xen's bootstrap area, where Xen puts ring pages.
    OutsideBootstrapArea(Mfn),
    /// start_info has not been recorded yet.
    NotBooted,
}

impl core::fmt::Display for RingPageError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingPageError::NotOurs(frame) => write!(formatter, "mfn {frame} is not ours"),
            RingPageError::OutsideBootstrapArea(frame) => {
                write!(formatter, "mfn {frame} is outside Xen's bootstrap area")
            }
            RingPageError::NotBooted => formatter.write_str("start_info is not recorded yet"),
        }
    }
}

/// The page of machine frame `frame`, which must be a bootstrap page of ours.
///
/// Sound because such a page (1) is one of our frames below `first_free_pfn`, so Xen's
/// initial mapping maps it read-write, the frame allocator never hands it out and the pmap
/// never changes the direct map after boot; (2) lies at a page-aligned direct-map address;
/// (3) is touched by Rust code only through SharedRegions (volatile and atomic), as the peer
/// or Xen shares it with us.
fn bootstrap_page(frame: Mfn) -> Result<SharedRegion, RingPageError> {
    let boot_info = start_of_day::boot_info().ok_or(RingPageError::NotBooted)?;
    let p2m = start_of_day::p2m().ok_or(RingPageError::NotBooted)?;
    let pfn = p2m
        .pseudo_physical_frame(frame)
        .ok_or(RingPageError::NotOurs(frame))?;
    if pfn >= boot_info.first_free_pfn() {
        return Err(RingPageError::OutsideBootstrapArea(frame));
    }
    let address = address_of(pfn);
    // SAFETY: a bootstrap page of ours (checked above): mapped read-write for good, page
    // aligned, and reached only through SharedRegions, as this function's doc says.
    Ok(unsafe { SharedRegion::new(address.as_u64() as *mut u8, PAGE_SIZE) })
}

/// The PV console ring page named by the recorded start_info.
pub fn console() -> Result<SharedRegion, RingPageError> {
    let boot_info = start_of_day::boot_info().ok_or(RingPageError::NotBooted)?;
    bootstrap_page(boot_info.console_mfn())
}

/// The xenstore ring page named by the recorded start_info.
pub fn xenstore() -> Result<SharedRegion, RingPageError> {
    let boot_info = start_of_day::boot_info().ok_or(RingPageError::NotBooted)?;
    bootstrap_page(boot_info.store_mfn())
}
