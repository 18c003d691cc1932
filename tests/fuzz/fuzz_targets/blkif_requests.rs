//! Fuzz target: a frontend's arbitrary ring and indirect pages, through the back ring, decoder, validator and RAM disk.
//!
//! The input is the ring page (header and slots, `req_prod` included) followed by the contents
//! of the granted pages. Properties checked without bound on the inputs: nothing panics; the
//! ring either halts with a fault or answers every request it took with OKAY, ERROR or
//! EOPNOTSUPP; every request the validator passes lies inside the disk, checked here
//! independently; the RAM disk never holds more pages than its size.
#![no_main]

use grantsvc::abi::blkif::{op, status, SECTOR_SIZE};
use grantsvc::ids::GrantRef;
use grantsvc::peer::blkif::execute::{DataPages, PageFault};
use grantsvc::peer::blkif::ram_disk::{MemoryBudget, RamDisk};
use grantsvc::peer::blkif::request::decode;
use grantsvc::peer::blkif::ring::BackRing;
use grantsvc::peer::blkif::service::{serve_ring, DeviceCounters};
use grantsvc::peer::blkif::validate::{validate, Action, Checked, DiskLimits};
use libfuzzer_sys::fuzz_target;
#[path = "shared_page.rs"]
mod shared_page;
use grantsvc::shared_memory::SharedMemory;
use shared_page::Memory;

const PAGE: usize = 4096;
const DISK_SECTORS: u64 = 64;

/// Granted pages: grant ref `n` below the page count is page `n` of the input's tail; others
/// do not map.
struct Pages(Vec<Vec<u8>>);

impl Pages {
    fn page(&mut self, gref: GrantRef) -> Result<&mut Vec<u8>, PageFault> {
        self.0
            .get_mut(gref.get() as usize)
            .ok_or(PageFault { gref })
    }
}

impl DataPages for Pages {
    fn read_page(
        &mut self,
        gref: GrantRef,
        offset: usize,
        into: &mut [u8],
    ) -> Result<(), PageFault> {
        let page = self.page(gref)?;
        let source = page
            .get(offset..offset + into.len())
            .ok_or(PageFault { gref })?;
        into.copy_from_slice(source);
        Ok(())
    }
    fn write_page(&mut self, gref: GrantRef, offset: usize, from: &[u8]) -> Result<(), PageFault> {
        let page = self.page(gref)?;
        let target = page
            .get_mut(offset..offset + from.len())
            .ok_or(PageFault { gref })?;
        target.copy_from_slice(from);
        Ok(())
    }
}

const LIMITS: DiskLimits = DiskLimits {
    sectors: DISK_SECTORS,
    writable: true,
    flush: true,
    discard: true,
    max_indirect_segments: 256,
};

fuzz_target!(|input: &[u8]| {
    let (ring_bytes, rest) = input.split_at(input.len().min(PAGE));
    let mut ring_page = vec![0u8; PAGE];
    ring_page[..ring_bytes.len()].copy_from_slice(ring_bytes);
    // rsp_prod starts at 0 so the ring attaches where a fresh frontend would leave it.
    ring_page[8..12].fill(0);
    let pages: Vec<Vec<u8>> = rest
        .chunks(PAGE)
        .take(8)
        .map(|chunk| {
            let mut page = vec![0u8; PAGE];
            page[..chunk.len()].copy_from_slice(chunk);
            page
        })
        .collect();

    // The decoder and validator alone, on every slot: what passes lies inside the disk.
    for slot in ring_page[64..].chunks_exact(112) {
        let mut bytes = [0u8; 112];
        bytes.copy_from_slice(slot);
        let decoded = decode(&grantsvc::peer::blkif::request::RequestBytes(bytes));
        if let Ok(Checked::Ready(request)) = validate(&decoded, &LIMITS) {
            match &request.action {
                Action::Read { sector, segments }
                | Action::Write {
                    sector, segments, ..
                } => {
                    assert!(!segments.is_empty() && segments.len() <= 11);
                    let sectors: u64 = segments
                        .iter()
                        .map(|segment| {
                            assert!(
                                segment.first_sect <= segment.last_sect && segment.last_sect < 8
                            );
                            u64::from(segment.last_sect - segment.first_sect) + 1
                        })
                        .sum();
                    assert!(sector
                        .checked_add(sectors)
                        .is_some_and(|end| end <= DISK_SECTORS));
                }
                Action::Discard { sector, sectors } => {
                    assert!(sector
                        .checked_add(*sectors)
                        .is_some_and(|end| end <= DISK_SECTORS));
                }
                Action::Flush => assert_eq!(request.operation, op::FLUSH_DISKCACHE),
            }
        }
    }

    // The whole path.
    let memory = Memory::new(ring_page);
    let Ok(mut ring) = BackRing::attach(memory, 0) else {
        return;
    };
    let mut budget = MemoryBudget::new(DISK_SECTORS * SECTOR_SIZE as u64);
    let mut disk = RamDisk::attach(DISK_SECTORS, &mut budget).expect("the budget covers the disk");
    let mut pages = Pages(pages);
    let mut counters = DeviceCounters::default();
    if serve_ring(&mut ring, &LIMITS, &mut disk, &mut pages, &mut counters, 64).is_ok() {
        let memory = ring.into_memory();
        let rsp_prod = memory.load_u32(8).expect("in the page");
        assert_eq!(u64::from(rsp_prod), counters.requests);
        for index in 0..rsp_prod.min(32) {
            let offset = 64 + index as usize * 112;
            let mut response = [0u8; 16];
            memory
                .read_bytes(offset, &mut response)
                .expect("in the page");
            let status_value = i16::from_le_bytes([response[10], response[11]]);
            assert!([status::OKAY, status::ERROR, status::EOPNOTSUPP].contains(&status_value));
            assert_eq!(response[9], 0);
            assert_eq!(response[12..16], [0, 0, 0, 0]);
        }
    }
    assert!(disk.pages_in_use() as u64 <= DISK_SECTORS * SECTOR_SIZE as u64 / PAGE as u64);
});
