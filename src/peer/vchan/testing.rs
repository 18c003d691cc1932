//! Test doubles for vchan: shared memory over a `Vec<u8>` and a scripted libxenvchan server.
//!
//! The fake server follows `tools/libs/vchan/io.c` (request/send notify, index handling) closely
//! enough that a client passing against it behaves correctly against the real library.

use crate::abi::vchan as abi;
use crate::addr::PAGE_SIZE;
use crate::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

/// Shared memory over a `Vec<u8>`; clones share the same bytes (like two domains' mappings).
#[derive(Clone, Debug)]
pub struct FakeMemory {
    bytes: Rc<RefCell<Vec<u8>>>,
}

impl FakeMemory {
    /// `size` zeroed bytes.
    pub fn new(size: usize) -> FakeMemory {
        FakeMemory {
            bytes: Rc::new(RefCell::new(vec![0; size])),
        }
    }

    fn check(&self, offset: usize, length: usize) -> Result<(), OutOfBounds> {
        check_bounds(offset, length, self.size())
    }

    /// True when `other` shares this memory's bytes.
    pub fn same_as(&self, other: &FakeMemory) -> bool {
        Rc::ptr_eq(&self.bytes, &other.bytes)
    }
}

impl SharedMemory for FakeMemory {
    fn size(&self) -> usize {
        self.bytes.borrow().len()
    }

    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, into.len())?;
        into.copy_from_slice(&self.bytes.borrow()[offset..offset + into.len()]);
        Ok(())
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, from.len())?;
        self.bytes.borrow_mut()[offset..offset + from.len()].copy_from_slice(from);
        Ok(())
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        let mut bytes = [0; 4];
        self.read_bytes(offset, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &value.to_le_bytes())
    }

    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        let mut byte = [0; 1];
        self.read_bytes(offset, &mut byte)?;
        Ok(byte[0])
    }

    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        self.write_bytes(offset, &[value])
    }

    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let previous = self.load_u8(offset)?;
        self.store_u8(offset, previous | bits)?;
        Ok(previous)
    }

    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        let previous = self.load_u8(offset)?;
        self.store_u8(offset, previous & bits)?;
        Ok(previous)
    }
}

/// Writes the header `init_gnt_srv` leaves in a fresh shared page: the ring orders,
/// `cli_live = 2` (not yet connected), `srv_live = 1` and `cli_notify = WRITE`.
pub fn write_server_header(page: &impl SharedMemory, left_order: u16, right_order: u16) {
    page.write_bytes(abi::LEFT_ORDER_OFFSET, &left_order.to_le_bytes())
        .unwrap();
    page.write_bytes(abi::RIGHT_ORDER_OFFSET, &right_order.to_le_bytes())
        .unwrap();
    page.store_u8(abi::CLI_LIVE_OFFSET, abi::LIVE_NOT_YET_CONNECTED)
        .unwrap();
    page.store_u8(abi::SRV_LIVE_OFFSET, abi::LIVE_CONNECTED)
        .unwrap();
    page.store_u8(abi::CLI_NOTIFY_OFFSET, abi::NOTIFY_WRITE)
        .unwrap();
}

/// A server's copy of `data` into the ring of `size` bytes at `base`, from free-running index
/// `index`: in at most two pieces, split where the ring wraps, as libxenvchan's `do_send`
/// copies. Written apart from [`super::ring::RingBuffer`] on purpose, so that the fake servers
/// (this module's and the concurrent tests') check the client's ring arithmetic instead of
/// sharing it.
pub fn server_copy_in(memory: &impl SharedMemory, base: usize, size: u32, index: u32, data: &[u8]) {
    let start = (index & (size - 1)) as usize;
    let first = data.len().min(size as usize - start);
    memory.write_bytes(base + start, &data[..first]).unwrap();
    memory.write_bytes(base, &data[first..]).unwrap();
}

/// A server's copy out of the ring into `into` (`do_recv`; see [`server_copy_in`]).
pub fn server_copy_out(
    memory: &impl SharedMemory,
    base: usize,
    size: u32,
    index: u32,
    into: &mut [u8],
) {
    let start = (index & (size - 1)) as usize;
    let first = into.len().min(size as usize - start);
    let (head, tail) = into.split_at_mut(first);
    memory.read_bytes(base + start, head).unwrap();
    memory.read_bytes(base, tail).unwrap();
}

/// Builds a shared page as `init_gnt_srv` leaves it.
pub struct ServerPage {
    page: FakeMemory,
}

impl ServerPage {
    /// A page with these orders and grant list, `cli_live = 2`, `srv_live = 1`, `cli_notify = WRITE`.
    pub fn new(left_order: u16, right_order: u16, grants: &[u32]) -> ServerPage {
        let page = FakeMemory::new(PAGE_SIZE);
        write_server_header(&page, left_order, right_order);
        for (index, grant) in grants.iter().enumerate() {
            let offset = abi::GRANTS_OFFSET + index * abi::GRANT_ENTRY_SIZE;
            // A list too long for the page is the caller's test of a hostile server: write what fits.
            let _ = page.write_bytes(offset, &grant.to_le_bytes());
        }
        ServerPage { page }
    }

    /// The page's memory.
    pub fn into_memory(self) -> FakeMemory {
        self.page
    }
}

/// The server's end of one vchan: its view of the page and of both rings' bytes.
pub struct FakeServer {
    pub page: FakeMemory,
    /// Ring bytes the server reads (`left`): (memory, offset, size).
    read_ring: (FakeMemory, usize, u32),
    /// Ring bytes the server writes (`right`).
    write_ring: (FakeMemory, usize, u32),
    /// Events the server sent to the client.
    pub events_sent: usize,
}

fn ring_memory(page: &FakeMemory, order: u16) -> (FakeMemory, usize, u32) {
    match order {
        10 => (page.clone(), abi::SMALL_RING_OFFSET, 1024),
        11 => (page.clone(), abi::LARGE_RING_OFFSET, 2048),
        _ => (FakeMemory::new(1 << order), 0, 1 << order),
    }
}

impl FakeServer {
    /// A server with these orders; granted rings get fresh memory and refs counting up from 1000.
    pub fn new(left_order: u16, right_order: u16) -> FakeServer {
        let pages = |order: u16| if order >= 12 { 1u32 << (order - 12) } else { 0 };
        let refs: Vec<u32> = (1000..1000 + pages(left_order) + pages(right_order)).collect();
        let page = ServerPage::new(left_order, right_order, &refs).into_memory();
        FakeServer {
            read_ring: ring_memory(&page, left_order),
            write_ring: ring_memory(&page, right_order),
            page,
            events_sent: 0,
        }
    }

    /// The region a client gets when it maps the left ring's grants (`None` when in the page).
    pub fn left_region(&self) -> Option<FakeMemory> {
        (!self.read_ring.0.same_as(&self.page)).then(|| self.read_ring.0.clone())
    }

    /// The region a client gets when it maps the right ring's grants.
    pub fn right_region(&self) -> Option<FakeMemory> {
        (!self.write_ring.0.same_as(&self.page)).then(|| self.write_ring.0.clone())
    }

    fn notify_client_if_requested(&mut self, bit: u8) {
        let previous = self
            .page
            .fetch_and_u8(abi::SRV_NOTIFY_OFFSET, !bit)
            .unwrap();
        if previous & bit != 0 {
            self.events_sent += 1;
        }
    }

    /// Writes as much of `data` as fits (like a non-blocking `libxenvchan_write`), returns the count.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let (memory, base, size) = self.write_ring.clone();
        let prod = self.page.load_u32(abi::RIGHT_PROD_OFFSET).unwrap();
        let cons = self.page.load_u32(abi::RIGHT_CONS_OFFSET).unwrap();
        let space = size - prod.wrapping_sub(cons);
        let count = data.len().min(space as usize);
        if count < data.len() {
            self.page
                .fetch_or_u8(abi::CLI_NOTIFY_OFFSET, abi::NOTIFY_READ)
                .unwrap();
        }
        server_copy_in(&memory, base, size, prod, &data[..count]);
        self.page
            .store_u32(abi::RIGHT_PROD_OFFSET, prod.wrapping_add(count as u32))
            .unwrap();
        if count > 0 {
            self.notify_client_if_requested(abi::NOTIFY_WRITE);
        }
        count
    }

    /// Reads everything available (like a non-blocking `libxenvchan_read`).
    pub fn read(&mut self) -> Vec<u8> {
        let (memory, base, size) = self.read_ring.clone();
        let prod = self.page.load_u32(abi::LEFT_PROD_OFFSET).unwrap();
        let cons = self.page.load_u32(abi::LEFT_CONS_OFFSET).unwrap();
        let ready = prod.wrapping_sub(cons);
        assert!(ready <= size, "client overfilled the ring");
        let mut data = vec![0u8; ready as usize];
        server_copy_out(&memory, base, size, cons, &mut data);
        if ready == 0 {
            self.page
                .fetch_or_u8(abi::CLI_NOTIFY_OFFSET, abi::NOTIFY_WRITE)
                .unwrap();
        }
        self.page.store_u32(abi::LEFT_CONS_OFFSET, prod).unwrap();
        if ready > 0 {
            self.notify_client_if_requested(abi::NOTIFY_READ);
        }
        data
    }

    /// Sets every ring index to `start`, as a server reusing a page would leave them.
    pub fn set_indices(&self, start: u32) {
        for offset in [
            abi::LEFT_CONS_OFFSET,
            abi::LEFT_PROD_OFFSET,
            abi::RIGHT_CONS_OFFSET,
            abi::RIGHT_PROD_OFFSET,
        ] {
            self.page.store_u32(offset, start).unwrap();
        }
    }

    /// The server exits: gntalloc's unmap notify clears `srv_live`.
    pub fn exit(&self) {
        self.page
            .store_u8(abi::SRV_LIVE_OFFSET, abi::LIVE_GONE)
            .unwrap();
    }

    /// The current `cli_live` byte.
    pub fn cli_live(&self) -> u8 {
        self.page.load_u8(abi::CLI_LIVE_OFFSET).unwrap()
    }
}

/// The server's two nodes as the framework delivers them (`PeerNodesRead`).
pub fn nodes_read<'a>(
    ring_ref: &'a [u8],
    event_channel: &'a [u8],
) -> [(&'static str, Option<&'a [u8]>); 2] {
    [
        (super::session::RING_REF, Some(ring_ref)),
        (super::session::EVENT_CHANNEL, Some(event_channel)),
    ]
}
