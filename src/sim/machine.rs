//! The simulated machine: frames with owners, types and contents; the p2m/M2P; the initial tree Xen builds for a PV guest.

use super::domain::SimDomain;
use super::inspect::{HypercallCounts, Violation};
use crate::abi::mmu::pte;
use crate::addr::{MachineAddr, Mfn, Pfn, PAGE_SIZE};
use crate::hypervisor::XenError;
use crate::ids::{DomId, GrantRef};
use crate::pmap::{DIRECT_MAP_BASE, XEN_L4_SLOTS};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;

/// The simulated guest's domain id.
pub const SIM_DOMID: DomId = match DomId::new(1) {
    Some(domain) => domain,
    None => panic!("1 is an ordinary domain id"),
};
/// `DOMID_XEN`: owner of Xen's own frames.
pub const DOMID_XEN: DomId = DomId::XEN;

/// A frame number the simulator made up itself. Its machines have a few thousand frames, so a
/// number at or beyond 2^40 is a bug in the simulator, not a case to handle.
pub(crate) fn sim_pfn(raw: u64) -> Pfn {
    Pfn::new(raw).expect("simulated frame numbers are far below 2^40")
}

/// A machine frame number the simulator made up itself (see [`sim_pfn`]).
pub(crate) fn sim_mfn(raw: u64) -> Mfn {
    Mfn::new(raw).expect("simulated frame numbers are far below 2^40")
}

/// First machine frame numbers are Xen's, so no mfn equals its pfn by accident.
const XEN_FRAMES: u64 = 0x40;

/// Shape of the simulated guest.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// Pseudo-physical frames of the guest.
    pub pages: u64,
    /// Frames Xen maps at the direct-map address at start (kernel, start info, page tables, slack).
    pub initially_mapped: u64,
    /// Frames of the "kernel image" before Xen's page tables.
    pub kernel_pages: u64,
    /// Concurrent grant mappings allowed (Xen's maptrack limit).
    pub maptrack_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        // Under Miri (`make miri`) a smaller domain: building, adopting and extending the
        // direct map of 512 pages took some 20 s of interpretation per test there (the blkif
        // session tests build up to four), and no test needs more than 256.
        let pages = if cfg!(miri) { 256 } else { 2048 };
        SimConfig {
            pages,
            initially_mapped: pages / 2,
            kernel_pages: 64,
            maptrack_limit: 8192,
        }
    }
}

/// A frame's bytes, allocated at the first write: most frames of a simulated machine are never
/// written, and host tests (Miri's above all) would otherwise spend most of their time zeroing
/// and copying thousands of pages they never look at.
#[derive(Default)]
pub(super) struct FrameData(Option<Box<[u8; PAGE_SIZE]>>);

/// What a frame never written holds.
static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

impl FrameData {
    /// The bytes (zeroes until the first write).
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        self.0.as_deref().unwrap_or(&ZERO_PAGE)
    }

    /// The bytes, allocated zeroed on first use.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        self.0.get_or_insert_with(|| {
            // From a zeroed allocation, not a zeroed array on the stack moved into a box.
            alloc::vec![0u8; PAGE_SIZE]
                .into_boxed_slice()
                .try_into()
                .unwrap_or_else(|_| unreachable!("a vector of PAGE_SIZE bytes"))
        })
    }

    /// Zeroes the frame (by forgetting its bytes).
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// One machine frame.
pub(super) struct Frame {
    pub owner: DomId,
    pub data: FrameData,
    /// `Some(level)` while validated as a page table.
    pub table_level: Option<u32>,
    /// Entries of validated tables (or the vcpu's root) referencing it as a table.
    pub table_refs: u32,
    /// Present writable L1 entries mapping it.
    pub writable_refs: u32,
}

/// A live grant mapping in our maptrack table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Maptrack {
    pub granter: DomId,
    pub grant_ref: GrantRef,
    pub host_addr: MachineAddr,
    pub readonly: bool,
}

/// The simulated hypervisor.
pub struct SimXen {
    pub(super) frames: Vec<Frame>,
    pub(super) p2m: Vec<Mfn>,
    /// Indexed by machine frame number: the simulator's frames are numbered densely from 0, so
    /// a vector is the M2P table itself (a tree's search was most of the host tests' time under
    /// Miri, as the pmap looks up every table it walks).
    pub(super) m2p: Vec<Option<Pfn>>,
    pub(super) root: Mfn,
    pub(super) domains: BTreeMap<DomId, SimDomain>,
    pub(super) maptrack: BTreeMap<u32, Maptrack>,
    pub(super) maptrack_limit: usize,
    /// Handles below `next_handle` not in use: the lowest is handed out first, as the old
    /// linear search did, in O(log n).
    pub(super) free_handles: BTreeSet<u32>,
    /// One past the highest handle ever handed out.
    pub(super) next_handle: u32,
    /// PTE machine address -> handle of the grant mapping Xen wrote there.
    pub(super) grant_ptes: BTreeMap<MachineAddr, u32>,
    pub(super) violations: Vec<Violation>,
    pub(super) calls: HypercallCounts,
    pub(super) fail_next_grant_map: Option<XenError>,
    pub(super) fail_next_mmu_update: Option<(usize, XenError)>,
    pub(super) config: SimConfig,
    pub(super) page_table_frames: u64,
}

impl SimXen {
    /// A guest as Xen starts it: frames `0..initially_mapped` mapped read-write at the direct
    /// map, except the page-table frames (right after the kernel), mapped read-only; Xen's own
    /// L4 slots filled with entries of Xen's.
    pub fn new(config: SimConfig) -> SimXen {
        let mut sim = SimXen {
            frames: Vec::new(),
            p2m: Vec::new(),
            m2p: Vec::new(),
            root: sim_mfn(0),
            domains: BTreeMap::new(),
            maptrack: BTreeMap::new(),
            maptrack_limit: config.maptrack_limit,
            free_handles: BTreeSet::new(),
            next_handle: 0,
            grant_ptes: BTreeMap::new(),
            violations: Vec::new(),
            calls: HypercallCounts::default(),
            fail_next_grant_map: None,
            fail_next_mmu_update: None,
            config,
            page_table_frames: 0,
        };
        for _ in 0..XEN_FRAMES {
            sim.new_frame(DOMID_XEN);
        }
        // Our frames in reverse machine order: pfn N is mfn XEN_FRAMES + pages - 1 - N.
        let mut ours = vec![sim_mfn(0); config.pages as usize];
        for pfn in (0..config.pages).rev() {
            ours[pfn as usize] = sim.new_frame(SIM_DOMID);
        }
        sim.m2p = vec![None; sim.frames.len()];
        for (pfn, mfn) in ours.iter().enumerate() {
            if let Some(entry) = sim.m2p.get_mut(mfn.get() as usize) {
                *entry = Some(sim_pfn(pfn as u64));
            }
        }
        sim.p2m = ours.clone();
        sim.domains.insert(
            SIM_DOMID,
            SimDomain {
                frames: ours,
                translated: false,
                grants: Vec::new(),
            },
        );
        sim.build_initial_tree();
        sim
    }

    fn new_frame(&mut self, owner: DomId) -> Mfn {
        let mfn = sim_mfn(self.frames.len() as u64);
        self.frames.push(Frame {
            owner,
            data: FrameData::default(),
            table_level: None,
            table_refs: 0,
            writable_refs: 0,
        });
        mfn
    }

    fn build_initial_tree(&mut self) {
        let mapped = self.config.initially_mapped;
        let l1_count = mapped.div_ceil(512);
        let first_table = self.config.kernel_pages;
        let l4 = sim_pfn(first_table);
        let l3 = sim_pfn(first_table + 1);
        let l2 = sim_pfn(first_table + 2);
        let l1s: Vec<Pfn> = (0..l1_count)
            .map(|i| sim_pfn(first_table + 3 + i))
            .collect();
        self.page_table_frames = 3 + l1_count;
        let table_flags = pte::PRESENT | pte::WRITABLE | pte::USER | pte::ACCESSED;
        let direct = DIRECT_MAP_BASE;
        let index = |level: u32| ((direct >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        self.write_raw(
            self.p2m[l4.get() as usize],
            index(4),
            self.p2m[l3.get() as usize].base().get() | table_flags,
        );
        self.write_raw(
            self.p2m[l3.get() as usize],
            index(3),
            self.p2m[l2.get() as usize].base().get() | table_flags,
        );
        for (i, l1) in l1s.iter().enumerate() {
            self.write_raw(
                self.p2m[l2.get() as usize],
                index(2) + i,
                self.p2m[l1.get() as usize].base().get() | table_flags,
            );
        }
        let is_table = |pfn: u64| pfn >= first_table && pfn < first_table + 3 + l1_count;
        for pfn in 0..mapped {
            let mut flags = pte::PRESENT | pte::USER | pte::ACCESSED | pte::NO_EXECUTE;
            if !is_table(pfn) {
                flags |= pte::WRITABLE | pte::DIRTY;
            }
            let l1 = l1s[(pfn / 512) as usize];
            self.write_raw(
                self.p2m[l1.get() as usize],
                (pfn % 512) as usize,
                self.p2m[pfn as usize].base().get() | flags,
            );
        }
        // Xen's slots: present entries pointing at a frame of Xen's, which we must never follow.
        let xen_table = sim_mfn(1);
        for slot in XEN_L4_SLOTS {
            self.write_raw(
                self.p2m[l4.get() as usize],
                slot,
                xen_table.base().get() | table_flags,
            );
        }
        self.root = self.p2m[l4.get() as usize];
        // Validate the tree as Xen does when it installs the root.
        if self.promote(self.root, 4).is_err() {
            self.violations.push(Violation::InitialTreeInvalid);
        }
        self.frames[self.root.get() as usize].table_refs = 1;
    }

    /// Writes a table entry without any check (only while building the initial state).
    pub(super) fn write_raw(&mut self, table: Mfn, index: usize, value: u64) {
        if let Some(frame) = self.frames.get_mut(table.get() as usize) {
            let offset = index * 8;
            frame.data.bytes_mut()[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Reads entry `index` of machine frame `table` (0 for frames that do not exist).
    pub(super) fn read_raw(&self, table: Mfn, index: usize) -> u64 {
        let Some(frame) = self.frames.get(table.get() as usize) else {
            return 0;
        };
        let offset = index * 8;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&frame.data.bytes()[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    }

    /// The root L4 table's machine frame (what `start_info.pt_base` names).
    pub fn root(&self) -> Mfn {
        self.root
    }

    /// Page-table frames Xen built at start.
    pub fn initial_page_tables(&self) -> u64 {
        self.page_table_frames
    }

    /// First frame a frame allocator may hand out (after the kernel and Xen's tables).
    pub fn first_free_frame(&self) -> u64 {
        self.config.kernel_pages + self.page_table_frames
    }

    /// Number of our pseudo-physical frames.
    pub fn pages(&self) -> u64 {
        self.config.pages
    }

    /// Adds a domain owning `pages` fresh frames; `translated` makes it HVM-like.
    pub fn add_domain(&mut self, domain: DomId, pages: usize, translated: bool) {
        let frames = (0..pages).map(|_| self.new_frame(domain)).collect();
        self.domains.insert(
            domain,
            SimDomain {
                frames,
                translated,
                grants: Vec::new(),
            },
        );
    }

    /// A domain of the simulation.
    pub fn domain(&self, domain: DomId) -> Option<&SimDomain> {
        self.domains.get(&normalise(domain))
    }

    /// The bytes of a machine frame.
    pub fn frame_bytes(&self, frame: Mfn) -> Option<&[u8; PAGE_SIZE]> {
        self.frames
            .get(frame.get() as usize)
            .map(|frame| frame.data.bytes())
    }

    /// Writes bytes into a machine frame directly (what the granting peer does to its page).
    pub fn write_frame(&mut self, frame: Mfn, offset: usize, bytes: &[u8]) {
        if let Some(frame) = self.frames.get_mut(frame.get() as usize) {
            if let Some(target) = frame.data.bytes_mut().get_mut(offset..offset + bytes.len()) {
                target.copy_from_slice(bytes);
            }
        }
    }

    /// Makes the next `grant_map` hypercall fail as a whole with `error`.
    pub fn fail_next_grant_map(&mut self, error: XenError) {
        self.fail_next_grant_map = Some(error);
    }

    /// Makes request `index` of the next `mmu_update` fail with `error`.
    pub fn fail_next_mmu_update(&mut self, index: usize, error: XenError) {
        self.fail_next_mmu_update = Some((index, error));
    }
}

/// `DOMID_SELF` names the simulated guest.
pub(super) fn normalise(domain: DomId) -> DomId {
    if domain == DomId::SELF {
        SIM_DOMID
    } else {
        domain
    }
}
