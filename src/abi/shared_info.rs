//! Xen ABI: `struct shared_info` and `struct vcpu_info` for x86-64 (`public/xen.h`, `public/arch-x86/xen*.h`).
//!
//! The kernel maps the shared-info page and reads these fields with volatile or atomic accesses
//! at the offsets given here; the structs document the layout and are checked against Xen's
//! headers in `tests/abi_layout.rs`.

use crate::ids::EvtchnPort;

/// vcpu_info slots in shared_info (`XEN_LEGACY_MAX_VCPUS`).
pub const LEGACY_MAX_VCPUS: usize = 32;
/// Words of the 2-level pending and mask bitmaps (64 bits each on x86-64).
pub const EVTCHN_WORDS: usize = 64;

/// `struct vcpu_time_info`: Xen's system time as a seqlock-protected (version) TSC scale.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuTimeInfo {
    /// Odd while Xen updates the fields.
    pub version: u32,
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// Nanoseconds since boot at `tsc_timestamp`.
    pub system_time: u64,
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    pub flags: u8,
    pub pad1: [u8; 2],
}

/// `struct arch_vcpu_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ArchVcpuInfo {
    /// The faulting address of the last page fault Xen delivered (a PV guest cannot read CR2).
    pub cr2: u64,
    pub pad: u64,
}

/// `struct vcpu_info`: 64 bytes per vcpu.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuInfo {
    /// Written non-zero by Xen when an event is pending for this vcpu.
    pub evtchn_upcall_pending: u8,
    /// Non-zero: no upcall is delivered (a PV guest's "interrupts disabled").
    pub evtchn_upcall_mask: u8,
    /// Bit n set: word n of `evtchn_pending` may have pending ports.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// `struct shared_info` (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// Pending bit per port (2-level ABI).
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// Mask bit per port: set means no upcall for that port.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

/// Size of one vcpu_info slot.
pub const VCPU_INFO_SIZE: usize = core::mem::size_of::<VcpuInfo>();
/// Offset of `evtchn_upcall_pending` within a vcpu_info.
pub const OFFSET_UPCALL_PENDING: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_pending);
/// Offset of `evtchn_upcall_mask` within a vcpu_info.
pub const OFFSET_UPCALL_MASK: usize = core::mem::offset_of!(VcpuInfo, evtchn_upcall_mask);
/// Offset of `evtchn_pending_sel` within a vcpu_info.
pub const OFFSET_PENDING_SEL: usize = core::mem::offset_of!(VcpuInfo, evtchn_pending_sel);
/// Offset of `arch.cr2` within a vcpu_info.
pub const OFFSET_CR2: usize =
    core::mem::offset_of!(VcpuInfo, arch) + core::mem::offset_of!(ArchVcpuInfo, cr2);
/// Offset of `time` within a vcpu_info.
pub const OFFSET_TIME: usize = core::mem::offset_of!(VcpuInfo, time);
/// Offset of `evtchn_pending` in shared_info.
pub const OFFSET_EVTCHN_PENDING: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
/// Offset of `evtchn_mask` in shared_info.
pub const OFFSET_EVTCHN_MASK: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);
/// Offset of `wc_version` in shared_info.
pub const OFFSET_WC_VERSION: usize = core::mem::offset_of!(SharedInfo, wc_version);

/// The word and bit of `port` in the 2-level pending and mask bitmaps, if the port exists there.
pub const fn evtchn_word_and_bit(port: EvtchnPort) -> Option<(usize, u32)> {
    let word = (port.get() / 64) as usize;
    if word < EVTCHN_WORDS {
        Some((word, port.get() % 64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_words_and_bits() {
        assert_eq!(
            evtchn_word_and_bit(EvtchnPort::new(0).unwrap()),
            Some((0, 0))
        );
        assert_eq!(
            evtchn_word_and_bit(EvtchnPort::new(65).unwrap()),
            Some((1, 1))
        );
        assert_eq!(
            evtchn_word_and_bit(EvtchnPort::new(4095).unwrap()),
            Some((63, 63))
        );
        assert_eq!(evtchn_word_and_bit(EvtchnPort::new(4096).unwrap()), None);
    }

    #[test]
    fn vcpu_info_is_sixty_four_bytes_and_cr2_follows_the_selector() {
        assert_eq!(VCPU_INFO_SIZE, 64);
        assert_eq!(OFFSET_CR2, 16);
        assert_eq!(OFFSET_TIME, 32);
    }
}
