//! `pmap-mixed-remove`: ordinary, foreign and grant pages (and a hole) in one range, all taken away by ONE remove.

use super::self_grants::{
    outcome, pmap_and_table, release_spacer, start_fresh_table, Baseline, SelfGrants,
};
use super::Outcome;
use crate::kernel::booted::Kernel;
use alloc::format;
use alloc::string::String;
use grantsvc::ids::DomId;
use grantsvc::pmap::{ForeignFlags, Mapping, Prot};

/// The range's layout, page by page: ordinary 0..4, grant region 4..10, a hole at 10,
/// foreign 11..13, a second grant region 13..16.
const RANGE_PAGES: u64 = 16;
const ORDINARY: core::ops::Range<u64> = 0..4;
const FIRST_REGION: core::ops::Range<u64> = 4..10;
const FOREIGN: core::ops::Range<u64> = 11..13;
const SECOND_REGION: core::ops::Range<u64> = 13..16;

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("pmap-mixed-remove", body(kernel))
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let (pmap, table) = pmap_and_table(kernel)?;
    let before = Baseline::take(pmap);
    // Pages 0..9 are granted (for both regions), 9..15 entered as ordinary or foreign.
    let grants = SelfGrants::new(kernel, table, 15, false)?;
    grants.fill(0x77)?;
    let domain = grants.domain;
    let first_refs = grants.refs.get(0..6).ok_or("refs")?;
    let second_refs = grants.refs.get(6..9).ok_or("refs")?;

    let spacer = start_fresh_table(pmap)?;
    let mut locked = pmap.lock();
    let range = locked.allocate_va(RANGE_PAGES).ok_or("no address space")?;
    let page = |index: u64| range.page(index).ok_or("page outside the range");
    for (slot, index) in ORDINARY.enumerate() {
        let frame = grants.pages.pfn(9 + slot).ok_or("pfn")?;
        locked
            .enter(page(index)?, frame, Prot::READ_WRITE)
            .map_err(|error| format!("enter at page {index}: {error}"))?;
    }
    for (slot, index) in FOREIGN.enumerate() {
        let frame = grants.pages.mfn(13 + slot).ok_or("mfn")?;
        locked
            .enter_foreign(
                page(index)?,
                frame,
                DomId::SELF,
                Prot::READ_ONLY,
                ForeignFlags::default(),
            )
            .map_err(|error| format!("enter_foreign at page {index}: {error}"))?;
    }
    locked
        .enter_gnt(page(FIRST_REGION.start)?, domain, first_refs, false)
        .map_err(|error| format!("enter_gnt of 6 pages: {error}"))?;
    locked
        .enter_gnt(page(SECOND_REGION.start)?, domain, second_refs, true)
        .map_err(|error| format!("enter_gnt of 3 pages read-only: {error}"))?;
    let mut kinds = [0u32; 4];
    for index in 0..RANGE_PAGES {
        match locked.extract(page(index)?) {
            Some(Mapping::Ordinary { .. }) => kinds[0] += 1,
            Some(Mapping::Foreign { .. }) => kinds[1] += 1,
            Some(Mapping::Grant { .. }) => kinds[2] += 1,
            None => kinds[3] += 1,
            Some(other) => return Err(format!("page {index} maps {other:?}")),
        }
    }
    if kinds != [4, 2, 9, 1] {
        return Err(format!(
            "before remove: {kinds:?} ordinary/foreign/grant/empty pages, expected [4, 2, 9, 1]"
        ));
    }
    let summary = locked
        .remove(range)
        .map_err(|error| format!("remove of the mixed range: {error}"))?;
    // The emptied L1 stays hooked for reuse; reclaiming it gives its frame back.
    let reclaimed = locked.reclaim_empty_tables() as u64;
    let left = (0..RANGE_PAGES)
        .filter_map(|index| range.page(index))
        .filter(|&address| locked.extract(address).is_some())
        .count();
    let _ = locked.free_va(range);
    drop(locked);
    log::info!("pmap-mixed-remove: one remove of {RANGE_PAGES} pages: {summary:?}");
    if left != 0 {
        return Err(format!("{left} page(s) still mapped after the remove"));
    }
    release_spacer(pmap, spacer)?;
    if summary.page_tables_freed + reclaimed == 0 {
        return Err("the range's L1 table was neither freed nor reclaimed when it emptied".into());
    }
    if summary.ordinary_pages != 6 || summary.grant_pages != 9 {
        return Err(format!(
            "remove reports {} ordinary/foreign and {} grant pages, expected 6 and 9",
            summary.ordinary_pages, summary.grant_pages
        ));
    }
    grants.expect_none_in_use()?;
    grants.expect(0x77)?;
    grants.finish()?;
    let restored = before.check_restored(pmap)?;
    Ok(format!(
        "4 ordinary, 2 foreign and 9 grant pages gone in one remove ({} page-table page(s) freed, {reclaimed} reclaimed), every grant entry ended; {restored}",
        summary.page_tables_freed
    ))
}
