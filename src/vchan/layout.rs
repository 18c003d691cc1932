//! Decodes a vchan shared page once into a validated [`VchanLayout`]: ring orders, placements and grant refs.
//!
//! The server may rewrite the page at any time, so every field is fetched exactly once here and
//! only the validated copy is used afterwards (the grant list is documented as constant once
//! shared; a server that changes it later changes nothing for us).

use super::fault::{RingSide, VchanFault};
use crate::abi::vchan as abi;
use crate::addr::PAGE_SIZE;
use crate::ids::GrantRef;
use crate::shared_memory::SharedMemory;
use alloc::vec::Vec;

/// Where a ring's bytes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingPlacement {
    /// In the shared page itself, starting at this offset (orders 10 and 11).
    InPage { offset: usize },
    /// In separately granted pages, listed in order (orders 12 and up).
    Granted { refs: Vec<GrantRef> },
}

/// One ring, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// log2 of the ring's size in bytes, within `10..=20`.
    pub order: u16,
    /// Where its bytes are.
    pub placement: RingPlacement,
}

impl RingSpec {
    /// The ring's size in bytes (at most 1 MiB, so it fits a `u32`).
    pub fn size(&self) -> u32 {
        1u32 << self.order
    }

    /// Grant refs to map for this ring (empty for an in-page ring).
    pub fn grant_refs(&self) -> &[GrantRef] {
        match &self.placement {
            RingPlacement::InPage { .. } => &[],
            RingPlacement::Granted { refs } => refs,
        }
    }
}

/// A shared page's layout, validated, plus the initial values of the indices grantsvc owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VchanLayout {
    /// The ring grantsvc writes (`left`).
    pub left: RingSpec,
    /// The ring grantsvc reads (`right`).
    pub right: RingSpec,
    /// `left.prod` when decoded: where our writes continue (non-zero when a server page is reused).
    pub initial_left_prod: u32,
    /// `right.cons` when decoded: where our reads continue.
    pub initial_right_cons: u32,
}

/// Number of 4 KiB pages of a ring of `order`, 0 for in-page orders.
fn granted_pages(order: u16) -> usize {
    if order >= abi::PAGED_RING_MIN_ORDER {
        1usize << (order - abi::PAGED_RING_MIN_ORDER)
    } else {
        0
    }
}

fn check_order(ring: RingSide, order: u16) -> Result<u16, VchanFault> {
    if (abi::SMALL_RING_ORDER..=abi::MAX_RING_ORDER).contains(&order) {
        Ok(order)
    } else {
        Err(VchanFault::OrderOutOfRange { ring, order })
    }
}

/// The offset of an in-page ring of `order`, or `None` for a granted one.
fn in_page_offset(order: u16) -> Option<usize> {
    match order {
        abi::SMALL_RING_ORDER => Some(abi::SMALL_RING_OFFSET),
        abi::LARGE_RING_ORDER => Some(abi::LARGE_RING_OFFSET),
        _ => None,
    }
}

fn read_u16(page: &impl SharedMemory, offset: usize) -> Result<u16, VchanFault> {
    let mut bytes = [0u8; 2];
    page.read_bytes(offset, &mut bytes)?;
    Ok(u16::from_le_bytes(bytes))
}

fn read_grants(
    page: &impl SharedMemory,
    first: usize,
    count: usize,
) -> Result<Vec<GrantRef>, VchanFault> {
    let mut refs = Vec::with_capacity(count);
    for index in first..first + count {
        let mut bytes = [0u8; abi::GRANT_ENTRY_SIZE];
        page.read_bytes(
            abi::GRANTS_OFFSET + index * abi::GRANT_ENTRY_SIZE,
            &mut bytes,
        )?;
        refs.push(GrantRef::new(u32::from_le_bytes(bytes)));
    }
    Ok(refs)
}

fn placement(
    page: &impl SharedMemory,
    order: u16,
    first_grant: usize,
) -> Result<RingPlacement, VchanFault> {
    Ok(match in_page_offset(order) {
        Some(offset) => RingPlacement::InPage { offset },
        None => RingPlacement::Granted {
            refs: read_grants(page, first_grant, granted_pages(order))?,
        },
    })
}

impl VchanLayout {
    /// Reads and validates the shared page (which must be at least one page long).
    pub fn decode(page: &impl SharedMemory) -> Result<VchanLayout, VchanFault> {
        if page.size() < PAGE_SIZE {
            return Err(VchanFault::RegionTooSmall {
                needed: PAGE_SIZE,
                size: page.size(),
            });
        }
        let left_order = check_order(RingSide::Left, read_u16(page, abi::LEFT_ORDER_OFFSET)?)?;
        let right_order = check_order(RingSide::Right, read_u16(page, abi::RIGHT_ORDER_OFFSET)?)?;
        if left_order == right_order && left_order < abi::PAGED_RING_MIN_ORDER {
            return Err(VchanFault::InPageRingsOverlap { order: left_order });
        }
        // The grant list must end before the first in-page ring, or the end of the page.
        let limit = [left_order, right_order]
            .into_iter()
            .filter_map(in_page_offset)
            .fold(PAGE_SIZE, usize::min);
        let left_pages = granted_pages(left_order);
        let grants = left_pages + granted_pages(right_order);
        if abi::GRANTS_OFFSET + grants * abi::GRANT_ENTRY_SIZE > limit {
            return Err(VchanFault::GrantListTooLong { grants, limit });
        }
        Ok(VchanLayout {
            left: RingSpec {
                order: left_order,
                placement: placement(page, left_order, 0)?,
            },
            right: RingSpec {
                order: right_order,
                placement: placement(page, right_order, left_pages)?,
            },
            initial_left_prod: page.load_u32(abi::LEFT_PROD_OFFSET)?,
            initial_right_cons: page.load_u32(abi::RIGHT_CONS_OFFSET)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vchan::testing::{FakeMemory, ServerPage};

    #[test]
    fn socket_proxy_default_orders_put_both_rings_in_the_page() {
        let page = ServerPage::new(10, 11, &[]).into_memory();
        let layout = VchanLayout::decode(&page).unwrap();
        assert_eq!(
            layout.left.placement,
            RingPlacement::InPage { offset: 1024 }
        );
        assert_eq!(
            layout.right.placement,
            RingPlacement::InPage { offset: 2048 }
        );
        assert_eq!(layout.left.size(), 1024);
        assert_eq!(layout.right.size(), 2048);
    }

    #[test]
    fn granted_rings_take_left_refs_first() {
        let refs: Vec<u32> = (100..100 + 2 + 4).collect();
        let page = ServerPage::new(13, 14, &refs).into_memory();
        let layout = VchanLayout::decode(&page).unwrap();
        assert_eq!(
            layout.left.grant_refs(),
            &[GrantRef::new(100), GrantRef::new(101)]
        );
        assert_eq!(
            layout.right.grant_refs(),
            &[
                GrantRef::new(102),
                GrantRef::new(103),
                GrantRef::new(104),
                GrantRef::new(105)
            ]
        );
    }

    #[test]
    fn orders_outside_the_range_are_refused() {
        for (left, right, side) in [(9, 11, RingSide::Left), (10, 21, RingSide::Right)] {
            let page = ServerPage::new(left, right, &[]).into_memory();
            let fault = VchanLayout::decode(&page).unwrap_err();
            assert!(matches!(fault, VchanFault::OrderOutOfRange { ring, .. } if ring == side));
        }
        let page = ServerPage::new(0xffff, 12, &[0]).into_memory();
        assert!(VchanLayout::decode(&page).is_err());
    }

    #[test]
    fn equal_in_page_orders_overlap() {
        let page = ServerPage::new(11, 11, &[]).into_memory();
        assert_eq!(
            VchanLayout::decode(&page),
            Err(VchanFault::InPageRingsOverlap { order: 11 })
        );
    }

    #[test]
    fn grant_list_may_not_run_into_an_in_page_ring() {
        // 256 refs for an order-20 ring need 24 + 1024 bytes: past the order-10 ring at 1024.
        let refs = [7u32; 256];
        let page = ServerPage::new(10, 20, &refs).into_memory();
        assert_eq!(
            VchanLayout::decode(&page),
            Err(VchanFault::GrantListTooLong {
                grants: 256,
                limit: 1024
            })
        );
        // Beside an order-11 ring there is room.
        let page = ServerPage::new(11, 20, &refs).into_memory();
        assert!(VchanLayout::decode(&page).is_ok());
        // Two order-20 rings: 512 refs fit in the page.
        let refs = [7u32; 512];
        let page = ServerPage::new(20, 20, &refs).into_memory();
        assert_eq!(
            VchanLayout::decode(&page).unwrap().right.grant_refs().len(),
            256
        );
    }

    #[test]
    fn a_short_page_is_refused_not_read_past() {
        let page = FakeMemory::new(100);
        assert!(matches!(
            VchanLayout::decode(&page),
            Err(VchanFault::RegionTooSmall { .. })
        ));
    }
}
