//! Moves a byte-stream service's input and output through a connected vchan, with bounded buffers.

use super::channel::VchanChannel;
use super::command::MAX_REPLY;
use super::fault::VchanFault;
use super::service::ByteService;
use crate::peer::counters::ServiceCounters;
use crate::shared_memory::SharedMemory;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Bytes read from the ring and not yet taken by the service, at most.
pub const INBOX_CAPACITY: usize = 4096;
/// Bytes of service output not yet written to the ring, at most (room for at least one reply).
pub const OUTBOX_CAPACITY: usize = 4096 + MAX_REPLY;

/// What one pump run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use = "when `notify_peer` is set the caller must signal the event channel"]
pub struct PumpOutcome {
    /// Bytes taken from the read ring.
    pub received: usize,
    /// Bytes put into the write ring.
    pub sent: usize,
    /// The server asked to be told of our progress: signal the event channel once.
    pub notify_peer: bool,
}

/// What a pump moved over its whole life, for the log line at the end of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamTotals {
    /// Bytes taken from the read ring.
    pub received: u64,
    /// Bytes put into the write ring.
    pub sent: u64,
    /// Bytes received and not (yet) sent back: input the service has not taken, output the ring
    /// has not accepted.
    pub held: usize,
}

impl fmt::Display for StreamTotals {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} byte(s) received, {} sent, {} held",
            self.received, self.sent, self.held
        )
    }
}

/// A session's stream buffers.
#[derive(Debug)]
pub struct StreamPump {
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    scratch: Vec<u8>,
    received: u64,
    sent: u64,
}

impl Default for StreamPump {
    fn default() -> Self {
        StreamPump {
            inbox: Vec::with_capacity(INBOX_CAPACITY),
            outbox: Vec::with_capacity(OUTBOX_CAPACITY),
            scratch: vec![0; INBOX_CAPACITY],
            received: 0,
            sent: 0,
        }
    }
}

impl StreamPump {
    /// Runs until neither ring nor service can make progress. When it returns, the server has been
    /// asked to signal us on its next write (and on its next read while output is waiting).
    pub fn run<M: SharedMemory>(
        &mut self,
        channel: &mut VchanChannel<M>,
        service: &mut impl ByteService,
        counters: &ServiceCounters,
    ) -> Result<PumpOutcome, VchanFault> {
        let mut outcome = PumpOutcome::default();
        loop {
            let mut progress = false;
            if !self.outbox.is_empty() {
                let transfer = channel.send(&self.outbox)?;
                self.outbox.drain(..transfer.bytes);
                outcome.sent += transfer.bytes;
                self.sent += transfer.bytes as u64;
                outcome.notify_peer |= transfer.notify_peer;
                progress |= transfer.bytes > 0;
            }
            let room = INBOX_CAPACITY.saturating_sub(self.inbox.len());
            if room > 0 {
                let scratch = self.scratch.get_mut(..room).unwrap_or_default();
                let transfer = channel.receive(scratch)?;
                self.inbox
                    .extend_from_slice(scratch.get(..transfer.bytes).unwrap_or_default());
                outcome.received += transfer.bytes;
                self.received += transfer.bytes as u64;
                outcome.notify_peer |= transfer.notify_peer;
                progress |= transfer.bytes > 0;
            }
            if !self.inbox.is_empty() {
                let taken =
                    service.process(&self.inbox, &mut self.outbox, OUTBOX_CAPACITY, counters);
                self.inbox.drain(..taken.min(self.inbox.len()));
                progress |= taken > 0;
            }
            if !progress {
                return Ok(outcome);
            }
        }
    }

    /// Output produced but not yet accepted by the ring.
    pub fn pending_output(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes moved since the pump was made, and bytes held now.
    pub fn totals(&self) -> StreamTotals {
        StreamTotals {
            received: self.received,
            sent: self.sent,
            held: self.inbox.len() + self.outbox.len(),
        }
    }
}
