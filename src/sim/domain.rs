//! A simulated domain's grant table: entries (valid, read-only, revoked, invalid), injectable failures, active-use counts.

use crate::abi::grant_table::gtf;
use crate::addr::Mfn;
use crate::ids::DomId;
use alloc::vec::Vec;

/// What a grant entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantEntryState {
    /// Never written (`GTF_invalid`).
    Invalid,
    /// Access to `frame` permitted to `grantee`.
    Permitted {
        frame: Mfn,
        grantee: DomId,
        readonly: bool,
    },
    /// Access was ended by the granter.
    Revoked,
}

/// One grant entry with Xen's active-mapping bookkeeping.
#[derive(Clone, Debug)]
pub(super) struct GrantEntry {
    pub state: GrantEntryState,
    /// Mappings alive through this entry (read-only / writable), like Xen's active pin counts.
    pub readers: u32,
    pub writers: u32,
    /// Maps still to answer with `GNTST_eagain`.
    pub eagain_left: u32,
    /// Unmaps still to refuse with `GNTST_general_error`.
    pub unmap_failures_left: u32,
}

/// A domain of the simulation: its frames and grant table.
#[derive(Clone, Debug, Default)]
pub struct SimDomain {
    /// Machine frames it owns, by guest frame number.
    pub frames: Vec<Mfn>,
    /// True for an HVM/PVH domain: plain `mmu_update` values are its guest frame numbers.
    pub translated: bool,
    pub(super) grants: Vec<GrantEntry>,
}

impl SimDomain {
    /// The `GTF_*` flags the granter would see in the shared entry (type, read-only, and the
    /// `GTF_reading`/`GTF_writing` bits Xen sets while a mapping lives).
    pub fn grant_flags(&self, index: usize) -> Option<u16> {
        let entry = self.grants.get(index)?;
        let mut flags = match entry.state {
            GrantEntryState::Permitted { readonly, .. } => {
                gtf::PERMIT_ACCESS | if readonly { gtf::READONLY } else { 0 }
            }
            GrantEntryState::Invalid | GrantEntryState::Revoked => gtf::INVALID,
        };
        if entry.readers + entry.writers > 0 {
            flags |= gtf::READING;
        }
        if entry.writers > 0 {
            flags |= gtf::WRITING;
        }
        Some(flags)
    }
}
