//! The pmap's errors: typed, each naming what failed (the address, the grant ref, Xen's status).

use super::layout::PageRange;
use crate::abi::grant_table::GrantStatus;
use crate::addr::{Pfn, VirtAddr};
use crate::hypervisor::XenError;
use crate::ids::{DomId, GrantRef};
use alloc::vec::Vec;
use core::fmt;

/// A failure of an ordinary page-table operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmapError {
    /// The address is not page aligned, or the range is empty or leaves the canonical half.
    BadRange,
    /// The address lies in Xen's reserved L4 slots (256..=271).
    XenSlots(VirtAddr),
    /// The address is outside the chosen-VA region: the direct map (kernel image, heap,
    /// stacks, page tables) and everything else are not the safe API's to change.
    OutsideChosenRegion(VirtAddr),
    /// A grant page is mapped there: only `remove` may take it away.
    GrantPageInTheWay(VirtAddr),
    /// A superpage covers the address; the pmap maps 4 KiB pages only.
    HugePageInTheWay(VirtAddr),
    /// An entry points at a table the pmap does not know (not ours, or not a table).
    UnknownTable(VirtAddr),
    /// The L4 given at construction is not one of our frames.
    UnknownRoot,
    /// The frame allocator is empty.
    OutOfFrames,
    /// A frame has no machine frame in the p2m.
    NoMachineFrame(Pfn),
    /// A frame meant to be a page table has no direct-map mapping to zero and write-protect.
    FrameNotDirectMapped(Pfn),
    /// A writable mapping of a page-table frame was asked (Xen would refuse it).
    FrameIsPageTable(Pfn),
    /// `mmu_update` failed for the entry translating `address`.
    MmuUpdate { address: VirtAddr, error: XenError },
    /// `mmuext_op` (a TLB flush) failed.
    Mmuext(XenError),
}

impl fmt::Display for PmapError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PmapError::BadRange => formatter.write_str("misaligned, empty or non-canonical range"),
            PmapError::XenSlots(address) => write!(formatter, "{address} is in Xen's L4 slots"),
            PmapError::OutsideChosenRegion(address) => {
                write!(formatter, "{address} is outside the chosen-VA region")
            }
            PmapError::GrantPageInTheWay(address) => {
                write!(formatter, "a grant page is mapped at {address}")
            }
            PmapError::HugePageInTheWay(address) => {
                write!(formatter, "a superpage covers {address}")
            }
            PmapError::UnknownTable(address) => {
                write!(formatter, "unknown page table on the walk of {address}")
            }
            PmapError::UnknownRoot => formatter.write_str("the L4 table is not one of our frames"),
            PmapError::OutOfFrames => formatter.write_str("no free frame for a page table"),
            PmapError::NoMachineFrame(frame) => write!(formatter, "pfn {frame} has no mfn"),
            PmapError::FrameNotDirectMapped(frame) => {
                write!(formatter, "pfn {frame} is not in the direct map")
            }
            PmapError::FrameIsPageTable(frame) => {
                write!(
                    formatter,
                    "pfn {frame} is a page table and cannot be mapped writable"
                )
            }
            PmapError::MmuUpdate { address, error } => {
                write!(formatter, "mmu_update for {address} failed: {error}")
            }
            PmapError::Mmuext(error) => write!(formatter, "mmuext_op failed: {error}"),
        }
    }
}

/// Why `enter_gnt` refused or failed. Refusals happen before anything is mapped; failures
/// have unmapped what did map, except `left_mapped` pages whose unmap failed too (those stay
/// in the grant list, so a later `remove` retries them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantMapError {
    /// No grant refs were given.
    Empty,
    /// The address is not page aligned or the range is not canonical.
    BadRange,
    /// More pages than one region may hold.
    TooLarge { pages: usize, limit: usize },
    /// The range touches Xen's L4 slots.
    XenSlots,
    /// The range leaves the chosen-VA region (the direct map, the kernel image and the stacks
    /// are never a place for a peer's page).
    OutsideChosenRegion,
    /// The range overlaps the live grant region starting at `region_start`.
    OverlapsRegion { region_start: VirtAddr },
    /// A page of the range is already mapped.
    AlreadyMapped(VirtAddr),
    /// Preparing the page tables failed.
    PageTables(PmapError),
    /// Xen refused `grant_ref` of `peer` with `status` (after retries, for `GNTST_eagain`).
    Grant {
        peer: DomId,
        grant_ref: GrantRef,
        status: GrantStatus,
        left_mapped: usize,
    },
    /// The map hypercall itself failed.
    Hypercall { error: XenError, left_mapped: usize },
}

impl fmt::Display for GrantMapError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantMapError::Empty => formatter.write_str("no grant refs to map"),
            GrantMapError::BadRange => formatter.write_str("misaligned or non-canonical address"),
            GrantMapError::TooLarge { pages, limit } => {
                write!(formatter, "{pages} pages exceed the region limit of {limit}")
            }
            GrantMapError::XenSlots => formatter.write_str("range touches Xen's L4 slots"),
            GrantMapError::OutsideChosenRegion => {
                formatter.write_str("range leaves the chosen-VA region")
            }
            GrantMapError::OverlapsRegion { region_start } => {
                write!(formatter, "overlaps the grant region at {region_start}")
            }
            GrantMapError::AlreadyMapped(address) => {
                write!(formatter, "{address} is already mapped")
            }
            GrantMapError::PageTables(error) => write!(formatter, "page tables: {error}"),
            GrantMapError::Grant {
                peer,
                grant_ref,
                status,
                left_mapped,
            } => write!(
                formatter,
                "grant ref {grant_ref} of domain {peer} failed: {status} ({left_mapped} page(s) left mapped)"
            ),
            GrantMapError::Hypercall { error, left_mapped } => write!(
                formatter,
                "GNTTABOP_map_grant_ref failed: {error} ({left_mapped} page(s) left mapped)"
            ),
        }
    }
}

/// Why one page could not be unmapped by `remove`; the page stays mapped and accounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapCause {
    /// `GNTTABOP_unmap_grant_ref` returned this status for the page's op.
    Grant {
        grant_ref: GrantRef,
        status: GrantStatus,
    },
    /// The unmap hypercall failed before reaching this page's op.
    GrantHypercall(XenError),
    /// `mmu_update` refused to clear the entry.
    PteUpdate(XenError),
}

// For log lines: a derived `{:?}` would bring `core::fmt`'s struct and tuple printers into the
// kernel image (issue 10).
impl fmt::Display for UnmapCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnmapCause::Grant { grant_ref, status } => {
                write!(formatter, "unmap of grant ref {grant_ref}: {status}")
            }
            UnmapCause::GrantHypercall(error) => {
                write!(formatter, "GNTTABOP_unmap_grant_ref failed: {error}")
            }
            UnmapCause::PteUpdate(error) => write!(formatter, "mmu_update refused: {error}"),
        }
    }
}

/// A page `remove` could not unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapFailure {
    pub address: VirtAddr,
    pub cause: UnmapCause,
}

/// What `remove` took away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoveSummary {
    /// Ordinary and foreign pages cleared through `mmu_update`.
    pub ordinary_pages: u64,
    /// Grant pages unmapped through `GNTTABOP_unmap_grant_ref`.
    pub grant_pages: u64,
    /// Page-table pages unhooked and freed because they became empty.
    pub page_tables_freed: u64,
}

/// A failed `remove`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoveError {
    /// The range was refused before anything changed.
    Refused(PmapError),
    /// Some pages could not be unmapped; everything else in the range was.
    Incomplete {
        summary: RemoveSummary,
        failures: Vec<UnmapFailure>,
    },
}

impl fmt::Display for RemoveError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoveError::Refused(error) => write!(formatter, "remove refused: {error}"),
            RemoveError::Incomplete { summary, failures } => {
                write!(
                    formatter,
                    "{} page(s) stay mapped after removing {} ordinary and {} grant page(s)",
                    failures.len(),
                    summary.ordinary_pages,
                    summary.grant_pages
                )?;
                if let Some(first) = failures.first() {
                    write!(formatter, "; first at {}: {}", first.address, first.cause)?;
                }
                Ok(())
            }
        }
    }
}

/// A `protect` refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectError {
    /// Grant pages are in the range; their PTEs belong to Xen's grant code, so nothing changed.
    GrantPagesInRange(VirtAddr),
    /// A page-table operation failed (entries before it may have changed).
    PageTables(PmapError),
}

/// Used by [`PageRange`]-taking calls to name a refused range.
pub(crate) fn check_range(range: &PageRange) -> Result<(), PmapError> {
    if range.touches_xen_slots() {
        return Err(PmapError::XenSlots(range.start()));
    }
    if !range.inside_chosen_region() {
        return Err(PmapError::OutsideChosenRegion(range.start()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn an_incomplete_removal_names_the_first_page_its_grant_ref_and_status() {
        let error = RemoveError::Incomplete {
            summary: RemoveSummary {
                ordinary_pages: 0,
                grant_pages: 3,
                page_tables_freed: 0,
            },
            failures: vec![UnmapFailure {
                address: VirtAddr::new_const(0x4000_0000),
                cause: UnmapCause::Grant {
                    grant_ref: GrantRef::new(7),
                    status: GrantStatus::BadHandle,
                },
            }],
        };
        assert_eq!(
            error.to_string(),
            "1 page(s) stay mapped after removing 0 ordinary and 3 grant page(s); \
             first at 0x40000000: unmap of grant ref 7: GNTST_bad_handle"
        );
        let hypercall = UnmapCause::PteUpdate(XenError::EINVAL);
        assert_eq!(hypercall.to_string(), "mmu_update refused: EINVAL (-22)");
    }
}
