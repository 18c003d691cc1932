//! The data grants of one batch of requests, as the session maps them: in one region per access (one `enter_gnt` each, one `remove` each after the copy), from the persistent-grant cache, or one page at a time for indirect segment pages.
//!
//! Every kind implements [`DataPages`], so [`super::service::answer_batch`] copies through
//! whichever the device negotiated. A mapping that fails for the whole batch is retried per
//! request, so that only the requests naming a grant that does not map are refused
//! (`BLKIF_RSP_ERROR`); the others are served.

use super::execute::{DataPages, PageFault};
use super::persistent_grants::{Acquired, GrantMapper, MapFault, PersistentGrants};
use super::service::Taken;
use super::validate::{Refusal, RefusalReason, ValidRequest};
use crate::abi::blkif::status;
use crate::addr::PAGE_SIZE;
use crate::ids::{DomId, GrantRef};
use crate::peer::sorted_unique::sorted_unique;
use crate::pmap::{GrantMapping, PmapLock, MAX_REGION_PAGES};
use crate::shared_memory::SharedMemory;
use alloc::vec::Vec;
use litemap::LiteMap;

/// Where a grant of the batch is mapped: (region index, page index).
type Place = (usize, usize);

/// The grants of one batch, mapped for it alone.
pub struct BatchPages<L: PmapLock> {
    regions: Vec<GrantMapping<L>>,
    /// Grant → where, in the writable regions and in the read-only ones. Sorted vectors, not
    /// BTreeMaps whose code the kernel image would carry for these maps alone (issue 10); a
    /// batch's grants are mapped in ascending order, so each insertion is an append.
    writable_places: LiteMap<GrantRef, Place>,
    read_only_places: LiteMap<GrantRef, Place>,
}

/// Grants each request needs (ascending, each once), and whether grantsvc writes into them (a
/// read from the disk).
fn needs(request: &ValidRequest) -> (bool, Vec<GrantRef>) {
    (
        request.writes_pages(),
        sorted_unique(request.grants().collect()),
    )
}

/// Turns `taken` into a refusal because `gref` did not map.
fn refuse(taken: &mut Taken, gref: GrantRef) {
    taken.checked = Err(Refusal {
        id: taken.id,
        operation: taken.operation,
        status: status::ERROR,
        reason: RefusalReason::GrantDidNotMap { gref },
    });
}

impl<L: PmapLock + Clone> BatchPages<L> {
    /// Maps the data grants of every valid request of `batch` of frontend `peer`: the pages
    /// grantsvc writes in one writable region, the pages it only reads in one read-only region
    /// (as Linux blkback maps them). A request whose grants do not map is turned into a
    /// refusal. Returns the pages and the hypercall batches made.
    pub fn map(lock: &L, peer: DomId, batch: &mut [Taken]) -> BatchPages<L> {
        let mut pages = BatchPages {
            regions: Vec::new(),
            writable_places: LiteMap::new(),
            read_only_places: LiteMap::new(),
        };
        for writable in [true, false] {
            let mut wanted = Vec::new();
            for taken in batch.iter() {
                if let Ok(request) = &taken.checked {
                    let (writes, grants) = needs(request);
                    if writes == writable {
                        wanted.extend(grants);
                    }
                }
            }
            let wanted = sorted_unique(wanted);
            let mut all_mapped = true;
            for chunk in wanted.chunks(MAX_REGION_PAGES) {
                all_mapped &= pages.map_region(lock, peer, chunk, writable);
            }
            if all_mapped {
                continue;
            }
            // Some grant of the batch did not map: find the requests it belongs to.
            for taken in batch.iter_mut() {
                let Ok(request) = &taken.checked else {
                    continue;
                };
                let (writes, grants) = needs(request);
                let missing: Vec<GrantRef> = grants
                    .into_iter()
                    .filter(|gref| !pages.places(writable).contains_key(gref))
                    .collect();
                if writes != writable || missing.is_empty() {
                    continue;
                }
                if !pages.map_region(lock, peer, &missing, writable) {
                    let bad = missing
                        .iter()
                        .copied()
                        .find(|gref| !pages.map_region(lock, peer, &[*gref], writable));
                    if let Some(gref) = bad {
                        refuse(taken, gref);
                    }
                }
            }
        }
        pages
    }

    /// Maps `refs` as one region; false if it did not map (nothing of it stays mapped).
    fn map_region(&mut self, lock: &L, peer: DomId, refs: &[GrantRef], writable: bool) -> bool {
        if refs.is_empty() {
            return true;
        }
        match GrantMapping::map(lock.clone(), peer, refs, !writable) {
            Ok(region) => {
                let index = self.regions.len();
                let places = match writable {
                    true => &mut self.writable_places,
                    false => &mut self.read_only_places,
                };
                for (page, gref) in refs.iter().enumerate() {
                    places.insert(*gref, (index, page));
                }
                self.regions.push(region);
                true
            }
            Err(_) => false,
        }
    }

    /// Regions mapped (one `enter_gnt` batch each).
    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    /// Unmaps every region (one `remove` each); returns the pages whose unmap failed.
    pub fn unmap(self) -> usize {
        let mut failed = 0;
        for region in self.regions {
            let pages = region.size() / PAGE_SIZE;
            if let Err(error) = region.unmap() {
                log::error!("blkif: unmapping {pages} data page(s): {error}");
                failed += pages;
            }
        }
        failed
    }

    fn places(&self, writable: bool) -> &LiteMap<GrantRef, Place> {
        match writable {
            true => &self.writable_places,
            false => &self.read_only_places,
        }
    }

    fn region(&self, gref: GrantRef, writable: bool) -> Option<(&GrantMapping<L>, usize)> {
        let (index, page) = *self.places(writable).get(&gref)?;
        Some((self.regions.get(index)?, page * PAGE_SIZE))
    }
}

impl<L: PmapLock + Clone> DataPages for BatchPages<L> {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        let (region, base) = self
            .region(gref, false)
            .or_else(|| self.region(gref, true))
            .ok_or(PageFault { gref })?;
        within_page(gref, offset, into.len())?;
        region
            .read_bytes(base + offset, into)
            .map_err(|_| PageFault { gref })
    }

    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault> {
        let (region, base) = self.region(gref, true).ok_or(PageFault { gref })?;
        within_page(gref, offset, from.len())?;
        region
            .write_bytes(base + offset, from)
            .map_err(|_| PageFault { gref })
    }
}

/// Refuses an access that would leave its page (and reach the next grant of the region).
fn within_page(gref: GrantRef, offset: usize, length: usize) -> Result<(), PageFault> {
    match offset.checked_add(length) {
        Some(end) if end <= PAGE_SIZE => Ok(()),
        _ => Err(PageFault { gref }),
    }
}

/// Maps single grants of one frontend writable, for the persistent-grant cache.
pub struct SingleGrants<'a, L> {
    pub lock: &'a L,
    pub peer: DomId,
}

impl<L: PmapLock + Clone> GrantMapper for SingleGrants<'_, L> {
    type Mapping = GrantMapping<L>;

    fn map(&mut self, gref: GrantRef) -> Result<GrantMapping<L>, MapFault> {
        GrantMapping::map(self.lock.clone(), self.peer, &[gref], false)
            .map_err(|_| MapFault { gref })
    }

    fn unmap(&mut self, mapping: GrantMapping<L>) {
        if let Err(error) = mapping.unmap() {
            log::error!(
                "blkif: unmapping a persistent grant of domain {}: {error}",
                self.peer
            );
        }
    }
}

/// The data grants of one batch taken from (or added to) the persistent-grant cache.
pub struct PersistentPages<'a, L: PmapLock> {
    cache: &'a mut PersistentGrants<GrantMapping<L>>,
    /// Grants mapped for this batch only (the cache was full of grants in use).
    transient: LiteMap<GrantRef, GrantMapping<L>>,
    /// Grants acquired from the cache, to release after the batch.
    acquired: Vec<GrantRef>,
}

impl<'a, L: PmapLock + Clone> PersistentPages<'a, L> {
    /// Acquires every grant of every valid request in `batch` at time `now`; a request whose
    /// grant does not map is turned into a refusal.
    pub fn acquire(
        cache: &'a mut PersistentGrants<GrantMapping<L>>,
        mapper: &mut SingleGrants<'_, L>,
        batch: &mut [Taken],
        now: u64,
    ) -> PersistentPages<'a, L> {
        let mut pages = PersistentPages {
            cache,
            transient: LiteMap::new(),
            acquired: Vec::new(),
        };
        for taken in batch.iter_mut() {
            let Ok(request) = &taken.checked else {
                continue;
            };
            let grants = sorted_unique(request.grants().collect());
            let mut bad = None;
            for gref in grants {
                if pages.transient.contains_key(&gref) {
                    continue;
                }
                match pages.cache.acquire(gref, now, mapper) {
                    Ok(Acquired::Cached) => pages.acquired.push(gref),
                    Ok(Acquired::Transient(mapping)) => {
                        pages.transient.insert(gref, mapping);
                    }
                    Err(fault) => {
                        bad = Some(fault.gref);
                        break;
                    }
                }
            }
            if let Some(gref) = bad {
                refuse(taken, gref);
            }
        }
        pages
    }

    /// Gives the cached grants back and unmaps the transient ones.
    pub fn release(self, mapper: &mut SingleGrants<'_, L>, now: u64) {
        for gref in self.acquired {
            self.cache.release(gref, now);
        }
        for (_, mapping) in self.transient.into_tuple_vec() {
            mapper.unmap(mapping);
        }
    }

    fn mapping(&self, gref: GrantRef) -> Option<&GrantMapping<L>> {
        self.transient.get(&gref).or_else(|| self.cache.get(gref))
    }
}

impl<L: PmapLock + Clone> DataPages for PersistentPages<'_, L> {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        within_page(gref, offset, into.len())?;
        self.mapping(gref)
            .ok_or(PageFault { gref })?
            .read_bytes(offset, into)
            .map_err(|_| PageFault { gref })
    }

    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault> {
        within_page(gref, offset, from.len())?;
        self.mapping(gref)
            .ok_or(PageFault { gref })?
            .write_bytes(offset, from)
            .map_err(|_| PageFault { gref })
    }
}

/// Indirect segment pages taken through the persistent-grant cache while a request is checked
/// (as Linux blkback maps them, `xen_blkbk_parse_indirect` through `xen_blkbk_map`): acquired,
/// copied and released at once, so a frontend that reuses its segment pages costs no mapping.
/// A page that does not map writable (granted read-only) is mapped read-only for its copy.
pub struct PersistentIndirectPages<'a, 'b, L: PmapLock> {
    pub cache: &'a mut PersistentGrants<GrantMapping<L>>,
    pub mapper: SingleGrants<'b, L>,
    /// The clock that stamps the use.
    pub now: u64,
}

impl<L: PmapLock + Clone> DataPages for PersistentIndirectPages<'_, '_, L> {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        within_page(gref, offset, into.len())?;
        match self.cache.acquire(gref, self.now, &mut self.mapper) {
            Ok(Acquired::Cached) => {
                let copied = match self.cache.get(gref) {
                    Some(mapping) => mapping
                        .read_bytes(offset, into)
                        .map_err(|_| PageFault { gref }),
                    None => Err(PageFault { gref }),
                };
                self.cache.release(gref, self.now);
                copied
            }
            Ok(Acquired::Transient(mapping)) => {
                let copied = mapping
                    .read_bytes(offset, into)
                    .map_err(|_| PageFault { gref });
                self.mapper.unmap(mapping);
                copied
            }
            Err(_) => IndirectPages {
                lock: self.mapper.lock,
                peer: self.mapper.peer,
            }
            .read_page(gref, offset, into),
        }
    }

    fn write_page(
        &mut self,
        gref: GrantRef,
        _offset: usize,
        _from: &[u8],
    ) -> Result<(), PageFault> {
        segment_pages_are_only_read(gref)
    }
}

/// Indirect segment pages, mapped read-only one at a time while a request is checked, and
/// unmapped as soon as the page is copied (the copy alone is decoded).
pub struct IndirectPages<'a, L> {
    pub lock: &'a L,
    pub peer: DomId,
}

impl<L: PmapLock + Clone> DataPages for IndirectPages<'_, L> {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        within_page(gref, offset, into.len())?;
        let mapping = GrantMapping::map(self.lock.clone(), self.peer, &[gref], true)
            .map_err(|_| PageFault { gref })?;
        let copied = mapping.read_bytes(offset, into);
        if let Err(error) = mapping.unmap() {
            log::error!(
                "blkif: unmapping an indirect page of domain {}: {error}",
                self.peer
            );
        }
        copied.map_err(|_| PageFault { gref })
    }

    fn write_page(
        &mut self,
        gref: GrantRef,
        _offset: usize,
        _from: &[u8],
    ) -> Result<(), PageFault> {
        segment_pages_are_only_read(gref)
    }
}

/// The answer of both indirect-page readers to a write: segment pages are only read.
fn segment_pages_are_only_read(gref: GrantRef) -> Result<(), PageFault> {
    Err(PageFault { gref })
}
