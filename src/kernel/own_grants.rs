//! Our own grant table: set up and mapped through the pmap once, refs handed out and taken back, grants made and ended.
//!
//! Until peers exist, grantsvc grants pages of its own to itself and maps them with
//! `enter_gnt`, which exercises exactly the path a peer's grants take. Refs 0..8 are the
//! toolstack's (console and xenstore rings) and are never handed out.

use super::address_space;
use super::xen::event_channel::{self, PortStatus};
use super::xen::grant_entries::{map_own_table, EntryError, GrantEntries};
use super::xen::grant_table::{self, GrantTableError, MAX_SETUP_FRAMES};
use alloc::collections::BTreeSet;
use alloc::vec;
use grantsvc::addr::Mfn;
use grantsvc::hypervisor::XenError;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::pmap::PmapError;

/// Refs below this one belong to the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const FIRST_FREE_REF: u32 = 8;

/// Grant-table frames we ask for: 4 frames are 2,048 v1 entries, enough for the 512-page
/// benchmark plus the other scenarios' pages.
pub const WANTED_FRAMES: u32 = 4;

/// Why our grant table is unusable.
#[derive(Clone, Copy, Debug)]
pub enum OwnGrantError {
    NoPmap,
    QuerySize(GrantTableError),
    Setup(GrantTableError),
    Map(PmapError),
    DomainId(XenError),
    DomainIdStatus(PortStatus),
}

impl core::fmt::Display for OwnGrantError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OwnGrantError::NoPmap => formatter.write_str("the pmap is not set up"),
            OwnGrantError::QuerySize(error) => write!(formatter, "GNTTABOP_query_size: {error}"),
            OwnGrantError::Setup(error) => write!(formatter, "GNTTABOP_setup_table: {error}"),
            OwnGrantError::Map(error) => write!(formatter, "mapping the grant table: {error}"),
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

/// Our grant table and the refs of it we hand out.
pub struct OwnGrantTable {
    entries: GrantEntries,
    domain: DomId,
    free: BTreeSet<u32>,
}

static TABLE: spin::Once<Result<spin::Mutex<OwnGrantTable>, OwnGrantError>> = spin::Once::new();

/// Our grant table, set up on first use. Never call it holding the pmap lock: the set-up
/// maps the table through the pmap.
pub fn table() -> Result<&'static spin::Mutex<OwnGrantTable>, OwnGrantError> {
    TABLE
        .call_once(|| set_up().map(spin::Mutex::new))
        .as_ref()
        .map_err(|error| *error)
}

fn set_up() -> Result<OwnGrantTable, OwnGrantError> {
    let pmap = address_space::pmap().ok_or(OwnGrantError::NoPmap)?;
    let domain = own_domain_id()?;
    let (in_use, most) = grant_table::query_size().map_err(OwnGrantError::QuerySize)?;
    let wanted = WANTED_FRAMES.max(in_use).min(most) as usize;
    let mut frames = vec![Mfn::default(); wanted.min(MAX_SETUP_FRAMES)];
    grant_table::setup_table(frames.len(), &mut frames).map_err(OwnGrantError::Setup)?;
    let entries = map_own_table(&mut pmap.lock(), &frames).map_err(OwnGrantError::Map)?;
    let free = (FIRST_FREE_REF..entries.len()).collect();
    log::info!(
        "own grant table: domain {domain}, {} frame(s) (at most {most}) = {} entries mapped at {}",
        frames.len(),
        entries.len(),
        entries.range().start()
    );
    Ok(OwnGrantTable {
        entries,
        domain,
        free,
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
        self.free.pop_first().map(GrantRef::new)
    }

    /// Gives back a ref whose access has ended (refused, and kept, while it is granted).
    pub fn free_ref(&mut self, grant_ref: GrantRef) -> Result<(), EntryError> {
        let flags = self.entries.flags(grant_ref)?;
        if flags != 0 || grant_ref.get() < FIRST_FREE_REF {
            return Err(EntryError::Busy { grant_ref, flags });
        }
        self.free.insert(grant_ref.get());
        Ok(())
    }

    /// Grants `domain` access to `frame` through `grant_ref`.
    pub fn grant(
        &self,
        grant_ref: GrantRef,
        domain: DomId,
        frame: Mfn,
        readonly: bool,
    ) -> Result<(), EntryError> {
        self.entries.grant(grant_ref, domain, frame, readonly)
    }

    /// Ends access through `grant_ref`; refused while a mapping of it lives.
    pub fn end_access(&self, grant_ref: GrantRef) -> Result<(), EntryError> {
        self.entries.end_access(grant_ref)
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
