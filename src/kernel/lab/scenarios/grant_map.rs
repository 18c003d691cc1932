//! `grant-map`: self-granted pages mapped at addresses the pmap chooses, data checked both ways, then 1,000 map/remove cycles leaving nothing behind.

use super::self_grants::{
    first_difference, outcome, pattern_byte, pattern_page, pmap_and_table, release_spacer,
    start_fresh_table, Baseline, SelfGrants, XorShift,
};
use super::Outcome;
use crate::kernel::booted::Kernel;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use grantsvc::abi::grant_table::gtf;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::pmap::{GrantMapping, Mapping};
use grantsvc::shared_memory::SharedMemory;

/// Pages granted; cycles map between 1 and all of them.
const PAGES: usize = 64;
/// Map/remove cycles.
const CYCLES: u32 = 1000;
/// The pattern written through the direct map, and the one written through the grant mapping.
const FIRST_SEED: u8 = 0x5a;
const SECOND_SEED: u8 = 0xa5;

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("grant-map", body(kernel))
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let (pmap, table) = pmap_and_table(kernel)?;
    let before = Baseline::take(pmap);
    let grants = SelfGrants::new(kernel, table, PAGES, false)?;
    log::info!(
        "grant-map: {PAGES} pages granted to ourselves (domain {}) as refs {}..={}",
        grants.domain,
        grants.refs.first().map_or(0, |grant_ref| grant_ref.get()),
        grants.refs.last().map_or(0, |grant_ref| grant_ref.get())
    );
    grants.fill(FIRST_SEED)?;

    // Mappings from here on start in a fresh L1 table, which each one hooks and its removal
    // frees: page-table pages are created and freed on every cycle.
    let spacer = start_fresh_table(pmap)?;
    let tables_before = pmap.lock().stats().page_table_pages;

    // All pages at once: the pattern shows through the mapping, a write through it shows in
    // the original pages, and Xen marks every entry as mapped for reading and writing.
    let mapping = GrantMapping::map(pmap, grants.domain, &grants.refs, false)
        .map_err(|error| format!("mapping {PAGES} self-granted pages: {error}"))?;
    log::info!(
        "grant-map: {PAGES} pages mapped at {} (pmap stats {:?})",
        mapping.start(),
        pmap.lock().stats()
    );
    let tables_mapped = pmap.lock().stats().page_table_pages;
    if tables_mapped <= tables_before {
        return Err(format!(
            "{tables_mapped} page-table pages with the mapping live, {tables_before} before: no fresh L1 was hooked"
        ));
    }
    let mut buffer = vec![0u8; PAGE_SIZE];
    for page in 0..PAGES {
        mapping
            .read_bytes(page * PAGE_SIZE, &mut buffer)
            .map_err(|error| format!("reading page {page} through the grant mapping: {error}"))?;
        if let Some(offset) = first_difference(&buffer, FIRST_SEED, page) {
            return Err(format!(
                "page {page} byte {offset} reads {:#04x} through the grant mapping, expected {:#04x}",
                buffer.get(offset).copied().unwrap_or(0),
                pattern_byte(FIRST_SEED, page, offset)
            ));
        }
        let flags = grants.flags(page)?;
        if flags & (gtf::READING | gtf::WRITING) != gtf::READING | gtf::WRITING {
            return Err(format!(
                "page {page} mapped read-write but its grant flags are {flags:#06x}"
            ));
        }
        let address = mapping
            .start()
            .checked_add_pages(page as u64)
            .ok_or("address overflow")?;
        // Bound first: the lock must not be held when an early return drops the mapping.
        let found = pmap.lock().extract(address);
        match found {
            Some(Mapping::Grant { grant_ref, .. }) if Some(&grant_ref) == grants.refs.get(page) => {
            }
            other => return Err(format!("extract({address}) says {other:?}")),
        }
        mapping
            .write_bytes(page * PAGE_SIZE, &pattern_page(SECOND_SEED, page))
            .map_err(|error| format!("writing page {page} through the grant mapping: {error}"))?;
    }
    grants
        .expect(SECOND_SEED)
        .map_err(|error| format!("after writing through the grant mapping: {error}"))?;
    let range = mapping.range();
    mapping
        .unmap()
        .map_err(|error| format!("unmapping the {PAGES} pages: {error}"))?;
    for page in 0..range.pages() {
        let address = range.page(page).ok_or("address overflow")?;
        let found = pmap.lock().extract(address);
        if let Some(left) = found {
            return Err(format!("{address} still maps {left:?} after the unmap"));
        }
    }
    grants.expect_none_in_use()?;
    log::info!("grant-map: data seen both ways through {PAGES} grant pages; all unmapped");

    // Read-only: Xen pins for reading only, and the guard refuses writes.
    let readonly = GrantMapping::map(pmap, grants.domain, &grants.refs[..4], true)
        .map_err(|error| format!("mapping 4 pages read-only: {error}"))?;
    let flags = grants.flags(0)?;
    if flags & (gtf::READING | gtf::WRITING) != gtf::READING {
        return Err(format!("a read-only mapping left grant flags {flags:#06x}"));
    }
    let mut word = [0u8; 4];
    readonly
        .read_bytes(PAGE_SIZE + 16, &mut word)
        .map_err(|error| format!("reading through the read-only mapping: {error}"))?;
    if word
        .iter()
        .enumerate()
        .any(|(index, &byte)| byte != pattern_byte(SECOND_SEED, 1, 16 + index))
    {
        return Err(format!("the read-only mapping reads {word:02x?}"));
    }
    if readonly.write_bytes(0, &[1]).is_ok() {
        return Err("a write through a read-only grant mapping was accepted".into());
    }
    readonly
        .unmap()
        .map_err(|error| format!("unmapping the read-only pages: {error}"))?;
    grants.expect_none_in_use()?;

    // Cycles of pseudo-random sizes and positions, each checked at a moving offset.
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut pages_mapped = 0u64;
    let cycles_before = pmap.lock().stats();
    for cycle in 0..CYCLES {
        let count = random.in_range(1, PAGES as u64) as usize;
        let first = random.in_range(0, (PAGES - count) as u64) as usize;
        let refs = grants.refs.get(first..first + count).ok_or("bad slice")?;
        let mapping = GrantMapping::map(pmap, grants.domain, refs, false)
            .map_err(|error| format!("cycle {cycle}: mapping {count} pages: {error}"))?;
        let offset = (cycle as usize * 8) % PAGE_SIZE;
        for page in 0..count {
            mapping
                .read_bytes(page * PAGE_SIZE + offset, &mut word)
                .map_err(|error| format!("cycle {cycle}: reading page {page}: {error}"))?;
            let expected: [u8; 4] = core::array::from_fn(|index| {
                pattern_byte(SECOND_SEED, first + page, offset + index)
            });
            if word != expected {
                return Err(format!(
                    "cycle {cycle}: page {page} (ref {:?}) offset {offset} reads {word:02x?}, expected {expected:02x?}",
                    refs.get(page)
                ));
            }
        }
        mapping
            .unmap()
            .map_err(|error| format!("cycle {cycle}: unmapping {count} pages: {error}"))?;
        pages_mapped += count as u64;
    }
    let after = pmap.lock().stats();
    if after.maps - cycles_before.maps != pages_mapped
        || after.unmaps - cycles_before.unmaps != pages_mapped
    {
        return Err(format!(
            "{pages_mapped} pages mapped in the cycles, but the pmap counted {} maps and {} unmaps",
            after.maps - cycles_before.maps,
            after.unmaps - cycles_before.unmaps
        ));
    }
    log::info!(
        "grant-map: {CYCLES} map/remove cycles of 1..={PAGES} pages, {pages_mapped} pages in all"
    );
    // The emptied tables stayed hooked for reuse; reclaimed, the count is as before.
    let tables_after = {
        let mut locked = pmap.lock();
        locked.reclaim_empty_tables();
        locked.stats().page_table_pages
    };
    if tables_after != tables_before {
        return Err(format!(
            "{tables_before} page-table pages before the mappings, {tables_after} after the cycles"
        ));
    }
    release_spacer(pmap, spacer)?;
    grants.expect_none_in_use()?;
    grants.finish()?;
    let restored = before.check_restored(pmap)?;
    Ok(format!("every self-granted entry ended; {restored}"))
}
