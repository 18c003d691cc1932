//! `grant-errors`: bad, out-of-table, revoked and read-only refs, a failing ref inside a batch, and overlapping or occupied ranges each end in a typed error with nothing left mapped.

use super::self_grants::{outcome, pmap_and_table, Baseline, PmapLock, SelfGrants};
use super::Outcome;
use crate::kernel::booted::Kernel;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use grantsvc::abi::grant_table::GrantStatus;
use grantsvc::ids::{DomId, GrantRef};
use grantsvc::pmap::{GrantMapError, GrantMapping, PageRange, Prot};

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("grant-errors", body(kernel))
}

/// Maps `refs` of `domain` at a fresh range and expects a refusal that `check` accepts;
/// afterwards nothing of the range may be mapped and no grant page may be live.
fn expect_refused(
    pmap: PmapLock,
    case: &str,
    domain: DomId,
    refs: &[GrantRef],
    readonly: bool,
    check: impl FnOnce(&GrantMapError) -> bool,
) -> Result<(), String> {
    let mut locked = pmap.lock();
    let range = locked
        .allocate_va(refs.len() as u64)
        .ok_or("no address space")?;
    let result = locked.enter_gnt(range.start(), domain, refs, readonly);
    let error = match result {
        Ok(_) => {
            drop(locked);
            return Err(format!("{case}: mapping {refs:?} succeeded"));
        }
        Err(error) => error,
    };
    log::info!("grant-errors: {case}: refused: {error}");
    let left = leftovers(&locked, range);
    let live = locked.stats().live_grant_pages;
    let _ = locked.free_va(range);
    drop(locked);
    if !check(&error) {
        return Err(format!("{case}: unexpected error: {error}"));
    }
    if left > 0 || live > 0 {
        return Err(format!(
            "{case}: {left} page(s) of the range and {live} grant page(s) still mapped"
        ));
    }
    Ok(())
}

/// Pages of `range` that map anything.
fn leftovers(pmap: &crate::kernel::address_space::KernelPmap, range: PageRange) -> u64 {
    (0..range.pages())
        .filter_map(|page| range.page(page))
        .filter(|&address| pmap.extract(address).is_some())
        .count() as u64
}

fn names_ref(error: &GrantMapError, wanted: GrantRef) -> bool {
    matches!(error, GrantMapError::Grant { grant_ref, status, left_mapped: 0, .. }
        if *grant_ref == wanted && *status != GrantStatus::Okay)
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let (pmap, table) = pmap_and_table(kernel)?;
    let before = Baseline::take(pmap);
    let grants = SelfGrants::new(kernel, table, 5, false)?;
    grants.fill(0x3c)?;
    let domain = grants.domain;
    let refs: Vec<GrantRef> = grants.refs.clone();
    let [first, second, third, fourth, fifth] = refs[..] else {
        return Err("expected 5 refs".into());
    };
    // A ref of our table that was never granted: its entry is invalid (flags 0).
    let never_granted = table.lock().allocate_ref().ok_or("no free ref")?;
    let beyond = table.lock().first_ref_beyond();
    let mut cases = 0;

    expect_refused(
        pmap,
        "a ref never granted",
        domain,
        &[never_granted],
        false,
        |error| names_ref(error, never_granted),
    )?;
    cases += 1;
    expect_refused(
        pmap,
        "a ref beyond the table",
        domain,
        &[beyond],
        false,
        |error| matches!(error, GrantMapError::Grant { grant_ref, status: GrantStatus::BadGntref, left_mapped: 0, .. } if *grant_ref == beyond),
    )?;
    cases += 1;
    grants.end_access(3)?;
    expect_refused(pmap, "a revoked ref", domain, &[fourth], false, |error| {
        names_ref(error, fourth)
    })?;
    cases += 1;
    // The good refs around the bad one map in the same hypercall and must be unmapped again.
    expect_refused(
        pmap,
        "a never-granted ref in the middle of a batch",
        domain,
        &[first, second, never_granted, third],
        false,
        |error| names_ref(error, never_granted),
    )?;
    grants.expect_none_in_use()?;
    cases += 1;
    grants.end_access(4)?;
    grants.grant_again(4, true)?;
    expect_refused(
        pmap,
        "a read-only grant mapped writable",
        domain,
        &[fifth],
        false,
        |error| names_ref(error, fifth),
    )?;
    cases += 1;
    expect_refused(
        pmap,
        "a ref of dom0, which granted us nothing",
        DomId::DOM0,
        &[first],
        false,
        |error| matches!(error, GrantMapError::Grant { grant_ref, left_mapped: 0, .. } if *grant_ref == first),
    )?;
    cases += 1;
    let readonly = GrantMapping::map(pmap, domain, &[fifth], true)
        .map_err(|error| format!("mapping the read-only grant read-only: {error}"))?;
    readonly
        .unmap()
        .map_err(|error| format!("unmapping the read-only grant: {error}"))?;

    // Ranges: one overlapping a live region, one over an ordinary page, an empty one.
    let live = GrantMapping::map(pmap, domain, &[first, second], false)
        .map_err(|error| format!("mapping two pages: {error}"))?;
    {
        let mut locked = pmap.lock();
        let inside = live.start().checked_add_pages(1).ok_or("overflow")?;
        match locked.enter_gnt(inside, domain, &[third], false) {
            Err(error @ GrantMapError::OverlapsRegion { region_start })
                if region_start == live.start() =>
            {
                log::info!("grant-errors: a range overlapping a live region: refused: {error}");
            }
            other => return Err(format!("overlapping a live region: {other:?}")),
        }
        match locked.enter_gnt(inside, domain, &[], false) {
            Err(error @ GrantMapError::Empty) => {
                log::info!("grant-errors: no refs: refused: {error}");
            }
            other => return Err(format!("an empty request: {other:?}")),
        }
        let misaligned = live.start().checked_add(8).ok_or("overflow")?;
        match locked.enter_gnt(misaligned, domain, &[third], false) {
            Err(error @ GrantMapError::BadRange) => {
                log::info!("grant-errors: a misaligned address: refused: {error}");
            }
            other => return Err(format!("a misaligned address: {other:?}")),
        }
        let range = locked.allocate_va(2).ok_or("no address space")?;
        let pfn = grants.pages.pfn(2).ok_or("no pfn")?;
        let occupied = range.page(1).ok_or("overflow")?;
        locked
            .enter(occupied, pfn, Prot::READ_ONLY)
            .map_err(|error| format!("entering an ordinary page: {error}"))?;
        let result = locked.enter_gnt(range.start(), domain, &[third, fourth], false);
        let removed = locked.remove(range);
        let _ = locked.free_va(range);
        match result {
            Err(error @ GrantMapError::AlreadyMapped(address)) if address == occupied => {
                log::info!("grant-errors: a range over an ordinary page: refused: {error}");
            }
            other => return Err(format!("a range over an ordinary page: {other:?}")),
        }
        removed.map_err(|error| format!("removing the ordinary page: {error}"))?;
    }
    live.unmap()
        .map_err(|error| format!("unmapping the live region: {error}"))?;
    cases += 4;

    grants.expect_none_in_use()?;
    grants.finish()?;
    table
        .lock()
        .free_ref(never_granted)
        .map_err(|error| format!("{error}"))?;
    let restored = before.check_restored(pmap)?;
    Ok(format!(
        "{cases} refusals, each typed and leaving nothing mapped; the kernel kept running; {restored}"
    ))
}
