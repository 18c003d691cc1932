//! The per-ring persistent-grant cache: data grants kept mapped across requests, bounded, least recently used ones unmapped first.
//!
//! Linux blkback's rules (`blkback.c`: `max_persistent_grants` 1056 by default; every
//! `LRU_INTERVAL` = 100 ms its ring thread runs `purge_persistent_gnt`, which unmaps every grant
//! unused for `persistent_grant_unused_seconds` = 60 and, when the cache overflowed, 5 %
//! (`LRU_PERCENT_CLEAN`) of the least recently used ones more; a grant in use is never purged):
//! - a grant is mapped writable once and kept, keyed by its grant reference;
//! - the cache never holds more than its capacity; when full, the least recently used entry that
//!   no request is using is unmapped at once to make room (where Linux maps the new grant
//!   transiently and purges 5 % at its next round); when every entry is in use the new grant is
//!   mapped for this request only ([`Acquired::Transient`]) and unmapped after it;
//! - [`PersistentGrants::purge_idle`] unmaps every entry no request uses that was last used the
//!   idle limit ago or longer; [`PersistentGrants::purge_due`] says when the next one can be,
//!   so that the caller arms a timer only while something is cached (Linux's thread wakes every
//!   100 ms whether or not; grantsvc's loop must not poll);
//! - [`PersistentGrants::close`] unmaps everything (disconnect, frontend death, shutdown).
//!
//! Mapping goes through [`GrantMapper`], which the kernel implements over the pmap and tests
//! implement over a fake that counts live mappings.

use crate::ids::GrantRef;
use litemap::LiteMap;

/// Linux blkback's default bound per ring.
pub const DEFAULT_CAPACITY: usize = 1056;
/// Linux blkback's idle limit, in milliseconds.
pub const DEFAULT_IDLE_MILLISECONDS: u64 = 60_000;
/// Linux blkback's `LRU_INTERVAL`: purges are at least this far apart, in milliseconds.
pub const PURGE_INTERVAL_MILLISECONDS: u64 = 100;

/// A grant that did not map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapFault {
    pub gref: GrantRef,
}

/// Maps and unmaps single data grants of one frontend.
pub trait GrantMapper {
    /// One live mapping (unmapped only by handing it back to [`GrantMapper::unmap`]).
    type Mapping;

    /// Maps the page `gref` grants, writable.
    fn map(&mut self, gref: GrantRef) -> Result<Self::Mapping, MapFault>;

    /// Unmaps `mapping` (the kernel logs a failure; nothing a caller could do about it).
    fn unmap(&mut self, mapping: Self::Mapping);
}

#[derive(Debug)]
struct Entry<T> {
    mapping: T,
    last_used: u64,
    users: u32,
}

/// How a grant was obtained for a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired<T> {
    /// In the cache (found or newly added); give it back with [`PersistentGrants::release`].
    Cached,
    /// The cache is full of grants in use: mapped for this request only; unmap it afterwards.
    Transient(T),
}

/// The cache of one ring.
#[derive(Debug)]
pub struct PersistentGrants<T> {
    capacity: usize,
    idle_limit: u64,
    /// A sorted vector, not a BTreeMap, whose code the kernel image would carry for this one
    /// map (issue 10): lookups are binary searches; an insertion or removal moves the entries
    /// after it, which happens only on a miss, beside a map or unmap hypercall.
    entries: LiteMap<GrantRef, Entry<T>>,
    /// No entry was last used before this (a lower bound: exact after a purge, kept when the
    /// oldest entry is used again, so a purge may come early and find nothing, never late).
    earliest_use: Option<u64>,
}

impl<T> PersistentGrants<T> {
    /// An empty cache holding at most `capacity` grants, unmapping those idle for `idle_limit`
    /// (in the caller's time unit).
    pub fn new(capacity: usize, idle_limit: u64) -> Self {
        PersistentGrants {
            capacity,
            idle_limit,
            entries: LiteMap::new(),
            earliest_use: None,
        }
    }

    /// When [`PersistentGrants::purge_idle`] may first find an idle entry (in the caller's
    /// time unit); `None` while nothing is cached.
    pub fn purge_due(&self) -> Option<u64> {
        self.earliest_use
            .map(|earliest| earliest.saturating_add(self.idle_limit))
    }

    /// Grants held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no grant is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The cached mapping of `gref`, if any.
    pub fn get(&self, gref: GrantRef) -> Option<&T> {
        self.entries.get(&gref).map(|entry| &entry.mapping)
    }

    /// Makes `gref` available for a request at time `now`: from the cache, or mapped and added
    /// (evicting the least recently used idle entry if full), or mapped transiently.
    pub fn acquire<M: GrantMapper<Mapping = T>>(
        &mut self,
        gref: GrantRef,
        now: u64,
        mapper: &mut M,
    ) -> Result<Acquired<T>, MapFault> {
        if let Some(entry) = self.entries.get_mut(&gref) {
            entry.users = entry.users.saturating_add(1);
            entry.last_used = now;
            return Ok(Acquired::Cached);
        }
        if self.entries.len() >= self.capacity && !self.evict_least_recently_used(mapper) {
            return mapper.map(gref).map(Acquired::Transient);
        }
        let mapping = mapper.map(gref)?;
        self.earliest_use = Some(self.earliest_use.map_or(now, |earliest| earliest.min(now)));
        self.entries.insert(
            gref,
            Entry {
                mapping,
                last_used: now,
                users: 1,
            },
        );
        Ok(Acquired::Cached)
    }

    /// A request is done with `gref` (acquired as [`Acquired::Cached`]).
    pub fn release(&mut self, gref: GrantRef, now: u64) {
        if let Some(entry) = self.entries.get_mut(&gref) {
            entry.users = entry.users.saturating_sub(1);
            entry.last_used = now;
        }
    }

    /// Unmaps the least recently used entry no request is using; false if there is none.
    fn evict_least_recently_used<M: GrantMapper<Mapping = T>>(&mut self, mapper: &mut M) -> bool {
        // A linear scan: eviction happens only when the (at most ~1000-entry) cache is full.
        let oldest = self
            .entries
            .iter()
            .filter(|(_, entry)| entry.users == 0)
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(&gref, _)| gref);
        match oldest.and_then(|gref| self.entries.remove(&gref)) {
            Some(entry) => {
                mapper.unmap(entry.mapping);
                true
            }
            None => false,
        }
    }

    /// Unmaps every entry no request uses that was last used `idle_limit` or more before
    /// `now`; returns how many.
    pub fn purge_idle<M: GrantMapper<Mapping = T>>(&mut self, now: u64, mapper: &mut M) -> usize {
        let idle_limit = self.idle_limit;
        let mut purged = 0;
        // Rebuilt in one pass (the kept entries appended in order), not removed one by one,
        // which would move the rest of the vector for each.
        let mut kept = LiteMap::with_capacity(self.entries.len());
        for (gref, entry) in core::mem::take(&mut self.entries).into_tuple_vec() {
            if entry.users == 0 && now.saturating_sub(entry.last_used) >= idle_limit {
                mapper.unmap(entry.mapping);
                purged += 1;
            } else {
                // In order, so appended; `insert` would place one that was not.
                if let Some((gref, entry)) = kept.try_append(gref, entry) {
                    kept.insert(gref, entry);
                }
            }
        }
        self.entries = kept;
        // An entry in use is released later, at `now` or after.
        self.earliest_use = self
            .entries
            .values()
            .map(|entry| {
                if entry.users > 0 {
                    now
                } else {
                    entry.last_used
                }
            })
            .min();
        purged
    }

    /// Unmaps everything, in use or not (the ring is quiesced); returns how many.
    pub fn close<M: GrantMapper<Mapping = T>>(&mut self, mapper: &mut M) -> usize {
        let count = self.entries.len();
        self.earliest_use = None;
        for (_, entry) in core::mem::take(&mut self.entries).into_tuple_vec() {
            mapper.unmap(entry.mapping);
        }
        count
    }
}

#[cfg(test)]
#[path = "persistent_grants_tests.rs"]
mod tests;
