//! `vchan-server`: a libxenvchan-compatible server with ring orders of the caller's choosing, streaming bytes through grantsvc's echo and checking them.
//!
//! `vchan-socket-proxy` always asks for the smallest rings (orders 10 and 11, inside the shared
//! page); this server can ask for larger ones (orders 12..=20), whose pages are granted
//! separately and listed in the shared page's `grants[]`, which grantsvc must map as well. It
//! lays the page out as `init_gnt_srv` does and follows `io.c`'s index and notify rules from the
//! server's side (see `grantsvc::abi::vchan`): it writes the right ring and reads the left.
//! While connected it reads grantsvc's published `mapped-pages`, which must count the shared
//! page and every ring page; at the end it sets `srv_live = 0`, signals, and checks that
//! grantsvc unmapped everything.

use crate::evtchn::EventChannels;
use crate::gntalloc::GrantedPages;
use crate::store::Store;
use grantsvc::abi::vchan as abi;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::DomId;
use std::time::{Duration, Instant};
use xenstore::NodePermissions;

/// Options of `vchan-server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VchanServerOptions {
    pub domid: DomId,
    pub path: String,
    /// The ring grantsvc writes (the server reads).
    pub left_order: u16,
    /// The ring grantsvc reads (the server writes).
    pub right_order: u16,
    pub bytes: usize,
    pub timeout: Duration,
}

/// Pages of a ring of `order` granted apart from the shared page (0 for in-page orders).
pub fn ring_pages(order: u16) -> usize {
    if order >= abi::PAGED_RING_MIN_ORDER {
        1 << (order - abi::PAGED_RING_MIN_ORDER)
    } else {
        0
    }
}

/// Where a ring's bytes start in the granted pages (page 0 is the shared page).
fn ring_base(order: u16, first_page: usize) -> usize {
    match order {
        abi::SMALL_RING_ORDER => abi::SMALL_RING_OFFSET,
        abi::LARGE_RING_ORDER => abi::LARGE_RING_OFFSET,
        _ => first_page * PAGE_SIZE,
    }
}

/// One ring from the server's side.
struct Ring {
    base: usize,
    size: u32,
}

impl Ring {
    fn position(&self, index: u32) -> usize {
        self.base + (index & (self.size - 1)) as usize
    }

    /// The contiguous pieces of `length` bytes from `index`: (offset, length) twice.
    fn pieces(&self, index: u32, length: usize) -> [(usize, usize); 2] {
        let first = length.min((self.size - (index & (self.size - 1))) as usize);
        [(self.position(index), first), (self.base, length - first)]
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

fn counter(store: &mut Store, published: &str, name: &str) -> Result<Option<u64>, String> {
    Ok(store
        .read_optional(&format!("{published}/{name}"))?
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|text| text.trim().parse().ok()))
}

/// A deterministic, non-repeating-looking byte stream (xorshift), so that a shifted or
/// duplicated piece never matches by chance.
fn stream(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs the server; returns a summary, or why grantsvc's behaviour was wrong.
pub fn run(options: &VchanServerOptions) -> Result<String, String> {
    let mut store = Store::open()?;
    let own = store.own_domid()?;
    let published = format!("/local/domain/{}/data/grantsvc", options.domid);
    let left_pages = ring_pages(options.left_order);
    let right_pages = ring_pages(options.right_order);
    let total_pages = 1 + left_pages + right_pages;
    let pages = GrantedPages::allocate(options.domid, total_pages as u32, true)
        .map_err(io("granting the vchan's pages"))?;
    let refs: Vec<u32> = pages.refs().iter().map(|grant| grant.get()).collect();
    let left = Ring {
        base: ring_base(options.left_order, 1),
        size: 1 << options.left_order,
    };
    let right = Ring {
        base: ring_base(options.right_order, 1 + left_pages),
        size: 1 << options.right_order,
    };

    // The shared page as init_gnt_srv leaves it: grants of the left ring's pages, then the right's.
    let mut page = vec![0u8; PAGE_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| {
        if let Some(slot) = page.get_mut(offset..offset + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    put(abi::LEFT_ORDER_OFFSET, &options.left_order.to_le_bytes());
    put(abi::RIGHT_ORDER_OFFSET, &options.right_order.to_le_bytes());
    put(abi::CLI_LIVE_OFFSET, &[abi::LIVE_NOT_YET_CONNECTED]);
    put(abi::SRV_LIVE_OFFSET, &[abi::LIVE_CONNECTED]);
    put(abi::CLI_NOTIFY_OFFSET, &[abi::NOTIFY_WRITE]);
    for (slot, grant) in refs.iter().skip(1).enumerate() {
        put(
            abi::GRANTS_OFFSET + slot * abi::GRANT_ENTRY_SIZE,
            &grant.to_le_bytes(),
        );
    }
    pages
        .write_bytes(0, &page)
        .map_err(io("writing the shared page"))?;

    let mut channels = EventChannels::open().map_err(io("/dev/xen/evtchn"))?;
    let port = channels
        .allocate_unbound(options.domid)
        .map_err(io("allocating the event channel"))?;
    let permissions = NodePermissions::owner_and_reader(own, options.domid);
    let ring_ref = refs.first().copied().unwrap_or(0).to_string();
    store.create_directory(
        &options.path,
        &permissions,
        &[
            ("ring-ref", ring_ref),
            ("event-channel", port.get().to_string()),
        ],
    )?;

    let outcome = serve(
        options,
        &pages,
        &mut channels,
        port,
        &left,
        &right,
        &mut store,
        &published,
        total_pages,
    );
    // Close as libxenvchan_close does: srv_live = 0, then signal; then unpublish.
    let _ = pages.store_u8(abi::SRV_LIVE_OFFSET, abi::LIVE_GONE);
    let _ = channels.notify(port);
    let summary = outcome?;
    let deadline = Instant::now() + options.timeout;
    loop {
        if counter(&mut store, &published, "mapped-pages")? == Some(0) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{summary}; but grantsvc still maps pages {} s after srv_live = 0",
                options.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    store.remove(&options.path)?;
    channels
        .unbind(port)
        .map_err(io("closing the event channel"))?;
    pages.release().map_err(io("ending the grants"))?;
    Ok(format!(
        "{summary}; after srv_live = 0 grantsvc unmapped everything"
    ))
}

/// Streams `options.bytes` through grantsvc's echo; returns a summary.
#[allow(clippy::too_many_arguments)]
fn serve(
    options: &VchanServerOptions,
    pages: &GrantedPages,
    channels: &mut EventChannels,
    port: grantsvc::ids::EvtchnPort,
    left: &Ring,
    right: &Ring,
    store: &mut Store,
    published: &str,
    total_pages: usize,
) -> Result<String, String> {
    let deadline = Instant::now() + options.timeout;
    // Connected once grantsvc sets cli_live = 1.
    loop {
        match pages
            .load_u8(abi::CLI_LIVE_OFFSET)
            .map_err(io("reading cli_live"))?
        {
            abi::LIVE_CONNECTED => break,
            abi::LIVE_NOT_YET_CONNECTED => {}
            other => return Err(format!("cli_live is {other} before grantsvc connected")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "grantsvc did not connect within {} s",
                options.timeout.as_secs()
            ));
        }
        let _ = channels.wait(Duration::from_millis(50));
    }
    let mapped_while_connected = counter_at_least(store, published, total_pages as u64, deadline)?;

    let data = stream(options.bytes, options.bytes as u64 ^ 0x5eed);
    let mut echoed: Vec<u8> = Vec::with_capacity(data.len());
    let (mut sent, mut write_prod, mut read_cons) = (0usize, 0u32, 0u32);
    let started = Instant::now();
    while echoed.len() < data.len() {
        if pages
            .load_u8(abi::CLI_LIVE_OFFSET)
            .map_err(io("reading cli_live"))?
            != abi::LIVE_CONNECTED
        {
            return Err(format!(
                "grantsvc left (cli_live cleared) after {} echoed bytes",
                echoed.len()
            ));
        }
        let mut progress = false;
        // Write into the right ring as far as grantsvc has consumed it.
        let consumed = pages
            .load_u32(abi::RIGHT_CONS_OFFSET)
            .map_err(io("reading right.cons"))?;
        let outstanding = write_prod.wrapping_sub(consumed);
        if outstanding > right.size {
            return Err(format!(
                "grantsvc's right.cons {consumed} is beyond our right.prod {write_prod}"
            ));
        }
        let room = ((right.size - outstanding) as usize).min(data.len() - sent);
        if room > 0 {
            let mut from = data.get(sent..sent + room).unwrap_or_default();
            for (offset, length) in right.pieces(write_prod, room) {
                let (piece, rest) = from.split_at(length);
                pages
                    .write_bytes(offset, piece)
                    .map_err(io("writing the right ring"))?;
                from = rest;
            }
            sent += room;
            write_prod = write_prod.wrapping_add(room as u32);
            pages
                .store_u32(abi::RIGHT_PROD_OFFSET, write_prod)
                .map_err(io("writing right.prod"))?;
            if pages
                .fetch_and_u8(abi::SRV_NOTIFY_OFFSET, !abi::NOTIFY_WRITE)
                .map_err(io("srv_notify"))?
                & abi::NOTIFY_WRITE
                != 0
            {
                channels.notify(port).map_err(io("notifying"))?;
            }
            progress = true;
        }
        // Read what grantsvc echoed into the left ring.
        let produced = pages
            .load_u32(abi::LEFT_PROD_OFFSET)
            .map_err(io("reading left.prod"))?;
        let ready = produced.wrapping_sub(read_cons);
        if ready > left.size {
            return Err(format!(
                "grantsvc's left.prod {produced} is beyond the ring (our left.cons {read_cons})"
            ));
        }
        if ready > 0 {
            for (offset, length) in left.pieces(read_cons, ready as usize) {
                let mut piece = vec![0u8; length];
                pages
                    .read_bytes(offset, &mut piece)
                    .map_err(io("reading the left ring"))?;
                echoed.extend_from_slice(&piece);
            }
            read_cons = read_cons.wrapping_add(ready);
            pages
                .store_u32(abi::LEFT_CONS_OFFSET, read_cons)
                .map_err(io("writing left.cons"))?;
            if pages
                .fetch_and_u8(abi::SRV_NOTIFY_OFFSET, !abi::NOTIFY_READ)
                .map_err(io("srv_notify"))?
                & abi::NOTIFY_READ
                != 0
            {
                channels.notify(port).map_err(io("notifying"))?;
            }
            progress = true;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "sent {sent}, echoed {} of {} bytes after {} s",
                echoed.len(),
                data.len(),
                options.timeout.as_secs()
            ));
        }
        if !progress {
            // Ask to be told of grantsvc's next write and read, then look again before sleeping.
            pages
                .fetch_or_u8(abi::CLI_NOTIFY_OFFSET, abi::NOTIFY_WRITE | abi::NOTIFY_READ)
                .map_err(io("cli_notify"))?;
            let _ = channels.wait(Duration::from_millis(20));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(offset) = echoed.iter().zip(&data).position(|(got, sent)| got != sent) {
        return Err(format!(
            "the echo differs from what was sent at byte {offset} of {}",
            data.len()
        ));
    }
    if echoed.len() != data.len() {
        return Err(format!(
            "{} bytes came back for {} sent",
            echoed.len(),
            data.len()
        ));
    }
    Ok(format!(
        "orders {}/{}: {} bytes echoed unchanged in {seconds:.1} s; grantsvc published mapped-pages {mapped_while_connected} while connected (the shared page and {} ring pages)",
        options.left_order,
        options.right_order,
        data.len(),
        total_pages - 1
    ))
}

/// Waits until grantsvc publishes at least `wanted` mapped pages; returns the value seen.
fn counter_at_least(
    store: &mut Store,
    published: &str,
    wanted: u64,
    deadline: Instant,
) -> Result<u64, String> {
    loop {
        let mapped = counter(store, published, "mapped-pages")?;
        if let Some(mapped) = mapped.filter(|mapped| *mapped >= wanted) {
            return Ok(mapped);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "grantsvc's mapped-pages is {mapped:?} while connected, expected at least {wanted}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_pages_follow_libxenvchan() {
        assert_eq!((ring_pages(10), ring_pages(11)), (0, 0));
        assert_eq!(
            (ring_pages(12), ring_pages(13), ring_pages(20)),
            (1, 2, 256)
        );
        assert_eq!(ring_base(10, 1), 1024);
        assert_eq!(ring_base(11, 3), 2048);
        assert_eq!(ring_base(13, 3), 3 * PAGE_SIZE);
    }

    #[test]
    fn a_transfer_across_the_end_is_split_in_two() {
        let ring = Ring {
            base: 4096,
            size: 8192,
        };
        assert_eq!(ring.pieces(8190 + 8192, 10), [(4096 + 8190, 2), (4096, 8)]);
        assert_eq!(ring.pieces(5, 10), [(4096 + 5, 10), (4096, 0)]);
    }

    #[test]
    fn the_stream_is_deterministic_and_varied() {
        let bytes = stream(4096, 7);
        assert_eq!(bytes, stream(4096, 7));
        assert!(bytes
            .windows(8)
            .take(100)
            .any(|window| window != &bytes[..8]));
    }
}
