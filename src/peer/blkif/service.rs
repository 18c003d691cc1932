//! Serving one ring: take requests off it, refuse the bad ones, carry out the good ones, answer each, and say whether to notify.
//!
//! [`serve_ring`] is the whole loop for one wake-up, over the traits the kernel implements. It
//! comes in three parts ([`take_batch`], [`answer_batch`], [`publish_responses`]) so that the
//! kernel can map the data grants of a whole batch in one hypercall after the first and unmap
//! them in one before the last. It stops after `budget` requests so
//! that one busy frontend cannot starve the others (the answer's `more` then says to come
//! back). A [`RingFault`] ends the device: the caller logs it naming the frontend, writes the
//! `error` node and unmaps everything.

use super::execute::{execute, DataPages, Outcome};
use super::indirect::{decode_page, PageCopy};
use super::request::{decode, Decoded};
use super::ring::{BackRing, RingFault};
use super::store::BackingStore;
use super::validate::{
    validate, validate_indirect_segments, Checked, DiskLimits, Refusal, RefusalReason, ValidRequest,
};
use crate::abi::blkif::status;
use crate::addr::PAGE_SIZE;
use crate::shared_memory::SharedMemory;
use alloc::vec::Vec;

/// Per-device counters (published in xenstore by the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceCounters {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests answered `BLKIF_RSP_ERROR` or `BLKIF_RSP_EOPNOTSUPP`.
    pub errors: u64,
    /// Times the rings were served (an event from the frontend, or a backlog left over).
    pub wakeups: u64,
    /// Events sent to the frontend (responses it asked to be told of).
    pub notifications: u64,
}

impl DeviceCounters {
    /// Adds `other`'s counts (for the service-wide totals).
    pub fn accumulate(&mut self, other: &DeviceCounters) {
        self.requests += other.requests;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.errors += other.errors;
        self.wakeups += other.wakeups;
        self.notifications += other.notifications;
    }
}

/// The result of one call of [`serve_ring`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Served {
    /// Signal the frontend's event channel.
    pub notify: bool,
    /// Requests are still waiting (the budget ran out, or one arrived during the final check).
    pub more: bool,
    /// Refused requests, for the caller's log line naming the frontend.
    pub refusals: Vec<Refusal>,
}

/// A request taken off the ring and checked, waiting for its data grants to be mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taken {
    pub id: u64,
    /// The operation byte the response echoes (an indirect request's inner operation).
    pub operation: u8,
    pub checked: Result<ValidRequest, Refusal>,
}

/// First half of a wake-up: takes up to `budget` requests off `ring` and checks each (copying
/// indirect segment pages through `pages`). The caller may then map the data grants of every
/// valid request ([`ValidRequest::grants`]) in one batch before [`answer_batch`].
pub fn take_batch<M: SharedMemory>(
    ring: &mut BackRing<M>,
    limits: &DiskLimits,
    pages: &mut impl DataPages,
    budget: usize,
) -> Result<Vec<Taken>, RingFault> {
    let mut batch = Vec::new();
    while batch.len() < budget {
        let Some(bytes) = ring.next_request()? else {
            break;
        };
        let decoded = decode(&bytes);
        // An indirect request's response carries its inner operation, as Linux blkback
        // answers (blkfront refuses a response whose operation is not the one it queued).
        let operation = match decoded {
            Decoded::Indirect { indirect_op, .. } => indirect_op,
            _ => bytes.operation(),
        };
        batch.push(Taken {
            id: bytes.id(),
            operation,
            checked: check(&decoded, limits, pages),
        });
    }
    Ok(batch)
}

/// Second half: carries out each taken request in ring order and writes its response, not yet
/// visible to the frontend. The caller lets go of the batch's data grants first, then calls
/// [`publish_responses`]: blkfront ends its grant access when it sees a response, and a grant
/// the backend still maps then disables the device ("backed has not unmapped grant"), so Linux
/// blkback too unmaps before it responds (`xen_blkbk_unmap_and_respond`). Returns the refusals.
pub fn answer_batch<M: SharedMemory>(
    ring: &mut BackRing<M>,
    batch: Vec<Taken>,
    store: &mut impl BackingStore,
    pages: &mut impl DataPages,
    counters: &mut DeviceCounters,
) -> Result<Vec<Refusal>, RingFault> {
    let mut refusals = Vec::new();
    for taken in batch {
        counters.requests += 1;
        let answer = match taken.checked {
            Ok(request) => {
                let outcome = execute(&request, store, pages);
                counters.bytes_read += outcome.bytes_read;
                counters.bytes_written += outcome.bytes_written;
                outcome
            }
            Err(refusal) => {
                refusals.push(refusal);
                Outcome {
                    status: refusal.status,
                    ..Outcome::default()
                }
            }
        };
        if answer.status != status::OKAY {
            counters.errors += 1;
        }
        ring.put_response(taken.id, taken.operation, answer.status)?;
    }
    Ok(refusals)
}

/// Third: publishes the responses written, says whether to notify, and re-arms the ring.
pub fn publish_responses<M: SharedMemory>(
    ring: &mut BackRing<M>,
    refusals: Vec<Refusal>,
) -> Result<Served, RingFault> {
    let notify = ring.push_responses()?;
    let more = ring.final_check_for_requests()?;
    Ok(Served {
        notify,
        more,
        refusals,
    })
}

/// Serves up to `budget` requests from `ring`: [`take_batch`], [`answer_batch`],
/// [`publish_responses`].
pub fn serve_ring<M: SharedMemory>(
    ring: &mut BackRing<M>,
    limits: &DiskLimits,
    store: &mut impl BackingStore,
    pages: &mut impl DataPages,
    counters: &mut DeviceCounters,
    budget: usize,
) -> Result<Served, RingFault> {
    let batch = take_batch(ring, limits, pages, budget)?;
    let refusals = answer_batch(ring, batch, store, pages, counters)?;
    publish_responses(ring, refusals)
}

/// Validates a decoded request, copying an indirect request's segment pages out once.
fn check(
    decoded: &super::request::Decoded,
    limits: &DiskLimits,
    pages: &mut impl DataPages,
) -> Result<ValidRequest, Refusal> {
    match validate(decoded, limits)? {
        Checked::Ready(request) => Ok(request),
        Checked::NeedsIndirectPages(header) => {
            let total = usize::from(header.nr_segments);
            let mut segments = Vec::with_capacity(total);
            let mut copy: PageCopy = [0; PAGE_SIZE];
            for &gref in &header.pages {
                if pages.read_page(gref, 0, &mut copy).is_err() {
                    return Err(Refusal {
                        id: header.id,
                        operation: crate::abi::blkif::op::INDIRECT,
                        status: status::ERROR,
                        reason: RefusalReason::GrantDidNotMap { gref },
                    });
                }
                decode_page(&copy, total, &mut segments);
            }
            validate_indirect_segments(&header, segments, limits)
        }
    }
}
