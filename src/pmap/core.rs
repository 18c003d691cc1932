//! The pmap's state and its read side: adopting Xen's initial tree, walking it, counters.

use super::grant_list::GrantList;
use super::layout::{bytes_per_entry, PageRange, CHOSEN_L4_SLOT, ENTRIES_PER_TABLE, XEN_L4_SLOTS};
use super::scratch::Scratch;
use super::tables::MAX_KEPT_EMPTY_TABLES;
use super::va_allocator::VaAllocator;
use super::PmapError;
use crate::abi::mmu::pte;
use crate::addr::{MachineAddr, Mfn, Pfn, VirtAddr, PAGE_SIZE};
use crate::frame_alloc::FrameAllocator;
use crate::hypervisor::Hypervisor;
use crate::ids::DomId;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;
use litemap::LiteMap;

/// What the pmap knows about one page-table page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TableInfo {
    /// 4 for the root, 1 for tables of leaf entries.
    pub level: u32,
    /// Live (present) entries: the table is unhooked and freed when this reaches zero.
    pub wire: u32,
    /// The entry that points at this table (`None` for the root).
    pub parent: Option<(Pfn, usize)>,
    /// Tables Xen built are kept for good: the frame allocator never handed them out.
    pub adopted: bool,
    /// Empty, but left hooked for the next mapping (see [`MAX_KEPT_EMPTY_TABLES`]).
    pub kept: bool,
    /// Translates part of the chosen-VA region (hangs below the root's chosen slot): set when
    /// the table is recorded, so that deciding whether an empty table is kept reads no parents.
    pub chosen: bool,
}

impl TableInfo {
    /// Empty and ours to unhook: no live entry, not kept already, not one of Xen's, not the root.
    pub fn unused(&self) -> bool {
        self.wire == 0 && !self.kept && !self.adopted && self.level < 4
    }

    /// Keeps this unused table hooked if it is of the chosen-VA region and fewer than
    /// [`MAX_KEPT_EMPTY_TABLES`] are kept (`kept_count`, counted up here); true when kept.
    pub fn keep_if_room(&mut self, kept_count: &mut usize) -> bool {
        if !self.chosen || *kept_count >= MAX_KEPT_EMPTY_TABLES {
            return false;
        }
        self.kept = true;
        *kept_count += 1;
        true
    }
}

/// The L1 table of one 2 MiB span of addresses, remembered from the last look-up that reached
/// it (see [`Pmap::l1_table`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct L1Hint {
    /// The span: an address divided by the 2 MiB an L2 entry translates.
    span: u64,
    table: Pfn,
    /// The machine address of the table's entry 0.
    base: MachineAddr,
}

/// A mapping of another domain's (or a non-RAM) machine frame made with `enter_foreign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ForeignMapping {
    pub domain: DomId,
    pub no_translate: bool,
}

/// One present leaf entry found by a range walk.
#[derive(Clone, Copy, Debug)]
pub(super) struct Leaf {
    pub address: VirtAddr,
    pub table: Pfn,
    pub index: usize,
    pub entry: u64,
}

/// Where a single-address walk ended.
pub(super) enum Walk {
    /// All levels present: the L1 entry (present or not).
    Leaf {
        table: Pfn,
        index: usize,
        entry: u64,
    },
    /// The entry of a table at `level` (2..=4) is not present.
    Missing,
}

/// Running totals the kernel publishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
    pub maps: u64,
    pub unmaps: u64,
    pub unmap_failures: u64,
    pub eagain_retries: u64,
}

/// A caller-supplied wait between `GNTST_eagain` retries; gets the attempt number (1, 2, ...).
pub type Backoff = Box<dyn FnMut(u32) + Send>;

/// grantsvc's one address space over the PV MMU. Generic over the hypervisor (real Xen or the
/// simulation) and the source of page-table frames.
pub struct Pmap<H: Hypervisor, A: FrameAllocator> {
    pub(super) hypervisor: H,
    pub(super) frames: A,
    pub(super) root: Pfn,
    pub(super) tables: LiteMap<Pfn, TableInfo>,
    pub(super) grants: GrantList,
    pub(super) foreign: LiteMap<u64, ForeignMapping>,
    pub(super) va_allocator: VaAllocator,
    pub(super) counters: Counters,
    pub(super) backoff: Option<Backoff>,
    /// Tables with `kept` set; never more than [`MAX_KEPT_EMPTY_TABLES`].
    pub(super) kept_empty_tables: usize,
    /// Buffers the map/unmap path reuses instead of allocating per call.
    pub(super) scratch: Scratch,
    /// The last L1 table looked up, so that calls in the same 2 MiB walk once; dropped on any
    /// change of the tree's tables ([`Pmap::forget_l1_hint`]).
    pub(super) l1_hint: Cell<Option<L1Hint>>,
}

impl<H: Hypervisor, A: FrameAllocator> Pmap<H, A> {
    /// Adopts the tree Xen built, rooted at machine frame `root`: records every page-table page
    /// and counts its live entries. Xen's own L4 slots are neither counted nor descended.
    pub fn adopt(hypervisor: H, frames: A, root: Mfn) -> Result<Self, PmapError> {
        let root_pfn = hypervisor.mfn_to_pfn(root).ok_or(PmapError::UnknownRoot)?;
        let mut pmap = Pmap {
            hypervisor,
            frames,
            root: root_pfn,
            tables: LiteMap::new(),
            grants: GrantList::default(),
            foreign: LiteMap::new(),
            va_allocator: VaAllocator::new(),
            counters: Counters::default(),
            backoff: None,
            kept_empty_tables: 0,
            scratch: Scratch::default(),
            l1_hint: Cell::new(None),
        };
        pmap.adopt_table(root_pfn, 4, None)?;
        Ok(pmap)
    }

    fn adopt_table(
        &mut self,
        table: Pfn,
        level: u32,
        parent: Option<(Pfn, usize)>,
    ) -> Result<(), PmapError> {
        let chosen =
            parent.is_some_and(|(parent, index)| self.hangs_in_chosen_region(parent, index));
        let mut wire = 0;
        let mut children = Vec::new();
        for index in 0..ENTRIES_PER_TABLE {
            if level == 4 && XEN_L4_SLOTS.contains(&index) {
                continue;
            }
            let entry = self.hypervisor.read_pte(table, index);
            if entry & pte::PRESENT == 0 {
                continue;
            }
            wire += 1;
            if level > 1 && entry & pte::HUGE == 0 {
                let child = self
                    .hypervisor
                    .mfn_to_pfn(entry_frame(entry))
                    .ok_or(PmapError::UnknownRoot)?;
                children.push((child, index));
            }
        }
        self.tables.insert(
            table,
            TableInfo {
                level,
                wire,
                parent,
                adopted: true,
                kept: false,
                chosen,
            },
        );
        for (child, index) in children {
            self.adopt_table(child, level - 1, Some((table, index)))?;
        }
        Ok(())
    }

    /// Sets the wait used between `GNTST_eagain` retries (the kernel sleeps; tests count).
    pub fn set_eagain_backoff(&mut self, backoff: Backoff) {
        self.backoff = Some(backoff);
    }

    /// The hypervisor (tests inspect the simulation through it). Not in production: the
    /// kernel's hypervisor is a capability over the whole address space (it writes page
    /// tables and touches any address), so it never leaves the pmap.
    #[cfg(any(test, feature = "sim"))]
    pub fn hypervisor(&self) -> &H {
        &self.hypervisor
    }

    /// Mutable access to the hypervisor (for tests driving the simulation; not in production,
    /// as [`Pmap::hypervisor`]).
    #[cfg(any(test, feature = "sim"))]
    pub fn hypervisor_mut(&mut self) -> &mut H {
        &mut self.hypervisor
    }

    /// The frame allocator.
    pub fn frames(&self) -> &A {
        &self.frames
    }

    /// The root (L4) table's pseudo-physical frame.
    pub fn root(&self) -> Pfn {
        self.root
    }

    /// Every page-table page with its level and wire count (live entries), for the tests'
    /// recount against the simulated tables.
    #[cfg(test)]
    pub fn wire_counts(&self) -> impl Iterator<Item = (Pfn, u32, u32)> + '_ {
        self.tables
            .iter()
            .map(|(frame, info)| (*frame, info.level, info.wire))
    }

    /// The tables kept hooked while empty, for the tests' checks of the kept-table books.
    #[cfg(test)]
    pub fn kept_table_frames(&self) -> impl Iterator<Item = (Pfn, u32)> + '_ {
        self.tables
            .iter()
            .filter(|(_, info)| info.kept)
            .map(|(frame, info)| (*frame, info.wire))
    }

    /// True when `frame` is one of our page-table pages.
    pub fn is_page_table(&self, frame: Pfn) -> bool {
        self.tables.contains_key(&frame)
    }

    /// The grant list.
    pub fn grant_list(&self) -> &GrantList {
        &self.grants
    }

    /// A free range of `pages` pages in the chosen-VA region.
    pub fn allocate_va(&mut self, pages: u64) -> Option<PageRange> {
        self.va_allocator.allocate(pages)
    }

    /// Gives a range from [`Pmap::allocate_va`] back (unmap it first).
    pub fn free_va(&mut self, range: PageRange) -> Result<(), super::NotAllocated> {
        self.va_allocator.free(range)
    }

    /// The table the present, non-huge `entry` points at, if it is one of ours.
    pub(super) fn table_of(&self, entry: u64) -> Option<Pfn> {
        let frame = self.hypervisor.mfn_to_pfn(entry_frame(entry))?;
        self.tables.contains_key(&frame).then_some(frame)
    }

    /// The machine address of entry `index` of `table`.
    pub(super) fn entry_address(&self, table: Pfn, index: usize) -> Result<MachineAddr, PmapError> {
        let frame = self
            .hypervisor
            .pfn_to_mfn(table)
            .ok_or(PmapError::NoMachineFrame(table))?;
        frame
            .base()
            .checked_add(index as u64 * 8)
            .ok_or(PmapError::BadRange)
    }

    /// True when a table hooked at entry `index` of `parent` translates part of the chosen-VA
    /// region: it hangs in the root's chosen slot, or below a table that does.
    pub(super) fn hangs_in_chosen_region(&self, parent: Pfn, index: usize) -> bool {
        if parent == self.root {
            index == CHOSEN_L4_SLOT
        } else {
            self.tables.get(&parent).is_some_and(|info| info.chosen)
        }
    }

    /// The L1 table translating `address` and the machine address of its entry 0; `None` when
    /// a table above it is missing. The answer is remembered: the calls of a driver mapping
    /// and unmapping in one ring's or request's region, which fall in the same 2 MiB, walk the
    /// tree once instead of once per call (under emulation each level's read of the entry, the
    /// M2P and the table list costs about what a grant hypercall's own work does).
    // Inlined: the steady map+unmap path calls it, and under emulation each call and return
    // is a jump QEMU looks up again after Xen's TLB flush (README, issue 10).
    #[inline(always)]
    pub(super) fn l1_table(
        &self,
        address: VirtAddr,
    ) -> Result<Option<(Pfn, MachineAddr)>, PmapError> {
        let span = address.as_u64() / bytes_per_entry(2);
        if let Some(hint) = self.l1_hint.get().filter(|hint| hint.span == span) {
            return Ok(Some((hint.table, hint.base)));
        }
        match self.walk(address)? {
            Walk::Leaf { table, .. } => Ok(Some((table, self.remember_l1(address, table)?))),
            Walk::Missing => Ok(None),
        }
    }

    /// Remembers `table` as the L1 table of `address`'s 2 MiB; returns its entry 0's machine
    /// address.
    fn remember_l1(&self, address: VirtAddr, table: Pfn) -> Result<MachineAddr, PmapError> {
        let base = self.entry_address(table, 0)?;
        self.l1_hint.set(Some(L1Hint {
            span: address.as_u64() / bytes_per_entry(2),
            table,
            base,
        }));
        Ok(base)
    }

    /// Drops the remembered L1 table. Called on every change of the tree's tables (a table
    /// hooked or unhooked): an L1 table stops translating its span only when it or a table
    /// above it is unhooked, and a hook fills only a missing slot, but dropping the hint on
    /// both keeps the rule simple.
    pub(super) fn forget_l1_hint(&self) {
        self.l1_hint.set(None);
    }

    /// The machine address of entry 0 of `table`, from the remembered L1 table when it is
    /// that one.
    pub(super) fn table_base(&self, table: Pfn) -> Result<MachineAddr, PmapError> {
        match self.l1_hint.get() {
            Some(hint) if hint.table == table => Ok(hint.base),
            _ => self.entry_address(table, 0),
        }
    }

    /// Walks the tree for one address.
    pub(super) fn walk(&self, address: VirtAddr) -> Result<Walk, PmapError> {
        let mut table = self.root;
        let mut level = 4;
        loop {
            let index = address.table_index(level);
            let entry = self.hypervisor.read_pte(table, index);
            if level == 1 {
                return Ok(Walk::Leaf {
                    table,
                    index,
                    entry,
                });
            }
            if entry & pte::PRESENT == 0 {
                return Ok(Walk::Missing);
            }
            if entry & pte::HUGE != 0 {
                return Err(PmapError::HugePageInTheWay(address));
            }
            table = self
                .table_of(entry)
                .ok_or(PmapError::UnknownTable(address))?;
            level -= 1;
        }
    }

    /// Every present leaf entry of `range`, in address order, reading each table entry once
    /// and skipping absent subtrees whole.
    pub(super) fn present_leaves(&self, range: &PageRange) -> Result<Vec<Leaf>, PmapError> {
        let mut leaves = Vec::new();
        self.visit_present_leaves(range, |leaf| {
            leaves.push(leaf);
            true
        })?;
        Ok(leaves)
    }

    /// Calls `visit` on each present leaf entry of `range` in address order until it returns
    /// false; each table entry is read once and absent subtrees are skipped whole.
    pub(super) fn visit_present_leaves(
        &self,
        range: &PageRange,
        mut visit: impl FnMut(Leaf) -> bool,
    ) -> Result<(), PmapError> {
        let mut cursor = range.start().as_u64();
        let end = range.end_raw();
        while cursor < end {
            let address = VirtAddr::try_new(cursor).ok_or(PmapError::BadRange)?;
            let span = cursor / bytes_per_entry(2);
            let (mut table, mut level) = match self.l1_hint.get() {
                Some(hint) if hint.span == span => (hint.table, 1),
                _ => (self.root, 4),
            };
            let step = loop {
                let index = address.table_index(level);
                if level == 1 {
                    // The rest of this L1 table's entries in the range, without walking down
                    // again for each page (a walk per page costs as much as the grant
                    // hypercall's own work under emulation).
                    let pages_left = (end - cursor) / PAGE_SIZE as u64;
                    let last = ENTRIES_PER_TABLE.min(index.saturating_add(pages_left as usize));
                    for entry_index in index..last {
                        let entry = self.hypervisor.read_pte(table, entry_index);
                        if entry & pte::PRESENT == 0 {
                            continue;
                        }
                        let offset = ((entry_index - index) * PAGE_SIZE) as u64;
                        let leaf_address =
                            VirtAddr::try_new(cursor + offset).ok_or(PmapError::BadRange)?;
                        if !visit(Leaf {
                            address: leaf_address,
                            table,
                            index: entry_index,
                            entry,
                        }) {
                            return Ok(());
                        }
                    }
                    break ((last - index) * PAGE_SIZE) as u64;
                }
                let entry = self.hypervisor.read_pte(table, index);
                let span = bytes_per_entry(level);
                if entry & pte::PRESENT == 0 {
                    break span - (cursor % span);
                }
                if entry & pte::HUGE != 0 {
                    return Err(PmapError::HugePageInTheWay(address));
                }
                table = self
                    .table_of(entry)
                    .ok_or(PmapError::UnknownTable(address))?;
                level -= 1;
                if level == 1 {
                    self.remember_l1(address, table)?;
                }
            };
            match cursor.checked_add(step) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        Ok(())
    }

    /// Empty tables kept hooked now (each one a frame; at most [`MAX_KEPT_EMPTY_TABLES`]).
    pub fn kept_empty_tables(&self) -> usize {
        debug_assert!(self.kept_empty_tables <= MAX_KEPT_EMPTY_TABLES);
        self.kept_empty_tables
    }
}

/// The machine frame an entry points at.
pub(super) const fn entry_frame(entry: u64) -> Mfn {
    Mfn::of_page_table_entry(entry)
}
