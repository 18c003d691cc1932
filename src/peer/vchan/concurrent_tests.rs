//! Stress tests of the client channel and echo pump against a libxenvchan-like server running on another thread over shared atomic memory.
//!
//! The sequential fake server in [`super::testing`] runs the client only at chosen points, so it
//! cannot show what real concurrency does: the server reading our ring while we write it, indices
//! moving between our two fetches, wake-ups racing notify requests. Here the server is a thread
//! that follows `tools/libs/vchan/io.c` (`fast_get_buffer_space`, `do_send`, `fast_get_data_ready`,
//! `do_recv`, `request_notify`, `send_notify`) the way `vchan-socket-proxy`'s data loop drives it,
//! with random chunk sizes and random pauses, while the client thread runs grantsvc's own channel
//! and pump. Every wait for an event has a deadline, so a lost wake-up fails the test instead of
//! hanging it, and the bytes that come back are compared with the bytes sent, byte for byte.

use super::channel::{ChannelRegions, VchanChannel};
use super::echo::EchoService;
use super::layout::VchanLayout;
use super::pump::{StreamPump, StreamTotals};
use super::testing::{server_copy_in, server_copy_out};
use crate::abi::vchan as abi;
use crate::addr::PAGE_SIZE;
use crate::peer::counters::ServiceCounters;
use crate::shared_memory::{check_bounds, OutOfBounds, SharedMemory};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long a side waits for an event before calling it a lost wake-up; under Miri (`make
/// miri`) the other thread's copy of one chunk through atomics can take seconds.
const STALL: Duration = Duration::from_secs(if cfg!(miri) { 300 } else { 5 });

/// The echoes' lengths are divided by this under Miri, where each atomic access is thousands of
/// times slower; the shortest is still 2 KiB, two laps of the smaller ring.
const LENGTH_DIVISOR: usize = if cfg!(miri) { 64 } else { 1 };

/// Shared memory of atomic words that two threads use like two domains' mappings of one page.
///
/// Index words are single atomic accesses; the notify bytes are read-modify-writes of their
/// word (as x86's `lock`-prefixed byte operations are atomic); ring bytes are relaxed, so only the
/// index protocol orders them.
#[derive(Clone)]
struct AtomicMemory {
    words: Arc<Vec<AtomicU32>>,
    size: usize,
}

impl AtomicMemory {
    fn new(size: usize) -> AtomicMemory {
        let words = (0..size.div_ceil(4)).map(|_| AtomicU32::new(0)).collect();
        AtomicMemory {
            words: Arc::new(words),
            size,
        }
    }

    fn word(&self, offset: usize) -> (&AtomicU32, u32) {
        (&self.words[offset / 4], (offset % 4) as u32 * 8)
    }

    fn byte(&self, offset: usize, ordering: Ordering) -> u8 {
        let (word, shift) = self.word(offset);
        (word.load(ordering) >> shift) as u8
    }

    /// Replaces one byte through its word, returning the byte's previous value.
    fn update_byte(&self, offset: usize, ordering: Ordering, change: impl Fn(u8) -> u8) -> u8 {
        let (word, shift) = self.word(offset);
        let mask = 0xffu32 << shift;
        let previous = word
            .fetch_update(ordering, Ordering::SeqCst, |value| {
                let byte = change((value >> shift) as u8);
                Some((value & !mask) | (u32::from(byte) << shift))
            })
            .unwrap_or_else(|value| value);
        (previous >> shift) as u8
    }
}

impl SharedMemory for AtomicMemory {
    fn size(&self) -> usize {
        self.size
    }

    // Ring bytes move a word at a time (one atomic access per word they touch, as memcpy moves
    // words): a byte per access made the echoes minutes long under Miri's race detector.
    fn read_bytes(&self, offset: usize, into: &mut [u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, into.len(), self.size)?;
        let mut done = 0;
        while done < into.len() {
            let (word, shift) = self.word(offset + done);
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            let first = shift as usize / 8;
            let take = (4 - first).min(into.len() - done);
            into[done..done + take].copy_from_slice(&bytes[first..first + take]);
            done += take;
        }
        Ok(())
    }

    fn write_bytes(&self, offset: usize, from: &[u8]) -> Result<(), OutOfBounds> {
        check_bounds(offset, from.len(), self.size)?;
        let mut done = 0;
        while done < from.len() {
            let (word, shift) = self.word(offset + done);
            let first = shift as usize / 8;
            let take = (4 - first).min(from.len() - done);
            let piece = &from[done..done + take];
            if take == 4 {
                word.store(
                    u32::from_le_bytes([piece[0], piece[1], piece[2], piece[3]]),
                    Ordering::Relaxed,
                );
            } else {
                let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
                    let mut bytes = value.to_le_bytes();
                    bytes[first..first + take].copy_from_slice(piece);
                    Some(u32::from_le_bytes(bytes))
                });
            }
            done += take;
        }
        Ok(())
    }

    fn load_u32(&self, offset: usize) -> Result<u32, OutOfBounds> {
        check_bounds(offset, 4, self.size)?;
        Ok(self.word(offset).0.load(Ordering::SeqCst))
    }

    fn store_u32(&self, offset: usize, value: u32) -> Result<(), OutOfBounds> {
        check_bounds(offset, 4, self.size)?;
        self.word(offset).0.store(value, Ordering::SeqCst);
        Ok(())
    }

    fn load_u8(&self, offset: usize) -> Result<u8, OutOfBounds> {
        check_bounds(offset, 1, self.size)?;
        Ok(self.byte(offset, Ordering::SeqCst))
    }

    fn store_u8(&self, offset: usize, value: u8) -> Result<(), OutOfBounds> {
        check_bounds(offset, 1, self.size)?;
        self.update_byte(offset, Ordering::SeqCst, |_| value);
        Ok(())
    }

    fn fetch_or_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        check_bounds(offset, 1, self.size)?;
        Ok(self.update_byte(offset, Ordering::SeqCst, |byte| byte | bits))
    }

    fn fetch_and_u8(&self, offset: usize, bits: u8) -> Result<u8, OutOfBounds> {
        check_bounds(offset, 1, self.size)?;
        Ok(self.update_byte(offset, Ordering::SeqCst, |byte| byte & bits))
    }
}

/// One end of an event channel: a pending flag and a way to sleep until it is set.
#[derive(Default)]
struct Port {
    pending: Mutex<bool>,
    raised: Condvar,
}

impl Port {
    fn signal(&self) {
        *self.pending.lock().unwrap() = true;
        self.raised.notify_all();
    }

    /// Waits for an event and consumes it; false when none came within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let pending = self.pending.lock().unwrap();
        let (mut pending, _) = self
            .raised
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .unwrap();
        let came = *pending;
        *pending = false;
        came
    }
}

/// A small deterministic generator for chunk sizes and pauses (xorshift64).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// A ring as the server sees it: which index pair and where its bytes are.
#[derive(Clone, Copy)]
struct ServerRing {
    cons_offset: usize,
    prod_offset: usize,
    base: usize,
    size: u32,
}

fn in_page_ring(order: u16, cons_offset: usize, prod_offset: usize) -> ServerRing {
    let base = if order == abi::SMALL_RING_ORDER {
        abi::SMALL_RING_OFFSET
    } else {
        abi::LARGE_RING_OFFSET
    };
    ServerRing {
        cons_offset,
        prod_offset,
        base,
        size: 1 << order,
    }
}

/// The server end, following io.c: it reads `left` and writes `right`, asks for notifications on
/// `cli_notify` and honours ours on `srv_notify`.
struct ThreadServer {
    page: AtomicMemory,
    read: ServerRing,
    write: ServerRing,
    to_client: Arc<Port>,
}

impl ThreadServer {
    fn load(&self, offset: usize) -> u32 {
        self.page.load_u32(offset).unwrap()
    }

    /// `request_notify`: the client is to signal us for `bit`.
    fn request_notify(&self, bit: u8) {
        self.page.fetch_or_u8(abi::CLI_NOTIFY_OFFSET, bit).unwrap();
    }

    /// `send_notify`: signal the client if it asked for `bit`.
    fn send_notify(&self, bit: u8) {
        let previous = self
            .page
            .fetch_and_u8(abi::SRV_NOTIFY_OFFSET, !bit)
            .unwrap();
        if previous & bit != 0 {
            self.to_client.signal();
        }
    }

    fn buffer_space(&self) -> u32 {
        let ring = self.write;
        ring.size
            - self
                .load(ring.prod_offset)
                .wrapping_sub(self.load(ring.cons_offset))
    }

    fn data_ready(&self) -> u32 {
        let ring = self.read;
        self.load(ring.prod_offset)
            .wrapping_sub(self.load(ring.cons_offset))
    }

    /// Non-blocking `libxenvchan_write`: as much of `data` as fits.
    fn write(&self, data: &[u8]) -> usize {
        let mut space = self.buffer_space();
        if (space as usize) < data.len() {
            self.request_notify(abi::NOTIFY_READ);
            space = self.buffer_space();
        }
        let count = data.len().min(space as usize);
        if count == 0 {
            return 0;
        }
        let ring = self.write;
        let prod = self.load(ring.prod_offset);
        server_copy_in(&self.page, ring.base, ring.size, prod, &data[..count]);
        self.page
            .store_u32(ring.prod_offset, prod.wrapping_add(count as u32))
            .unwrap();
        self.send_notify(abi::NOTIFY_WRITE);
        count
    }

    /// Non-blocking `libxenvchan_read` into `into`; the byte count.
    fn read(&self, into: &mut [u8]) -> Result<usize, String> {
        let mut ready = self.data_ready();
        if (ready as usize) < into.len() {
            self.request_notify(abi::NOTIFY_WRITE);
            ready = self.data_ready();
        }
        if ready > self.read.size {
            return Err(alloc::format!(
                "the client published {ready} bytes in a {}-byte ring",
                self.read.size
            ));
        }
        let count = into.len().min(ready as usize);
        if count == 0 {
            return Ok(0);
        }
        let ring = self.read;
        let cons = self.load(ring.cons_offset);
        server_copy_out(&self.page, ring.base, ring.size, cons, &mut into[..count]);
        self.page
            .store_u32(ring.cons_offset, cons.wrapping_add(count as u32))
            .unwrap();
        self.send_notify(abi::NOTIFY_READ);
        Ok(count)
    }

    /// `vchan-socket-proxy`'s loop: writes `data` in random chunks while reading what comes back,
    /// sleeping on its port only when neither direction can move. Returns the bytes read.
    fn exchange(&self, data: &[u8], from_client: &Port, seed: u64) -> Result<Vec<u8>, String> {
        let mut random = Random(seed);
        let mut sent = 0;
        let mut back = Vec::with_capacity(data.len());
        let mut buffer = vec![0u8; 4096];
        while back.len() < data.len() {
            let mut progress = false;
            if sent < data.len() {
                let end = data.len().min(sent + 1 + random.below(3000));
                let count = self.write(&data[sent..end]);
                sent += count;
                progress |= count > 0;
            }
            let wanted = 1 + random.below(buffer.len());
            let count = self.read(&mut buffer[..wanted])?;
            back.extend_from_slice(&buffer[..count]);
            progress |= count > 0;
            if random.below(8) == 0 {
                std::thread::yield_now();
            }
            if !progress && back.len() < data.len() && !from_client.wait(STALL) {
                return Err(alloc::format!(
                    "server stalled: no event from the client in {STALL:?} with {sent} bytes sent, {} back",
                    back.len()
                ));
            }
        }
        Ok(back)
    }
}

/// A shared page as `libxenvchan_server_init` leaves it, with every ring index at `start`.
fn server_page(left_order: u16, right_order: u16, start: u32) -> AtomicMemory {
    let page = AtomicMemory::new(PAGE_SIZE);
    super::testing::write_server_header(&page, left_order, right_order);
    for offset in [
        abi::LEFT_CONS_OFFSET,
        abi::LEFT_PROD_OFFSET,
        abi::RIGHT_CONS_OFFSET,
        abi::RIGHT_PROD_OFFSET,
    ] {
        page.store_u32(offset, start).unwrap();
    }
    page
}

/// How the client thread drives its channel.
#[derive(Clone, Copy, Debug)]
enum ClientStyle {
    /// grantsvc's own stream pump and echo service, as the kernel runs them.
    Pump,
    /// Direct channel calls with random read and write sizes.
    RandomSizes,
}

/// The client thread: echoes until `done`, sleeping on its port whenever it made no progress.
/// Returns its pump's totals.
fn run_client(
    page: AtomicMemory,
    style: ClientStyle,
    from_server: &Port,
    to_server: &Port,
    done: &AtomicBool,
    seed: u64,
) -> Result<StreamTotals, String> {
    let layout = VchanLayout::decode(&page).map_err(|fault| alloc::format!("{fault}"))?;
    let regions = ChannelRegions {
        page,
        left: None,
        right: None,
    };
    let mut channel =
        VchanChannel::new(&layout, regions).map_err(|(fault, _)| alloc::format!("{fault}"))?;
    channel
        .connect()
        .map_err(|fault| alloc::format!("{fault}"))?;
    to_server.signal();
    let mut pump = StreamPump::default();
    let mut echo = EchoService::default();
    let counters = ServiceCounters::default();
    let mut random = Random(seed);
    let mut pending: VecDeque<u8> = VecDeque::new();
    let mut buffer = vec![0u8; 4096];
    loop {
        let (progress, notify) = match style {
            ClientStyle::Pump => {
                let outcome = pump
                    .run(&mut channel, &mut echo, &counters)
                    .map_err(|fault| alloc::format!("{fault}"))?;
                (outcome.received + outcome.sent > 0, outcome.notify_peer)
            }
            ClientStyle::RandomSizes => {
                let wanted = 1 + random.below(buffer.len());
                let received = channel
                    .receive(&mut buffer[..wanted])
                    .map_err(|fault| alloc::format!("{fault}"))?;
                pending.extend(&buffer[..received.bytes]);
                let (head, _) = pending.as_slices();
                let offer = head.len().min(1 + random.below(3000));
                let sent = channel
                    .send(&head[..offer])
                    .map_err(|fault| alloc::format!("{fault}"))?;
                pending.drain(..sent.bytes);
                (
                    received.bytes + sent.bytes > 0,
                    received.notify_peer | sent.notify_peer,
                )
            }
        };
        if notify {
            to_server.signal();
        }
        if done.load(Ordering::SeqCst) {
            return Ok(pump.totals());
        }
        if random.below(8) == 0 {
            std::thread::yield_now();
        }
        if !progress && !from_server.wait(STALL) && !done.load(Ordering::SeqCst) {
            return Err(alloc::format!(
                "client stalled: no event from the server in {STALL:?} ({} bytes held)",
                pump.pending_output() + pending.len()
            ));
        }
    }
}

/// Sends `length` bytes from a server thread through a client thread and back; panics with the
/// first differing offset when the echo differs, or with the side that stalled.
fn echo_between_threads(
    left_order: u16,
    right_order: u16,
    start: u32,
    style: ClientStyle,
    length: usize,
) {
    let page = server_page(left_order, right_order, start);
    let to_client = Arc::new(Port::default());
    let to_server = Arc::new(Port::default());
    let done = Arc::new(AtomicBool::new(false));
    let data: Vec<u8> = (0..length as u32)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let server = ThreadServer {
        page: page.clone(),
        read: in_page_ring(left_order, abi::LEFT_CONS_OFFSET, abi::LEFT_PROD_OFFSET),
        write: in_page_ring(right_order, abi::RIGHT_CONS_OFFSET, abi::RIGHT_PROD_OFFSET),
        to_client: to_client.clone(),
    };
    let client = {
        let (to_client, to_server, done) = (to_client.clone(), to_server.clone(), done.clone());
        std::thread::spawn(move || {
            run_client(
                page,
                style,
                &to_client,
                &to_server,
                &done,
                0x9e37_79b9_7f4a_7c15,
            )
        })
    };
    let back = server.exchange(&data, &to_server, 0x2545_f491_4f6c_dd1d);
    done.store(true, Ordering::SeqCst);
    to_client.signal();
    let client = client.join().expect("the client thread panicked");
    let context =
        alloc::format!("orders {left_order}/{right_order}, indices from {start}, {style:?}");
    let totals = client.unwrap_or_else(|error| panic!("{context}: {error}"));
    let back = back.unwrap_or_else(|error| panic!("{context}: {error}"));
    if let Some(offset) = back.iter().zip(&data).position(|(got, sent)| got != sent) {
        panic!("{context}: the echo differs from what was sent at byte {offset} of {length}");
    }
    assert_eq!(back.len(), data.len(), "{context}");
    if let ClientStyle::Pump = style {
        let length = length as u64;
        assert_eq!(
            totals,
            StreamTotals {
                received: length,
                sent: length,
                held: 0
            },
            "{context}"
        );
    }
}

#[test]
fn pump_echoes_a_concurrent_server_through_the_socket_proxy_orders() {
    echo_between_threads(10, 11, 0, ClientStyle::Pump, 384 * 1024 / LENGTH_DIVISOR);
}

#[test]
fn random_sized_transfers_echo_a_concurrent_server() {
    echo_between_threads(
        10,
        11,
        0,
        ClientStyle::RandomSizes,
        256 * 1024 / LENGTH_DIVISOR,
    );
    echo_between_threads(
        11,
        10,
        0,
        ClientStyle::RandomSizes,
        128 * 1024 / LENGTH_DIVISOR,
    );
}

#[test]
fn concurrent_echo_across_the_u32_index_wrap() {
    // The indices pass 2^32 after about 700 bytes, in the middle of a lap of both rings.
    echo_between_threads(
        10,
        11,
        u32::MAX - 700,
        ClientStyle::Pump,
        128 * 1024 / LENGTH_DIVISOR,
    );
    echo_between_threads(
        10,
        11,
        u32::MAX - 700,
        ClientStyle::RandomSizes,
        128 * 1024 / LENGTH_DIVISOR,
    );
}
