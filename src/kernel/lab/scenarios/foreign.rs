//! `pmap-foreign`: enter_foreign of our own machine frames, with and without MMU_PT_UPDATE_NO_TRANSLATE, read and written through, then removed.
//!
//! grantsvc is a PV domain, so Xen uses the frame number verbatim either way; the scenario
//! logs what Xen answered for each owner id it is given: `DOMID_SELF` must work, while our
//! own numeric domid is refused by Xen as a "foreign" owner with ESRCH (and then nothing may
//! be left mapped).

use super::self_grants::{outcome, pattern_byte, pattern_page, pmap_and_table, Baseline, PmapLock};
use super::Outcome;
use crate::kernel::booted::Kernel;
use crate::kernel::xen::own_pages::OwnPages;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::DomId;
use grantsvc::pmap::{ForeignFlags, Mapping, Prot};

const SEED: u8 = 0xc3;
/// What `one_case` answers when the mapping worked both ways.
const MAPPED: &str = "mapped, read and written back";

pub fn run(kernel: &Kernel) -> Outcome {
    outcome("pmap-foreign", body(kernel))
}

fn body(kernel: &Kernel) -> Result<String, String> {
    let (pmap, table) = pmap_and_table(kernel)?;
    let own_domain = table.lock().domain();
    let before = Baseline::take(pmap);
    let pages = OwnPages::allocate(kernel.pmap, 4).ok_or("no pages")?;
    for page in 0..pages.len() {
        pages
            .write(page, 0, &pattern_page(SEED, page))
            .map_err(|error| format!("{error}"))?;
    }
    let mut answers = Vec::new();
    let cases = [
        (DomId::SELF, false, true),
        (DomId::SELF, true, true),
        (own_domain, false, false),
        (own_domain, true, false),
    ];
    for (page, (owner, no_translate, must_work)) in cases.into_iter().enumerate() {
        let answer = one_case(pmap, &pages, page, owner, no_translate)?;
        let label = format!(
            "owner {}{}",
            if owner == DomId::SELF {
                String::from("DOMID_SELF")
            } else {
                format!("{owner} (our own id)")
            },
            if no_translate { " + NO_TRANSLATE" } else { "" }
        );
        log::info!("pmap-foreign: {label}: {answer}");
        // Xen's get_pg_owner: DOMID_SELF names us; our own numeric id given as the "foreign"
        // owner is refused with ESRCH ("Cannot specify itself as foreign domain").
        let expected = if must_work {
            answer == MAPPED
        } else {
            answer.starts_with("refused by Xen: ") && answer.contains("ESRCH")
        };
        if !expected {
            return Err(format!("{label}: {answer}"));
        }
        answers.push(format!("{label}: {answer}"));
    }
    drop(pages);
    let restored = before.check_restored(pmap)?;
    Ok(format!("{}; {restored}", answers.join("; ")))
}

/// Maps page `page` of `pages` by machine frame with `owner` as the foreign domain, checks the
/// data through the mapping both ways, removes it. Returns what happened; an `Err` is a
/// failure of the pmap's promises (something left mapped, wrong data).
fn one_case(
    pmap: PmapLock,
    pages: &OwnPages,
    page: usize,
    owner: DomId,
    no_translate: bool,
) -> Result<String, String> {
    let frame = pages.mfn(page).ok_or("mfn")?;
    let mut locked = pmap.lock();
    let range = locked.allocate_va(1).ok_or("no address space")?;
    let address = range.start();
    let entered = locked.enter_foreign(
        address,
        frame,
        owner,
        Prot::READ_WRITE,
        ForeignFlags { no_translate },
    );
    if let Err(error) = entered {
        let left = locked.extract(address);
        let _ = locked.free_va(range);
        return match left {
            None => Ok(format!("refused by Xen: {error}; nothing mapped")),
            Some(mapping) => Err(format!("refused ({error}) but {address} maps {mapping:?}")),
        };
    }
    match locked.extract(address) {
        Some(Mapping::Foreign {
            frame: mapped,
            domain,
            prot,
        }) if mapped == frame && domain == owner && prot.contains(Prot::WRITE) => {}
        other => return Err(format!("extract({address}) says {other:?}")),
    }
    // The pmap checks the page is its own mapping before it reads through it.
    let mut buffer = vec![0u8; PAGE_SIZE];
    locked
        .read_mapped(address, &mut buffer)
        .map_err(|error| format!("{error}"))?;
    let read_ok = buffer
        .iter()
        .enumerate()
        .all(|(offset, &byte)| byte == pattern_byte(SEED, page, offset));
    let marker = [0xde, 0xad, 0xbe, page as u8];
    locked
        .write_mapped(address, &marker)
        .map_err(|error| format!("{error}"))?;
    let summary = locked
        .remove(range)
        .map_err(|error| format!("remove: {error}"))?;
    let left = locked.extract(address);
    let _ = locked.free_va(range);
    drop(locked);
    if !read_ok {
        return Err(format!(
            "page {page} (mfn {frame}) did not read back its pattern through the foreign mapping"
        ));
    }
    let mut seen = [0u8; 4];
    pages
        .read(page, 0, &mut seen)
        .map_err(|error| format!("{error}"))?;
    if seen != marker {
        return Err(format!(
            "written {marker:02x?} through the foreign mapping, the page reads {seen:02x?}"
        ));
    }
    if left.is_some() || summary.ordinary_pages != 1 {
        return Err(format!(
            "after remove ({summary:?}) {address} maps {left:?}"
        ));
    }
    Ok(String::from(MAPPED))
}
