//! `vchan-garbage`: a fake libxenvchan server with one chosen defect, to check that grantsvc ends the session cleanly.
//!
//! It grants one page to grantsvc laid out as `init_gnt_srv` lays out a vchan shared page (left
//! order 10, right order 11, `cli_live = 2`, `srv_live = 1`, `cli_notify = VCHAN_NOTIFY_WRITE`,
//! see `grantsvc::abi::vchan`), allocates an unbound event channel for grantsvc, and publishes
//! `ring-ref` and `event-channel` under the path given, in one transaction, readable by grantsvc
//! (as `init_xs_srv` does) - with the defect applied to the page or to a node. It then waits
//! until grantsvc's published `faults` counter goes up and its `mapped-pages` is back at 0,
//! reports what grantsvc did with `cli_live`, removes the nodes and ends the grant.

use crate::evtchn::EventChannels;
use crate::gntalloc::GrantedPages;
use crate::store::Store;
use grantsvc::abi::vchan as abi;
use grantsvc::addr::PAGE_SIZE;
use grantsvc::ids::DomId;
use std::time::{Duration, Instant};
use xenstore::NodePermissions;

/// A port number valid in form that is no unbound port of ours for grantsvc.
const NOT_OUR_PORT: u32 = (1 << 17) - 1;

/// The defect to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VchanGarbage {
    /// `ring-ref` is not a decimal number.
    RingRefNonNumeric,
    /// The left ring's order is 21, beyond libxenvchan's largest (20).
    OrderOutOfRange,
    /// `event-channel` names no unbound port for grantsvc.
    EventChannelInvalid,
    /// The server's `right.prod` claims more bytes than the ring holds.
    IndexBeyondRing,
}

impl VchanGarbage {
    pub const NAMES: &'static str =
        "ring-ref-non-numeric order-out-of-range event-channel-invalid index-beyond-ring";

    pub fn parse(name: &str) -> Option<VchanGarbage> {
        Some(match name {
            "ring-ref-non-numeric" => VchanGarbage::RingRefNonNumeric,
            "order-out-of-range" => VchanGarbage::OrderOutOfRange,
            "event-channel-invalid" => VchanGarbage::EventChannelInvalid,
            "index-beyond-ring" => VchanGarbage::IndexBeyondRing,
            _ => return None,
        })
    }
}

/// Options of `vchan-garbage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VchanGarbageOptions {
    pub domid: DomId,
    pub path: String,
    pub kind: VchanGarbage,
    pub timeout: Duration,
}

/// The shared page as `init_gnt_srv` leaves it, with the page-borne defects applied.
pub fn server_page(kind: VchanGarbage) -> [u8; PAGE_SIZE] {
    let mut page = [0u8; PAGE_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| {
        if let Some(slot) = page.get_mut(offset..offset + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    let left_order: u16 = if kind == VchanGarbage::OrderOutOfRange {
        21
    } else {
        10
    };
    put(abi::LEFT_ORDER_OFFSET, &left_order.to_le_bytes());
    put(abi::RIGHT_ORDER_OFFSET, &11u16.to_le_bytes());
    put(abi::CLI_LIVE_OFFSET, &[abi::LIVE_NOT_YET_CONNECTED]);
    put(abi::SRV_LIVE_OFFSET, &[abi::LIVE_CONNECTED]);
    put(abi::CLI_NOTIFY_OFFSET, &[abi::NOTIFY_WRITE]);
    if kind == VchanGarbage::IndexBeyondRing {
        // 64 KiB "written" into a 2 KiB ring.
        put(abi::RIGHT_PROD_OFFSET, &0x1_0000u32.to_le_bytes());
    }
    page
}

/// Reads a counter grantsvc publishes under `<its home>/data/grantsvc`.
fn counter(store: &mut Store, published: &str, name: &str) -> Result<Option<u64>, String> {
    Ok(store
        .read_optional(&format!("{published}/{name}"))?
        .and_then(|value| String::from_utf8(value).ok())
        .and_then(|text| text.trim().parse().ok()))
}

/// Runs the fake server; returns a summary, or why grantsvc's reaction was wrong.
pub fn run(options: &VchanGarbageOptions) -> Result<String, String> {
    let mut store = Store::open()?;
    let own = store.own_domid()?;
    let published = format!("/local/domain/{}/data/grantsvc", options.domid);
    let faults_before = counter(&mut store, &published, "faults")?.ok_or_else(|| {
        format!(
            "{published}/faults is missing: is grantsvc running as domain {}?",
            options.domid
        )
    })?;

    let pages = GrantedPages::allocate(options.domid, 1, true)
        .map_err(|error| format!("granting a page to domain {}: {error}", options.domid))?;
    pages
        .write_page(0, &server_page(options.kind))
        .map_err(|error| format!("writing the shared page: {error}"))?;
    let channels = EventChannels::open().map_err(|error| format!("/dev/xen/evtchn: {error}"))?;
    let port = channels
        .allocate_unbound(options.domid)
        .map_err(|error| format!("allocating a port for domain {}: {error}", options.domid))?;
    let ring_ref = match options.kind {
        VchanGarbage::RingRefNonNumeric => "12ab".to_string(),
        _ => pages
            .refs()
            .first()
            .map_or(0, |grant| grant.get())
            .to_string(),
    };
    let event_channel = match options.kind {
        VchanGarbage::EventChannelInvalid => NOT_OUR_PORT,
        _ => port.get(),
    }
    .to_string();
    let permissions = NodePermissions::owner_and_reader(own, options.domid);
    store.create_directory(
        &options.path,
        &permissions,
        &[
            ("ring-ref", ring_ref.clone()),
            ("event-channel", event_channel.clone()),
        ],
    )?;
    println!(
        "grantsvc-peer: published {} with ring-ref {ring_ref}, event-channel {event_channel} ({:?})",
        options.path, options.kind
    );

    // grantsvc counts the fault and publishes it (rate-limited to about once a second).
    let deadline = Instant::now() + options.timeout;
    let mut highest_cli_live = 0u8;
    let outcome = loop {
        let page = pages
            .read_page(0)
            .map_err(|error| format!("reading the shared page: {error}"))?;
        let cli_live = page.get(abi::CLI_LIVE_OFFSET).copied().unwrap_or(0);
        if cli_live != abi::LIVE_NOT_YET_CONNECTED {
            highest_cli_live = highest_cli_live.max(cli_live);
        }
        let faults = counter(&mut store, &published, "faults")?.unwrap_or(faults_before);
        let mapped = counter(&mut store, &published, "mapped-pages")?;
        if faults > faults_before && mapped == Some(0) {
            break Ok(format!(
                "{:?}: grantsvc counted the fault (faults {faults_before} -> {faults}), mapped-pages 0, cli_live now {cli_live}{}",
                options.kind,
                if highest_cli_live == abi::LIVE_CONNECTED {
                    " (it had connected before finding the defect)"
                } else {
                    ""
                }
            ));
        }
        if Instant::now() >= deadline {
            break Err(format!(
                "{:?}: after {} s grantsvc's faults is {faults} (was {faults_before}) and mapped-pages {:?}",
                options.kind,
                options.timeout.as_secs(),
                mapped
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let removed = store.remove(&options.path);
    let unbound = channels.unbind(port);
    let released = pages.release();
    let summary = outcome?;
    removed?;
    unbound.map_err(|error| format!("closing port {port}: {error}"))?;
    released.map_err(|error| format!("ending the grant: {error}"))?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use grantsvc::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
    use grantsvc::vchan::fault::VchanFault;
    use grantsvc::vchan::layout::VchanLayout;

    /// The page as grantsvc's decoder reads it (reads only: decoding writes nothing).
    struct Page([u8; PAGE_SIZE]);

    impl Page {
        fn bytes<const N: usize>(&self, offset: usize) -> Result<[u8; N], OutOfBounds> {
            let mut bytes = [0u8; N];
            self.read_bytes(offset, &mut bytes)?;
            Ok(bytes)
        }
    }

    impl SharedMemory for Page {
        fn size(&self) -> usize {
            PAGE_SIZE
        }
        fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
            check_bounds(offset, into.len(), PAGE_SIZE)?;
            into.copy_from_slice(&self.0[offset..offset + into.len()]);
            Ok(())
        }
        fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
            Err(OutOfBounds {
                offset,
                length: from.len(),
                size: 0,
            })
        }
        fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
            self.bytes::<4>(offset).map(u32::from_le_bytes)
        }
        fn store_u32(&self, offset: usize, _: u32) -> Result<(), OutOfBounds> {
            self.write_bytes(offset, &[0; 4])
        }
        fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
            self.bytes::<1>(offset).map(|[byte]| byte)
        }
        fn store_u8(&self, offset: usize, _: u8) -> Result<(), OutOfBounds> {
            self.write_bytes(offset, &[0])
        }
        fn fetch_or_u8(&self, offset: usize, _: u8) -> Result<u8, OutOfBounds> {
            self.write_bytes(offset, &[0]).map(|()| 0)
        }
        fn fetch_and_u8(&self, offset: usize, _: u8) -> Result<u8, OutOfBounds> {
            self.write_bytes(offset, &[0]).map(|()| 0)
        }
    }

    fn decode(kind: VchanGarbage) -> Result<VchanLayout, VchanFault> {
        VchanLayout::decode(&Page(server_page(kind)))
    }

    #[test]
    fn a_page_without_page_defects_decodes_as_socket_proxy_s() {
        for kind in [
            VchanGarbage::RingRefNonNumeric,
            VchanGarbage::EventChannelInvalid,
            VchanGarbage::IndexBeyondRing,
        ] {
            let layout = decode(kind).unwrap();
            assert_eq!((layout.left.order, layout.right.order), (10, 11));
            assert_eq!(
                (layout.initial_left_prod, layout.initial_right_cons),
                (0, 0)
            );
        }
        let page = Page(server_page(VchanGarbage::RingRefNonNumeric));
        assert_eq!(page.load_u8(abi::CLI_LIVE_OFFSET), Ok(2));
        assert_eq!(page.load_u8(abi::SRV_LIVE_OFFSET), Ok(1));
    }

    #[test]
    fn the_order_defect_is_refused_by_grantsvc_s_decoder() {
        assert!(matches!(
            decode(VchanGarbage::OrderOutOfRange),
            Err(VchanFault::OrderOutOfRange { order: 21, .. })
        ));
    }

    #[test]
    fn the_index_defect_claims_more_than_the_ring_holds() {
        let page = Page(server_page(VchanGarbage::IndexBeyondRing));
        let produced = page.load_u32(abi::RIGHT_PROD_OFFSET).unwrap();
        assert!(produced > 1 << 11);
    }

    #[test]
    fn names_round_trip() {
        for name in VchanGarbage::NAMES.split(' ') {
            assert!(VchanGarbage::parse(name).is_some(), "{name}");
        }
        assert_eq!(VchanGarbage::parse("soup"), None);
    }
}
