//! `HYPERVISOR_grant_table_op`: map and unmap batches, set up and size our own grant table.

use super::hypercall::hypercall3;
use grantsvc::abi::grant_table::{op, GnttabMapGrantRef, GnttabUnmapGrantRef};
#[cfg(feature = "lab")]
use grantsvc::abi::grant_table::{GnttabQuerySize, GnttabSetupTable, GrantStatus};
use grantsvc::abi::hypercall_numbers::GRANT_TABLE_OP;
#[cfg(feature = "lab")]
use grantsvc::addr::Mfn;
use grantsvc::hypervisor::XenError;
#[cfg(feature = "lab")]
use grantsvc::ids::DomId;

/// Most frames [`setup_table`] asks for in one call (Xen's default limit is 64).
#[cfg(feature = "lab")]
pub const MAX_SETUP_FRAMES: usize = 64;

/// A grant-table call on `count` structs at `operations`.
///
/// # Safety
/// `operations` must point to `count` structs of the type `command` takes, valid for Xen to
/// read and write during the call.
unsafe fn grant_table_op(command: u32, operations: u64, count: usize) -> Result<(), XenError> {
    let count = u32::try_from(count).map_err(|_| XenError::EINVAL)?;
    // SAFETY: forwarded from the caller.
    let result = unsafe {
        hypercall3(
            GRANT_TABLE_OP,
            u64::from(command),
            operations,
            u64::from(count),
        )
    };
    XenError::check(result).map(|_| ())
}

/// `GNTTABOP_map_grant_ref` on a batch; each op's status, handle and bus address are filled in.
///
/// # Safety
/// 1. Each op's `host_addr` is either (with `GNTMAP_contains_pte`) the machine address of a
///    not-present entry of an L1 table the caller (the pmap) owns, translating a page of a
///    VA region it owns, or (without it) such a virtual address; nothing that Rust code owns
///    or references lives there.
/// 2. The caller keeps the handle of each op that succeeded, and unmaps by it before that
///    page is reused.
pub unsafe fn map(operations: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
    if operations.is_empty() {
        return Ok(());
    }
    // SAFETY: the slice is exclusively ours for the call and holds `len` map ops; where the
    // mappings go is the caller's to justify (this function's contract).
    unsafe {
        grant_table_op(
            op::MAP_GRANT_REF,
            operations.as_mut_ptr() as u64,
            operations.len(),
        )
    }
}

/// `GNTTABOP_unmap_grant_ref` on a batch; each op's status is filled in.
///
/// # Safety
/// 1. Each op names a mapping the caller made with [`map`] (its handle and `host_addr`) and
///    owns: no other holder of that mapping (such as a live `GrantMapping`) may touch the
///    page after the call.
pub unsafe fn unmap(operations: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
    if operations.is_empty() {
        return Ok(());
    }
    // SAFETY: the slice is exclusively ours for the call and holds `len` unmap ops; that
    // nobody uses the pages afterwards is the caller's to vouch for (this function's contract).
    unsafe {
        grant_table_op(
            op::UNMAP_GRANT_REF,
            operations.as_mut_ptr() as u64,
            operations.len(),
        )
    }
}

/// A failed grant-table setup or query: the hypercall's error or the op's status.
#[cfg(feature = "lab")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantTableError {
    Hypercall(XenError),
    Status(GrantStatus),
    TooManyFrames(usize),
    /// Xen named a frame number beyond 2^40, which no machine has.
    FrameOutOfRange(u64),
}

#[cfg(feature = "lab")]
impl core::fmt::Display for GrantTableError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            GrantTableError::Hypercall(error) => write!(formatter, "hypercall failed: {error}"),
            GrantTableError::Status(status) => write!(formatter, "status {status}"),
            GrantTableError::TooManyFrames(frames) => {
                write!(
                    formatter,
                    "{frames} frames asked, at most {MAX_SETUP_FRAMES}"
                )
            }
            GrantTableError::FrameOutOfRange(frame) => {
                write!(
                    formatter,
                    "Xen answered frame {frame:#x}, beyond any machine"
                )
            }
        }
    }
}

/// `GNTTABOP_setup_table` for our own table: grows it to `frames` frames and writes their
/// machine frames into `into` (which must hold at least `frames` entries).
#[cfg(feature = "lab")]
pub fn setup_table(frames: usize, into: &mut [Mfn]) -> Result<(), GrantTableError> {
    if frames > MAX_SETUP_FRAMES || frames > into.len() {
        return Err(GrantTableError::TooManyFrames(frames));
    }
    let mut frame_list = [0u64; MAX_SETUP_FRAMES];
    let mut argument = GnttabSetupTable {
        dom: DomId::SELF.get(),
        nr_frames: frames as u32,
        status: 0,
        frame_list: frame_list.as_mut_ptr() as u64,
    };
    // SAFETY: one setup_table struct, whose frame_list points at MAX_SETUP_FRAMES >= frames
    // entries on our stack.
    unsafe { grant_table_op(op::SETUP_TABLE, core::ptr::addr_of_mut!(argument) as u64, 1) }
        .map_err(GrantTableError::Hypercall)?;
    let status = GrantStatus::from_raw(argument.status);
    if status != GrantStatus::Okay {
        return Err(GrantTableError::Status(status));
    }
    for (slot, frame) in into.iter_mut().zip(frame_list.iter().take(frames)) {
        *slot = Mfn::new(*frame).ok_or(GrantTableError::FrameOutOfRange(*frame))?;
    }
    Ok(())
}

/// `GNTTABOP_query_size` for our own table: (frames in use, most frames allowed).
#[cfg(feature = "lab")]
pub fn query_size() -> Result<(u32, u32), GrantTableError> {
    let mut argument = GnttabQuerySize {
        dom: DomId::SELF.get(),
        ..GnttabQuerySize::default()
    };
    // SAFETY: one query_size struct on our stack.
    unsafe { grant_table_op(op::QUERY_SIZE, core::ptr::addr_of_mut!(argument) as u64, 1) }
        .map_err(GrantTableError::Hypercall)?;
    let status = GrantStatus::from_raw(argument.status);
    if status != GrantStatus::Okay {
        return Err(GrantTableError::Status(status));
    }
    Ok((argument.nr_frames, argument.max_nr_frames))
}

#[cfg(test)]
mod tests;
