//! start_info: validating what Xen hands the kernel at boot and summarising it on one line.
//!
//! The kernel copies Xen's `start_info` page once and turns it into a [`BootInfo`]: typed frame
//! numbers and ports, addresses checked against the domain's size, the command line as text,
//! and where Xen's bootstrap area (page tables, p2m, boot stack) ends so that the frame
//! allocator never hands those frames out.

use crate::abi::start_info::{sif, StartInfo, MAGIC_PREFIX, MAX_GUEST_CMDLINE};
use crate::addr::{MachineAddr, Mfn, Pfn, VirtAddr, PAGE_SIZE};
use crate::ids::EvtchnPort;
use core::fmt;

/// Where the kernel is linked (`XEN_ELFNOTE_VIRT_BASE`, physical offset 0): Xen's initial
/// mapping puts pseudo-physical frame N at `KERNEL_VIRT_BASE + N * 4096`.
pub const KERNEL_VIRT_BASE: u64 = 0xffff_ffff_8000_0000;

/// Most pages the direct map can hold: it is the top 2 GiB of the address space.
pub const MAX_DIRECT_MAP_PAGES: u64 = (u64::MAX - KERNEL_VIRT_BASE + 1) / PAGE_SIZE as u64;

/// What start_info says, checked.
///
/// Fields are private and the type is not `Clone`: the kernel's hypervisor-interface layer
/// parses Xen's real start_info once at entry and keeps the one value (see
/// `kernel::xen::start_of_day`); whatever needs the boot facts borrows that value, and the
/// layer never takes a `BootInfo` from a caller to build a mapping or a slice from, so a value
/// made elsewhere with [`BootInfo::from_start_info`] (a host test's) cannot reach memory.
#[derive(Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Pages Xen gave this domain: its pseudo-physical frames are `0..nr_pages`.
    nr_pages: u64,
    /// Machine address of the shared-info page.
    shared_info: MachineAddr,
    /// `SIF_*` flags.
    flags: u32,
    /// The xenstore ring page and its event channel.
    store_mfn: Mfn,
    store_port: EvtchnPort,
    /// The console ring page and its event channel.
    console_mfn: Mfn,
    console_port: EvtchnPort,
    /// The bootstrap L4 page table and how many page-table frames Xen built.
    page_table_base: VirtAddr,
    page_table_frames: u64,
    /// The p2m: `nr_pages` machine frame numbers indexed by pfn.
    mfn_list: VirtAddr,
    /// First pfn after Xen's bootstrap area: the kernel image, start_info, the p2m, the store
    /// and console pages, the page tables and the boot stack all lie below it.
    first_free_pfn: Pfn,
    /// `nr_pages - 1` and `nr_pages` as frame numbers.
    last_pfn: Pfn,
    end_pfn: Pfn,
    command_line: [u8; MAX_GUEST_CMDLINE],
    command_line_length: usize,
}

/// Why start_info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The magic is not `xen-3.0-x86_64`: not a 64-bit PV start_info.
    BadMagic([u8; 32]),
    /// We are the initial domain: its console fields mean something else and grantsvc is a domU.
    InitialDomain,
    /// No pages, or more than the 2 GiB direct map holds.
    BadPageCount(u64),
    /// A VIRTUAL address Xen gave (named) is misaligned or outside the domain's direct map.
    BadAddress(&'static str, u64),
    /// A frame number, machine address or port Xen gave (named) is out of the range of its kind.
    OutOfRange(&'static str, u64),
    /// The bootstrap area ends at or past the last page: nothing left to allocate.
    NoFreeFrames { first_free: u64, nr_pages: u64 },
    /// The command line is not valid UTF-8.
    CommandLineNotUtf8,
}

impl fmt::Display for BootInfoError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootInfoError::BadMagic(magic) => {
                let length = magic.iter().position(|&byte| byte == 0).unwrap_or(magic.len());
                write!(
                    formatter,
                    "start_info magic \"{}\" is not xen-3.0-x86_64",
                    magic.get(..length).unwrap_or(&[]).escape_ascii()
                )
            }
            BootInfoError::InitialDomain => {
                write!(formatter, "started as the initial domain; grantsvc runs as a domU")
            }
            BootInfoError::BadPageCount(pages) => write!(
                formatter,
                "{pages} pages: grantsvc needs between 1 and {MAX_DIRECT_MAP_PAGES} (a 2 GiB direct map)"
            ),
            BootInfoError::BadAddress(what, address) => {
                write!(formatter, "start_info {what} {address:#x} is not inside the domain")
            }
            BootInfoError::OutOfRange(what, value) => {
                write!(formatter, "start_info {what} {value:#x} is out of range")
            }
            BootInfoError::NoFreeFrames {
                first_free,
                nr_pages,
            } => write!(
                formatter,
                "Xen's bootstrap area ends at pfn {first_free:#x} of {nr_pages:#x}: no free memory"
            ),
            BootInfoError::CommandLineNotUtf8 => write!(formatter, "command line is not UTF-8"),
        }
    }
}

impl BootInfo {
    /// Checks a copy of start_info. `start_info_address` is where Xen put the page (the
    /// value of `rsi` at entry): it is part of the bootstrap area too.
    pub fn from_start_info(
        raw: &StartInfo,
        start_info_address: u64,
    ) -> Result<BootInfo, BootInfoError> {
        if !raw.magic.starts_with(MAGIC_PREFIX) {
            return Err(BootInfoError::BadMagic(raw.magic));
        }
        if raw.flags & sif::INITDOMAIN != 0 {
            return Err(BootInfoError::InitialDomain);
        }
        let nr_pages = raw.nr_pages;
        if nr_pages == 0 || nr_pages > MAX_DIRECT_MAP_PAGES {
            return Err(BootInfoError::BadPageCount(nr_pages));
        }
        let domain = DirectMapExtent { nr_pages };

        let start_info_end = domain.end_pfn_of("start_info", start_info_address, 1, 8)?;
        let page_table_end = domain.end_pfn_of(
            "pt_base",
            raw.pt_base,
            raw.nr_pt_frames.saturating_mul(PAGE_SIZE as u64),
            PAGE_SIZE as u64,
        )?;
        if raw.nr_pt_frames == 0 {
            return Err(BootInfoError::BadAddress("nr_pt_frames", 0));
        }
        let mfn_list_end =
            domain.end_pfn_of("mfn_list", raw.mfn_list, nr_pages.saturating_mul(8), 8)?;
        // Xen's boot stack is the page after the page tables; we left it at entry but it
        // stays reserved, as the layout in public/xen.h promises nothing about it.
        let boot_stack_end = page_table_end + 1;
        let first_free = start_info_end
            .max(page_table_end)
            .max(mfn_list_end)
            .max(boot_stack_end);
        if first_free >= nr_pages {
            return Err(BootInfoError::NoFreeFrames {
                first_free,
                nr_pages,
            });
        }

        let command_line_length = raw
            .cmd_line
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(MAX_GUEST_CMDLINE);
        let command_line_bytes = raw.cmd_line.get(..command_line_length).unwrap_or(&[]);
        if core::str::from_utf8(command_line_bytes).is_err() {
            return Err(BootInfoError::CommandLineNotUtf8);
        }

        let page_table_base = VirtAddr::try_new(raw.pt_base)
            .ok_or(BootInfoError::BadAddress("pt_base", raw.pt_base))?;
        let mfn_list = VirtAddr::try_new(raw.mfn_list)
            .ok_or(BootInfoError::BadAddress("mfn_list", raw.mfn_list))?;

        let out_of_range = |what, value| BootInfoError::OutOfRange(what, value);
        Ok(BootInfo {
            nr_pages,
            shared_info: MachineAddr::new(raw.shared_info)
                .ok_or(out_of_range("shared_info", raw.shared_info))?,
            flags: raw.flags,
            store_mfn: Mfn::new(raw.store_mfn).ok_or(out_of_range("store_mfn", raw.store_mfn))?,
            store_port: EvtchnPort::new(raw.store_evtchn)
                .ok_or(out_of_range("store_evtchn", raw.store_evtchn.into()))?,
            console_mfn: Mfn::new(raw.console.mfn)
                .ok_or(out_of_range("console.mfn", raw.console.mfn))?,
            console_port: EvtchnPort::new(raw.console.evtchn)
                .ok_or(out_of_range("console.evtchn", raw.console.evtchn.into()))?,
            page_table_base,
            page_table_frames: raw.nr_pt_frames,
            mfn_list,
            first_free_pfn: Pfn::new(first_free)
                .ok_or(out_of_range("first free pfn", first_free))?,
            last_pfn: Pfn::new(nr_pages - 1).ok_or(out_of_range("nr_pages", nr_pages))?,
            end_pfn: Pfn::new(nr_pages).ok_or(out_of_range("nr_pages", nr_pages))?,
            command_line: raw.cmd_line,
            command_line_length,
        })
    }

    /// The command line (checked to be UTF-8 when the BootInfo was made).
    pub fn command_line(&self) -> &str {
        self.command_line
            .get(..self.command_line_length)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }

    /// Pages Xen gave this domain: its pseudo-physical frames are `0..nr_pages`.
    pub fn nr_pages(&self) -> u64 {
        self.nr_pages
    }

    /// Machine address of the shared-info page.
    pub fn shared_info(&self) -> MachineAddr {
        self.shared_info
    }

    /// `SIF_*` flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The xenstore ring page.
    pub fn store_mfn(&self) -> Mfn {
        self.store_mfn
    }

    /// The xenstore ring's event channel.
    pub fn store_port(&self) -> EvtchnPort {
        self.store_port
    }

    /// The console ring page.
    pub fn console_mfn(&self) -> Mfn {
        self.console_mfn
    }

    /// The console ring's event channel.
    pub fn console_port(&self) -> EvtchnPort {
        self.console_port
    }

    /// The bootstrap L4 page table.
    pub fn page_table_base(&self) -> VirtAddr {
        self.page_table_base
    }

    /// How many page-table frames Xen built.
    pub fn page_table_frames(&self) -> u64 {
        self.page_table_frames
    }

    /// The p2m Xen left: `nr_pages` machine frame numbers indexed by pfn, checked to lie
    /// 8-aligned inside the bootstrap area.
    pub fn mfn_list(&self) -> VirtAddr {
        self.mfn_list
    }

    /// First pfn after Xen's bootstrap area (image, start_info, p2m, rings, page tables, boot
    /// stack): the frame allocator manages `first_free_pfn .. nr_pages` only.
    pub fn first_free_pfn(&self) -> Pfn {
        self.first_free_pfn
    }

    /// The last pseudo-physical frame of the domain.
    pub fn last_pfn(&self) -> Pfn {
        self.last_pfn
    }

    /// The frame after the last one of the domain: `0..end_pfn` are its pseudo-physical frames.
    pub fn end_pfn(&self) -> Pfn {
        self.end_pfn
    }

    /// The pfn a direct-map address lies in, if it is one of this domain's frames.
    pub fn pfn_of(&self, address: VirtAddr) -> Option<Pfn> {
        let offset = address.as_u64().checked_sub(KERNEL_VIRT_BASE)?;
        let pfn = offset / PAGE_SIZE as u64;
        Pfn::new(pfn).filter(|_| pfn < self.nr_pages)
    }

    /// A one-line summary for the boot log.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// The direct map of a domain of `nr_pages` pages, for checking Xen's virtual addresses.
struct DirectMapExtent {
    nr_pages: u64,
}

impl DirectMapExtent {
    /// The pfn one past the object of `length` bytes at `address`, if the object is aligned
    /// to `alignment` and lies inside the domain's direct map.
    fn end_pfn_of(
        &self,
        what: &'static str,
        address: u64,
        length: u64,
        alignment: u64,
    ) -> Result<u64, BootInfoError> {
        let refuse = BootInfoError::BadAddress(what, address);
        if address % alignment != 0 {
            return Err(refuse);
        }
        let offset = address.checked_sub(KERNEL_VIRT_BASE).ok_or(refuse)?;
        let end = offset.checked_add(length.max(1)).ok_or(refuse)?;
        let end_pfn = end.div_ceil(PAGE_SIZE as u64);
        if end_pfn > self.nr_pages {
            return Err(refuse);
        }
        Ok(end_pfn)
    }
}

/// The Display form of a [`BootInfo`]: one line naming every field a reader needs.
pub struct Summary<'a>(&'a BootInfo);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.0;
        write!(
            formatter,
            "start_info: {} pages ({} MiB), first free pfn {}, shared_info ma {}, store mfn {} port {}, \
             console mfn {} port {}, pt_base {} ({} frames), mfn_list {}, flags {:#x}, cmdline \"{}\"",
            info.nr_pages(),
            info.nr_pages() * PAGE_SIZE as u64 / (1024 * 1024),
            info.first_free_pfn(),
            info.shared_info(),
            info.store_mfn(),
            info.store_port(),
            info.console_mfn(),
            info.console_port(),
            info.page_table_base(),
            info.page_table_frames(),
            info.mfn_list(),
            info.flags(),
            // Bytes escaped rather than `str::escape_debug`: the same for ASCII, and
            // EscapeDebug's formatting (2.9 KB of the image) served nothing else (issue 10).
            info.command_line().as_bytes().escape_ascii(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::start_info::StartInfoConsole;

    const PAGE: u64 = PAGE_SIZE as u64;

    /// A start_info shaped like the one Xen 4.17's domain builder makes for a 64 MiB domU
    /// with a 3 MiB kernel.
    fn typical() -> StartInfo {
        let mut magic = [0u8; 32];
        magic[..15].copy_from_slice(b"xen-3.0-x86_64\0");
        let mut cmd_line = [0u8; MAX_GUEST_CMDLINE];
        cmd_line[..17].copy_from_slice(b"selftest loglevel");
        StartInfo {
            magic,
            nr_pages: 16384,
            shared_info: 0x1234_5000,
            flags: 0,
            store_mfn: 0x42_0001,
            store_evtchn: 1,
            console: StartInfoConsole {
                mfn: 0x42_0002,
                evtchn: 2,
            },
            pt_base: KERNEL_VIRT_BASE + 0x324 * PAGE,
            nr_pt_frames: 6,
            mfn_list: KERNEL_VIRT_BASE + 0x300 * PAGE,
            mod_start: 0,
            mod_len: 0,
            cmd_line,
            first_p2m_pfn: 0,
            nr_p2m_frames: 0,
        }
    }

    fn start_info_address() -> u64 {
        KERNEL_VIRT_BASE + 0x320 * PAGE
    }

    #[test]
    fn a_typical_start_info_is_accepted_and_typed() {
        let info = BootInfo::from_start_info(&typical(), start_info_address()).unwrap();
        assert_eq!(info.nr_pages(), 16384);
        assert_eq!(info.store_mfn(), Mfn::new(0x42_0001).unwrap());
        assert_eq!(info.store_port(), EvtchnPort::new(1).unwrap());
        assert_eq!(info.console_mfn(), Mfn::new(0x42_0002).unwrap());
        assert_eq!(info.console_port(), EvtchnPort::new(2).unwrap());
        assert_eq!(info.command_line(), "selftest loglevel");
        // Page tables end at 0x324 + 6 = 0x32a; the boot stack page follows.
        assert_eq!(info.first_free_pfn(), Pfn::new(0x32b).unwrap());
    }

    #[test]
    fn a_bad_magic_is_refused() {
        let mut raw = typical();
        raw.magic[..14].copy_from_slice(b"xen-3.0-x86_32");
        let error = BootInfo::from_start_info(&raw, start_info_address()).unwrap_err();
        assert!(matches!(error, BootInfoError::BadMagic(_)));
        assert!(error.to_string().contains("xen-3.0-x86_32"));
    }

    #[test]
    fn an_empty_magic_is_refused() {
        let mut raw = typical();
        raw.magic = [0; 32];
        assert!(matches!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadMagic(_))
        ));
    }

    #[test]
    fn the_initial_domain_is_refused() {
        let mut raw = typical();
        raw.flags = sif::INITDOMAIN | sif::PRIVILEGED;
        assert_eq!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::InitialDomain)
        );
    }

    #[test]
    fn page_counts_beyond_the_direct_map_are_refused() {
        let mut raw = typical();
        raw.nr_pages = 0;
        assert_eq!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadPageCount(0))
        );
        raw.nr_pages = MAX_DIRECT_MAP_PAGES + 1;
        assert!(matches!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadPageCount(_))
        ));
    }

    #[test]
    fn addresses_outside_the_domain_are_refused() {
        let mut raw = typical();
        raw.pt_base = 0x1000;
        assert_eq!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadAddress("pt_base", 0x1000))
        );

        let mut raw = typical();
        raw.pt_base += 8;
        assert!(matches!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadAddress("pt_base", _))
        ));

        let mut raw = typical();
        raw.mfn_list = KERNEL_VIRT_BASE + 16383 * PAGE;
        assert!(matches!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::BadAddress("mfn_list", _))
        ));

        assert!(matches!(
            BootInfo::from_start_info(&typical(), KERNEL_VIRT_BASE + 16384 * PAGE),
            Err(BootInfoError::BadAddress("start_info", _))
        ));
    }

    #[test]
    fn a_bootstrap_area_filling_the_domain_is_refused() {
        let mut raw = typical();
        raw.nr_pages = 0x330;
        raw.nr_pt_frames = 0x330 - 0x324;
        assert!(matches!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::NoFreeFrames { .. })
        ));
    }

    #[test]
    fn a_p2m_after_the_page_tables_moves_the_first_free_frame() {
        let mut raw = typical();
        raw.mfn_list = KERNEL_VIRT_BASE + 0x400 * PAGE;
        let info = BootInfo::from_start_info(&raw, start_info_address()).unwrap();
        // 16384 entries of 8 bytes are 32 pages.
        assert_eq!(info.first_free_pfn(), Pfn::new(0x420).unwrap());
    }

    #[test]
    fn a_command_line_filling_the_field_is_taken_whole_and_bad_utf8_refused() {
        let mut raw = typical();
        raw.cmd_line = [b'x'; MAX_GUEST_CMDLINE];
        let info = BootInfo::from_start_info(&raw, start_info_address()).unwrap();
        assert_eq!(info.command_line().len(), MAX_GUEST_CMDLINE);

        raw.cmd_line[0] = 0xff;
        assert_eq!(
            BootInfo::from_start_info(&raw, start_info_address()),
            Err(BootInfoError::CommandLineNotUtf8)
        );
    }

    #[test]
    fn the_summary_names_pages_ports_and_command_line() {
        let info = BootInfo::from_start_info(&typical(), start_info_address()).unwrap();
        let line = info.summary().to_string();
        assert!(
            line.starts_with("start_info: 16384 pages (64 MiB)"),
            "{line}"
        );
        assert!(line.contains("store mfn 0x420001 port 1"), "{line}");
        assert!(line.contains("console mfn 0x420002 port 2"), "{line}");
        assert!(line.contains("cmdline \"selftest loglevel\""), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_summary_escapes_quotes_control_characters_and_non_ascii_of_the_command_line() {
        let mut raw = typical();
        let command_line = "a=\"b\"\n\u{e9}\\".as_bytes();
        raw.cmd_line = [0; MAX_GUEST_CMDLINE];
        raw.cmd_line[..command_line.len()].copy_from_slice(command_line);
        let info = BootInfo::from_start_info(&raw, start_info_address()).unwrap();
        let line = info.summary().to_string();
        assert!(line.ends_with(r#"cmdline "a=\"b\"\n\xc3\xa9\\""#), "{line}");
    }

    #[test]
    fn direct_map_addresses_convert_to_pfns_inside_the_domain_only() {
        let info = BootInfo::from_start_info(&typical(), start_info_address()).unwrap();
        let inside = VirtAddr::try_new(KERNEL_VIRT_BASE + 5 * PAGE + 12).unwrap();
        assert_eq!(info.pfn_of(inside), Some(Pfn::new(5).unwrap()));
        let beyond = VirtAddr::try_new(KERNEL_VIRT_BASE + 16384 * PAGE).unwrap();
        assert_eq!(info.pfn_of(beyond), None);
        assert_eq!(info.pfn_of(VirtAddr::try_new(0x1000).unwrap()), None);
    }
}
