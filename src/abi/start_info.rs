//! Xen ABI: `struct start_info`, the page Xen hands a PV guest at boot (pointer in `rsi`).

/// Length of the command-line field (`MAX_GUEST_CMDLINE`).
pub const MAX_GUEST_CMDLINE: usize = 1024;

/// Length of the magic field.
pub const MAGIC_LENGTH: usize = 32;

/// The magic prefix of a 64-bit PV guest's start_info (`"xen-<version>-<platform>"`).
pub const MAGIC_PREFIX: &[u8] = b"xen-3.0-x86_64";

/// `SIF_*` flags.
pub mod sif {
    pub const PRIVILEGED: u32 = 1 << 0;
    pub const INITDOMAIN: u32 = 1 << 1;
    pub const MULTIBOOT_MOD: u32 = 1 << 2;
    pub const MOD_START_PFN: u32 = 1 << 3;
    pub const VIRT_P2M_4TOOLS: u32 = 1 << 4;
}

/// The `console.domU` member of start_info's console union (a domU's view; dom0 sees
/// `info_off`/`info_size` in the same 16 bytes, and grantsvc is never dom0).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfoConsole {
    /// MACHINE frame of the console ring page.
    pub mfn: u64,
    /// Event channel of the console.
    pub evtchn: u32,
}

/// `struct start_info` for x86-64.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// `"xen-<version>-<platform>"`, NUL-padded.
    pub magic: [u8; MAGIC_LENGTH],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// MACHINE address of the shared info page.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// MACHINE frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    pub console: StartInfoConsole,
    /// VIRTUAL address of the bootstrap L4 page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// VIRTUAL address of the p2m: `nr_pages` machine frame numbers indexed by pfn.
    pub mfn_list: u64,
    /// VIRTUAL address (or pfn with `SIF_MOD_START_PFN`) of a pre-loaded module.
    pub mod_start: u64,
    /// Size in bytes of the pre-loaded module.
    pub mod_len: u64,
    /// The command line (`extra=` of the domain config), NUL-terminated.
    pub cmd_line: [u8; MAX_GUEST_CMDLINE],
    /// First pfn of the initial p2m table (when Xen placed it separately).
    pub first_p2m_pfn: u64,
    /// Number of pfns of the initial p2m table.
    pub nr_p2m_frames: u64,
}
