//! `grant-hold`: pages of dom0 granted to grantsvc and their refs published in xenstore, held while the lab's `grant` bench maps them from inside grantsvc (the kernel's `grant-floor` scenario reads them).

use crate::bench_args::GrantHoldOptions;
use crate::gntalloc::GrantedPages;
use crate::store::Store;
use grantsvc::ids::DomId;
use std::time::Instant;
use xenstore::NodePermissions;

/// Refs per `refs/<n>` node: about 3 KiB of decimal text, inside xenstore's 4 KiB value.
const REFS_PER_NODE: usize = 512;

pub fn run(options: &GrantHoldOptions) -> Result<String, String> {
    let pages = GrantedPages::allocate(options.domid, options.pages, true).map_err(|error| {
        format!(
            "granting {} pages to domain {} through gntalloc: {error} (gntalloc's limit: /sys/module/xen_gntalloc/parameters/limit)",
            options.pages,
            options.domid.get()
        )
    })?;
    let chunks: Vec<(String, String)> = pages
        .refs()
        .chunks(REFS_PER_NODE)
        .enumerate()
        .map(|(node, refs)| {
            let text: Vec<String> = refs
                .iter()
                .map(|grant_ref| grant_ref.get().to_string())
                .collect();
            (format!("refs/{node}"), text.join(" "))
        })
        .collect();
    let mut nodes: Vec<(&str, String)> = chunks
        .iter()
        .map(|(name, value)| (name.as_str(), value.clone()))
        .collect();
    // Last: its presence says the list is complete (the whole set lands in one transaction).
    nodes.push(("pages", options.pages.to_string()));
    let mut store = Store::open()?;
    store.remove(&options.publish)?;
    store.create_directory(
        &options.publish,
        &NodePermissions::owner_and_reader(DomId::DOM0, options.domid),
        &nodes,
    )?;
    println!(
        "grantsvc-peer: grant-hold: {} pages granted to domain {}, refs published at {}",
        options.pages,
        options.domid.get(),
        options.publish
    );
    let started = Instant::now();
    while started.elapsed() < options.hold {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = store.remove(&options.publish);
    pages
        .release()
        .map_err(|error| format!("ending the grants: {error}"))?;
    Ok(format!(
        "{} pages held {} s and released",
        options.pages,
        options.hold.as_secs()
    ))
}
