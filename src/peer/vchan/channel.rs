//! The client end of a connected vchan: bounded reads and writes, notify bits and liveness.
//!
//! The indices grantsvc owns (`left.prod`, `right.cons`) are kept privately and only ever written
//! to the page, never read back, so a server scribbling on them cannot confuse us. The server's
//! indices are fetched once per operation and bounded against the ring size before use; a bad one
//! is a [`VchanFault`] that ends the session. Notify handling mirrors `io.c` (see
//! [`crate::abi::vchan`]): the [`SharedMemory`] implementation's `fetch_or`/`fetch_and` must be full
//! barriers (x86's `lock`-prefixed instructions are), since they order our index store before the
//! server's notify bits are read, as `xen_mb()` does in `send_notify`.

use super::fault::{RingSide, VchanFault};
use super::layout::{RingPlacement, RingSpec, VchanLayout};
use super::ring::RingBuffer;
use crate::abi::vchan as abi;
use crate::shared_memory::SharedMemory;
use core::fmt;

/// The result of one read or write on the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[must_use = "when `notify_peer` is set the caller must signal the event channel"]
pub struct Transfer {
    /// Bytes moved.
    pub bytes: usize,
    /// The server asked to be told of this progress: signal the event channel.
    pub notify_peer: bool,
}

/// What `srv_live` says about the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerLiveness {
    /// `srv_live == 1`.
    Connected,
    /// `srv_live == 0`: the server closed or died (gntalloc's unmap notify clears it).
    Gone,
}

/// The regions a channel held, handed back for unmapping.
#[derive(Debug)]
pub struct ChannelRegions<M> {
    /// The shared page.
    pub page: M,
    /// The left ring's pages, when it had its own.
    pub left: Option<M>,
    /// The right ring's pages, when it had its own.
    pub right: Option<M>,
}

/// The four ring indices at one moment, for the log line at the end of a session: ours as we
/// keep them, the server's as fetched once from the page (`None` when the fetch failed). Only
/// ever printed, never used to decide anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingIndices {
    /// Our `left.prod`.
    pub left_prod: u32,
    /// The server's `left.cons`.
    pub left_cons: Option<u32>,
    /// The server's `right.prod`.
    pub right_prod: Option<u32>,
    /// Our `right.cons`.
    pub right_cons: u32,
}

impl fmt::Display for RingIndices {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |index: Option<u32>| index.map_or("?".into(), |index| alloc::format!("{index}"));
        write!(
            formatter,
            "left ring prod {} cons {} (server's), right ring prod {} (server's) cons {}",
            self.left_prod,
            show(self.left_cons),
            show(self.right_prod),
            self.right_cons
        )
    }
}

/// A connected vchan, client side.
#[derive(Debug)]
pub struct VchanChannel<M> {
    regions: ChannelRegions<M>,
    write_ring: RingBuffer,
    read_ring: RingBuffer,
    /// Our `left.prod`, authoritative.
    write_prod: u32,
    /// Our `right.cons`, authoritative.
    read_cons: u32,
    /// The last `right.prod` seen, to catch a producer index moving backwards.
    last_read_prod: u32,
}

/// Checks one ring against the region mapped for it and describes where its bytes are.
fn ring_buffer<M: SharedMemory>(
    spec: &RingSpec,
    page: &M,
    region: Option<&M>,
) -> Result<RingBuffer, VchanFault> {
    match (&spec.placement, region) {
        (RingPlacement::InPage { offset }, None) => RingBuffer::new(*offset, spec.size(), page),
        (RingPlacement::Granted { .. }, Some(region)) => RingBuffer::new(0, spec.size(), region),
        _ => Err(VchanFault::RegionsMismatchLayout),
    }
}

impl<M: SharedMemory> VchanChannel<M> {
    /// Assembles a channel from the mapped page and ring regions (as `layout` requires them).
    ///
    /// On error the regions are given back so that the caller can unmap them.
    pub fn new(
        layout: &VchanLayout,
        regions: ChannelRegions<M>,
    ) -> Result<Self, (VchanFault, ChannelRegions<M>)> {
        let rings = ring_buffer(&layout.left, &regions.page, regions.left.as_ref()).and_then(
            |write_ring| {
                ring_buffer(&layout.right, &regions.page, regions.right.as_ref())
                    .map(|read_ring| (write_ring, read_ring))
            },
        );
        match rings {
            Ok((write_ring, read_ring)) => Ok(VchanChannel {
                regions,
                write_ring,
                read_ring,
                write_prod: layout.initial_left_prod,
                read_cons: layout.initial_right_cons,
                last_read_prod: layout.initial_right_cons,
            }),
            Err(fault) => Err((fault, regions)),
        }
    }

    fn page(&self) -> &M {
        &self.regions.page
    }

    fn write_memory(&self) -> &M {
        self.regions.left.as_ref().unwrap_or(&self.regions.page)
    }

    fn read_memory(&self) -> &M {
        self.regions.right.as_ref().unwrap_or(&self.regions.page)
    }

    /// Announces the client (`init.c` `libxenvchan_client_init`): `cli_live = 1` and a request to be
    /// told when the server writes. The caller must then signal the event channel.
    pub fn connect(&self) -> Result<(), VchanFault> {
        self.page()
            .store_u8(abi::SRV_NOTIFY_OFFSET, abi::NOTIFY_WRITE)?;
        self.page()
            .store_u8(abi::CLI_LIVE_OFFSET, abi::LIVE_CONNECTED)?;
        Ok(())
    }

    /// Reads `srv_live` once.
    pub fn server_liveness(&self) -> Result<ServerLiveness, VchanFault> {
        match self.page().load_u8(abi::SRV_LIVE_OFFSET)? {
            abi::LIVE_GONE => Ok(ServerLiveness::Gone),
            abi::LIVE_CONNECTED => Ok(ServerLiveness::Connected),
            value => Err(VchanFault::InvalidLiveByte { value }),
        }
    }

    /// Bytes the server has produced and we have not consumed, from one fetch of `right.prod`.
    fn readable(&mut self) -> Result<u32, VchanFault> {
        let prod = self.page().load_u32(abi::RIGHT_PROD_OFFSET)?;
        let ready = prod.wrapping_sub(self.read_cons);
        if ready > self.read_ring.size() {
            return Err(VchanFault::IndexBeyondRing {
                ring: RingSide::Right,
                ours: self.read_cons,
                theirs: prod,
                size: self.read_ring.size(),
            });
        }
        if ready < self.last_read_prod.wrapping_sub(self.read_cons) {
            return Err(VchanFault::ProducerMovedBackwards {
                previous: self.last_read_prod,
                now: prod,
            });
        }
        self.last_read_prod = prod;
        Ok(ready)
    }

    /// Free space in the write ring, from one fetch of `left.cons`.
    fn writable(&self) -> Result<u32, VchanFault> {
        let cons = self.page().load_u32(abi::LEFT_CONS_OFFSET)?;
        let outstanding = self.write_prod.wrapping_sub(cons);
        if outstanding > self.write_ring.size() {
            return Err(VchanFault::IndexBeyondRing {
                ring: RingSide::Left,
                ours: self.write_prod,
                theirs: cons,
                size: self.write_ring.size(),
            });
        }
        Ok(self.write_ring.size() - outstanding)
    }

    /// Asks the server to signal us for `bit` (`io.c` `request_notify`).
    fn request_notify(&self, bit: u8) -> Result<(), VchanFault> {
        self.page().fetch_or_u8(abi::SRV_NOTIFY_OFFSET, bit)?;
        Ok(())
    }

    /// Clears `bit` in our notify byte; true when the server had asked for it (`io.c` `send_notify`).
    fn take_notify(&self, bit: u8) -> Result<bool, VchanFault> {
        let previous = self.page().fetch_and_u8(abi::CLI_NOTIFY_OFFSET, !bit)?;
        Ok(previous & bit != 0)
    }

    /// Moves up to `into.len()` available bytes out of the read ring.
    ///
    /// With nothing available it asks the server to signal its next write (then looks once more,
    /// so that a write racing with the request is not missed).
    pub fn receive(&mut self, into: &mut [u8]) -> Result<Transfer, VchanFault> {
        if into.is_empty() {
            return Ok(Transfer::default());
        }
        let mut ready = self.readable()?;
        if ready == 0 {
            self.request_notify(abi::NOTIFY_WRITE)?;
            ready = self.readable()?;
            if ready == 0 {
                return Ok(Transfer::default());
            }
        }
        let count = into.len().min(ready as usize);
        let (chunk, _) = into.split_at_mut(count);
        self.read_ring
            .copy_out(self.read_memory(), self.read_cons, chunk)?;
        self.read_cons = self.read_cons.wrapping_add(count as u32);
        self.page()
            .store_u32(abi::RIGHT_CONS_OFFSET, self.read_cons)?;
        Ok(Transfer {
            bytes: count,
            notify_peer: self.take_notify(abi::NOTIFY_READ)?,
        })
    }

    /// Moves as much of `from` as fits into the write ring.
    ///
    /// When not all of it fits it asks the server to signal when it consumes (then looks once more).
    pub fn send(&mut self, from: &[u8]) -> Result<Transfer, VchanFault> {
        if from.is_empty() {
            return Ok(Transfer::default());
        }
        let mut space = self.writable()?;
        if (space as usize) < from.len() {
            self.request_notify(abi::NOTIFY_READ)?;
            space = self.writable()?;
            if space == 0 {
                return Ok(Transfer::default());
            }
        }
        let count = from.len().min(space as usize);
        let (chunk, _) = from.split_at(count);
        self.write_ring
            .copy_in(self.write_memory(), self.write_prod, chunk)?;
        self.write_prod = self.write_prod.wrapping_add(count as u32);
        self.page()
            .store_u32(abi::LEFT_PROD_OFFSET, self.write_prod)?;
        Ok(Transfer {
            bytes: count,
            notify_peer: self.take_notify(abi::NOTIFY_WRITE)?,
        })
    }

    /// Our indices and one fetch of the server's, for a diagnostic log line.
    pub fn indices(&self) -> RingIndices {
        RingIndices {
            left_prod: self.write_prod,
            left_cons: self.page().load_u32(abi::LEFT_CONS_OFFSET).ok(),
            right_prod: self.page().load_u32(abi::RIGHT_PROD_OFFSET).ok(),
            right_cons: self.read_cons,
        }
    }

    /// Bytes mapped for the channel (the page and the rings' own pages).
    pub fn mapped_bytes(&self) -> usize {
        let ring = |region: Option<&M>| region.map_or(0, SharedMemory::size);
        self.regions.page.size()
            + ring(self.regions.left.as_ref())
            + ring(self.regions.right.as_ref())
    }

    /// Hands the regions back for unmapping, after `cli_live = 0` when the server may still look
    /// (`io.c` `libxenvchan_close`). The caller then signals the event channel if the server lives.
    pub fn close(self, tell_server: bool) -> ChannelRegions<M> {
        if tell_server {
            // Best effort: the page is ours to unmap next whatever this store does.
            let _ = self.page().store_u8(abi::CLI_LIVE_OFFSET, abi::LIVE_GONE);
        }
        self.regions
    }
}

#[cfg(test)]
mod tests;
