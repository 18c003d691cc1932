//! A vchan channel opened on a decoded layout over the fuzzer's page, each granted ring in a zeroed region of its own, for the vchan fuzz targets.

use crate::shared_page::Memory;
use grantsvc::peer::vchan::channel::{ChannelRegions, VchanChannel};
use grantsvc::peer::vchan::layout::{RingPlacement, RingSpec, VchanLayout};

/// The channel on `layout` over `page` (a decoded layout must be accepted), with the regions
/// of its left and right granted rings (clones share their bytes) for the server's side.
pub fn open_channel(
    layout: &VchanLayout,
    page: &Memory,
) -> (VchanChannel<Memory>, Option<Memory>, Option<Memory>) {
    let region = |spec: &RingSpec| match spec.placement {
        RingPlacement::InPage { .. } => None,
        RingPlacement::Granted { .. } => Some(Memory::new(vec![0; spec.size() as usize])),
    };
    let (left, right) = (region(&layout.left), region(&layout.right));
    let regions = ChannelRegions {
        page: page.clone(),
        left: left.clone(),
        right: right.clone(),
    };
    match VchanChannel::new(layout, regions) {
        Ok(channel) => (channel, left, right),
        Err((fault, _)) => panic!("a channel on a decoded layout is refused: {fault}"),
    }
}
