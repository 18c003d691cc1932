//! Xen ABI: the libxenvchan shared page (`public/io/libxenvchan.h`) and the facts of its protocol.
//!
//! Layout, from `/usr/include/xen/io/libxenvchan.h` (Xen 4.17, `libxen-dev`):
//!
//! ```text
//! struct ring_shared { uint32_t cons, prod; };
//! struct vchan_interface {
//!     struct ring_shared left, right;   // left: client writes, server reads
//!                                       // right: client reads, server writes
//!     uint16_t left_order, right_order; // log2 of each ring's size in bytes
//!     uint8_t cli_live, srv_live;       // 0 exited, 1 connected, 2 client not yet connected
//!     uint8_t cli_notify, srv_notify;   // VCHAN_NOTIFY_* bits
//!     uint32_t grants[0];               // left ring's grants, then the right ring's
//! };
//! ```
//!
//! Protocol facts used by grantsvc (the client), with where they come from in Xen's
//! `tools/libs/vchan`:
//! - `init.c` `init_gnt_srv`: the server zeroes the page, then sets `left_order` (its read ring),
//!   `right_order` (its write ring), `cli_live = 2`, `srv_live = 1`, `cli_notify =
//!   VCHAN_NOTIFY_WRITE`. Order 10 puts a ring in the shared page at offset 1024, order 11 at
//!   offset 2048; a larger order is a separate run of `2^(order-12)` granted pages whose refs are
//!   listed in `grants[]`, the left ring's first. The page itself is shared with an unmap notify
//!   that clears `srv_live` and signals the event channel when the server goes away.
//! - `init.c` `init_gnt_cli`: the client's write ring is `left`, its read ring is `right`; each order
//!   must lie in `10..=20` (`SMALL_RING_SHIFT`, `MAX_RING_SHIFT`), and two in-page rings may not
//!   have the same order (they would overlap). The client maps its read ring read-only.
//! - `init.c` `libxenvchan_client_init`: `ring-ref` and `event-channel` are read from
//!   `<path>/ring-ref` and `<path>/event-channel` (decimal; 0 is refused); after mapping, the client
//!   sets `cli_live = 1` and `srv_notify = VCHAN_NOTIFY_WRITE`, then signals the event channel.
//! - `init.c` `init_xs_srv`: the server writes both nodes in one transaction with permissions
//!   `[owner = server domid: none, client domid: read]`, so the owner of `ring-ref` names the server.
//!   `libxenvchan_server_init` with `left_min = right_min = 0` (as `vchan-socket-proxy` calls it)
//!   picks left order 10 and right order 11.
//! - `io.c` `request_notify` / `send_notify`: a side asks to be told of the other's progress by
//!   OR-ing bits into the OTHER side's notify byte (the client into `srv_notify`); after moving its
//!   own index a side atomically clears the bit in ITS OWN byte (the client in `cli_notify`) and
//!   signals the event channel only if the bit was set. Writing data clears `VCHAN_NOTIFY_WRITE`,
//!   consuming data clears `VCHAN_NOTIFY_READ`. After requesting, re-read the index (lost-wakeup race).
//! - `io.c` `libxenvchan_is_open`: the client is open while `srv_live` is non-zero; the server
//!   while `cli_live` is non-zero. `libxenvchan_close` sets its own live byte to 0, unmaps, then
//!   signals the event channel.

/// Byte offset of `left.cons` (the server's consumer index of the client-to-server ring).
pub const LEFT_CONS_OFFSET: usize = 0;
/// Byte offset of `left.prod` (the client's producer index of the client-to-server ring).
pub const LEFT_PROD_OFFSET: usize = 4;
/// Byte offset of `right.cons` (the client's consumer index of the server-to-client ring).
pub const RIGHT_CONS_OFFSET: usize = 8;
/// Byte offset of `right.prod` (the server's producer index of the server-to-client ring).
pub const RIGHT_PROD_OFFSET: usize = 12;
/// Byte offset of `left_order` (u16).
pub const LEFT_ORDER_OFFSET: usize = 16;
/// Byte offset of `right_order` (u16).
pub const RIGHT_ORDER_OFFSET: usize = 18;
/// Byte offset of `cli_live` (u8).
pub const CLI_LIVE_OFFSET: usize = 20;
/// Byte offset of `srv_live` (u8).
pub const SRV_LIVE_OFFSET: usize = 21;
/// Byte offset of `cli_notify` (u8): bits the server set asking the client to signal it.
pub const CLI_NOTIFY_OFFSET: usize = 22;
/// Byte offset of `srv_notify` (u8): bits the client set asking the server to signal it.
pub const SRV_NOTIFY_OFFSET: usize = 23;
/// Byte offset of `grants[0]` (u32 each); also `sizeof(struct vchan_interface)`.
pub const GRANTS_OFFSET: usize = 24;
/// Size of one entry of `grants[]`.
pub const GRANT_ENTRY_SIZE: usize = 4;

/// `VCHAN_NOTIFY_WRITE`: signal when data is written.
pub const NOTIFY_WRITE: u8 = 0x1;
/// `VCHAN_NOTIFY_READ`: signal when data is read (consumed).
pub const NOTIFY_READ: u8 = 0x2;

/// Live byte value: that side has exited.
pub const LIVE_GONE: u8 = 0;
/// Live byte value: that side is connected.
pub const LIVE_CONNECTED: u8 = 1;
/// Live byte value (`cli_live` only): the client has not connected yet.
pub const LIVE_NOT_YET_CONNECTED: u8 = 2;

/// Smallest ring order (`SMALL_RING_SHIFT`): 1 KiB, in the shared page at [`SMALL_RING_OFFSET`].
pub const SMALL_RING_ORDER: u16 = 10;
/// In-page ring order (`LARGE_RING_SHIFT`): 2 KiB, in the shared page at [`LARGE_RING_OFFSET`].
pub const LARGE_RING_ORDER: u16 = 11;
/// Offset of an order-10 ring in the shared page (`SMALL_RING_OFFSET`).
pub const SMALL_RING_OFFSET: usize = 1024;
/// Offset of an order-11 ring in the shared page (`LARGE_RING_OFFSET`).
pub const LARGE_RING_OFFSET: usize = 2048;
/// Smallest order whose ring lives in its own granted pages (`PAGE_SHIFT`).
pub const PAGED_RING_MIN_ORDER: u16 = 12;
/// Largest ring order libxenvchan accepts (`MAX_RING_SHIFT`): 1 MiB, 256 pages.
pub const MAX_RING_ORDER: u16 = 20;

/// Xenstore node, under the vchan's path, holding the shared page's grant ref in decimal.
pub const RING_REF_NODE: &str = "ring-ref";
/// Xenstore node, under the vchan's path, holding the server's unbound event-channel port.
pub const EVENT_CHANNEL_NODE: &str = "event-channel";

/// `struct ring_shared`, for layout checks against the C header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RingShared {
    pub cons: u32,
    pub prod: u32,
}

/// `struct vchan_interface` without its flexible `grants[]`, for layout checks against the C header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VchanInterface {
    pub left: RingShared,
    pub right: RingShared,
    pub left_order: u16,
    pub right_order: u16,
    pub cli_live: u8,
    pub srv_live: u8,
    pub cli_notify: u8,
    pub srv_notify: u8,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_the_repr_c_struct() {
        assert_eq!(offset_of!(VchanInterface, left), LEFT_CONS_OFFSET);
        assert_eq!(
            offset_of!(VchanInterface, left) + offset_of!(RingShared, prod),
            LEFT_PROD_OFFSET
        );
        assert_eq!(offset_of!(VchanInterface, right), RIGHT_CONS_OFFSET);
        assert_eq!(
            offset_of!(VchanInterface, right) + offset_of!(RingShared, prod),
            RIGHT_PROD_OFFSET
        );
        assert_eq!(offset_of!(VchanInterface, left_order), LEFT_ORDER_OFFSET);
        assert_eq!(offset_of!(VchanInterface, right_order), RIGHT_ORDER_OFFSET);
        assert_eq!(offset_of!(VchanInterface, cli_live), CLI_LIVE_OFFSET);
        assert_eq!(offset_of!(VchanInterface, srv_live), SRV_LIVE_OFFSET);
        assert_eq!(offset_of!(VchanInterface, cli_notify), CLI_NOTIFY_OFFSET);
        assert_eq!(offset_of!(VchanInterface, srv_notify), SRV_NOTIFY_OFFSET);
        assert_eq!(size_of::<VchanInterface>(), GRANTS_OFFSET);
    }
}
