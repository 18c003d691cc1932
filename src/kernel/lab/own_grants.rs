//! Our own grant table: set up and mapped through the pmap once, refs handed out and taken back, pages of ours granted and their grants ended.
//!
//! Until peers exist, grantsvc grants pages of its own to itself and maps them with
//! `enter_gnt`, which exercises exactly the path a peer's grants take. Refs 0..8 are the
//! toolstack's (console and xenstore rings) and are never handed out; a ref is granted or
//! ended only while it is handed out, so no caller can end the toolstack's grants.

use crate::kernel::address_space::PmapHandle;
use crate::kernel::xen::event_channel::{self, PortStatus};
use crate::kernel::xen::grant_entries::{self, EntryError, GrantEntries, SetUpError};
use crate::kernel::xen::own_pages::OwnPages;
use alloc::collections::BTreeSet;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, GrantRef};

/// Refs below this one belong to the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const FIRST_FREE_REF: u32 = 8;

/// Grant-table frames we ask for: 4 frames are 2,048 v1 entries, enough for the 512-page
/// benchmark plus the other scenarios' pages.
pub const WANTED_FRAMES: u32 = 4;

/// Why our grant table is unusable.
#[derive(Clone, Copy, Debug)]
pub enum OwnGrantError {
    SetUp(SetUpError),
    DomainId(XenError),
    DomainIdStatus(PortStatus),
}

impl core::fmt::Display for OwnGrantError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OwnGrantError::SetUp(error) => write!(formatter, "{error}"),
            OwnGrantError::DomainId(error) => {
                write!(
                    formatter,
                    "learning our domid through an event channel: {error}"
                )
            }
            OwnGrantError::DomainIdStatus(status) => {
                write!(formatter, "an unbound port for DOMID_SELF reads {status:?}")
            }
        }
    }
}

/// Why a ref was not granted, ended or given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefError {
    /// The ref is not one [`OwnGrantTable::allocate_ref`] handed out.
    NotAllocated(GrantRef),
    /// The entry refused.
    Entry(EntryError),
}

impl core::fmt::Display for RefError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RefError::NotAllocated(grant_ref) => {
                write!(formatter, "grant ref {grant_ref} was not handed out")
            }
            RefError::Entry(error) => write!(formatter, "{error}"),
        }
    }
}

impl From<EntryError> for RefError {
    fn from(error: EntryError) -> RefError {
        RefError::Entry(error)
    }
}

/// Our grant table and the refs of it we hand out.
pub struct OwnGrantTable {
    entries: GrantEntries,
    domain: DomId,
    free: BTreeSet<u32>,
    allocated: BTreeSet<u32>,
}

static TABLE: spin::Once<Result<spin::Mutex<OwnGrantTable>, OwnGrantError>> = spin::Once::new();

/// Our grant table, set up on first use through `pmap`, the kernel's one. Never call it
/// holding the pmap lock: the set-up maps the table through the pmap.
pub fn table(pmap: PmapHandle) -> Result<&'static spin::Mutex<OwnGrantTable>, OwnGrantError> {
    TABLE
        .call_once(|| set_up(pmap).map(spin::Mutex::new))
        .as_ref()
        .map_err(|error| *error)
}

fn set_up(pmap: PmapHandle) -> Result<OwnGrantTable, OwnGrantError> {
    let domain = own_domain_id()?;
    let entries =
        grant_entries::set_up(&mut pmap.lock(), WANTED_FRAMES).map_err(OwnGrantError::SetUp)?;
    let free = (FIRST_FREE_REF..entries.len()).collect();
    log::info!("own grant table: domain {domain}, {entries:?}");
    Ok(OwnGrantTable {
        entries,
        domain,
        free,
        allocated: BTreeSet::new(),
    })
}

/// Our domain id: an unbound port offered to `DOMID_SELF` records the caller's real id as
/// its remote end, which `EVTCHNOP_status` then reports.
pub fn own_domain_id() -> Result<DomId, OwnGrantError> {
    let port = event_channel::alloc_unbound(DomId::SELF).map_err(OwnGrantError::DomainId)?;
    let status = event_channel::port_status(port);
    let closed = event_channel::close(port);
    let status = status.map_err(OwnGrantError::DomainId)?;
    closed.map_err(OwnGrantError::DomainId)?;
    match status {
        PortStatus::Unbound { remote } if remote.is_ordinary() => Ok(remote),
        other => Err(OwnGrantError::DomainIdStatus(other)),
    }
}

impl OwnGrantTable {
    /// Our domain id (the id our grants must name to be mappable by ourselves).
    pub fn domain(&self) -> DomId {
        self.domain
    }

    /// An unused ref, lowest first, or `None` when all are handed out.
    pub fn allocate_ref(&mut self) -> Option<GrantRef> {
        let number = self.free.pop_first()?;
        self.allocated.insert(number);
        Some(GrantRef::new(number))
    }

    /// Refuses a ref that was not handed out.
    fn check_allocated(&self, grant_ref: GrantRef) -> Result<(), RefError> {
        if self.allocated.contains(&grant_ref.get()) {
            Ok(())
        } else {
            Err(RefError::NotAllocated(grant_ref))
        }
    }

    /// Gives back a ref whose access has ended (refused, and kept, while it is granted).
    pub fn free_ref(&mut self, grant_ref: GrantRef) -> Result<(), RefError> {
        self.check_allocated(grant_ref)?;
        let flags = self.entries.flags(grant_ref)?;
        if flags != 0 {
            return Err(EntryError::Busy { grant_ref, flags }.into());
        }
        self.allocated.remove(&grant_ref.get());
        self.free.insert(grant_ref.get());
        Ok(())
    }

    /// Grants `domain` access to page `index` of `pages` through the handed-out `grant_ref`.
    pub fn grant(
        &mut self,
        grant_ref: GrantRef,
        domain: DomId,
        pages: &OwnPages,
        index: usize,
        readonly: bool,
    ) -> Result<(), RefError> {
        self.check_allocated(grant_ref)?;
        Ok(self
            .entries
            .grant(grant_ref, domain, pages, index, readonly)?)
    }

    /// Ends access through the handed-out `grant_ref`, which grants page `index` of `pages`;
    /// refused while a mapping of it lives.
    pub fn end_access(
        &mut self,
        grant_ref: GrantRef,
        pages: &OwnPages,
        index: usize,
    ) -> Result<(), RefError> {
        self.check_allocated(grant_ref)?;
        Ok(self.entries.end_access(grant_ref, pages, index)?)
    }

    /// The entry's flags (`GTF_*`) now.
    pub fn flags(&self, grant_ref: GrantRef) -> Result<u16, EntryError> {
        self.entries.flags(grant_ref)
    }

    /// The first ref beyond the table (for error tests).
    pub fn first_ref_beyond(&self) -> GrantRef {
        GrantRef::new(self.entries.len())
    }
}
