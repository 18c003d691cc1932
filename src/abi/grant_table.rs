//! Xen ABI for grant tables: the map/unmap/setup operations, `GNTMAP_*` flags and `GNTST_*` statuses.

use core::fmt;

/// `GNTTABOP_*` sub-operations of the grant-table hypercall.
pub mod op {
    pub const MAP_GRANT_REF: u32 = 0;
    pub const UNMAP_GRANT_REF: u32 = 1;
    pub const SETUP_TABLE: u32 = 2;
    pub const QUERY_SIZE: u32 = 6;
    pub const SET_VERSION: u32 = 8;
    pub const GET_VERSION: u32 = 10;
}

/// `GNTMAP_*` flags of a map request.
pub mod gntmap {
    pub const DEVICE_MAP: u32 = 1 << 0;
    pub const HOST_MAP: u32 = 1 << 1;
    pub const READONLY: u32 = 1 << 2;
    pub const APPLICATION_MAP: u32 = 1 << 3;
    pub const CONTAINS_PTE: u32 = 1 << 4;
}

/// `struct gnttab_map_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GnttabMapGrantRef {
    /// With `GNTMAP_contains_pte`: the machine address of the L1 entry to fill.
    pub host_addr: u64,
    pub flags: u32,
    pub ref_: u32,
    pub dom: u16,
    /// Out: a `GNTST_*` status.
    pub status: i16,
    /// Out: the handle naming the mapping.
    pub handle: u32,
    /// Out: the bus address when `GNTMAP_device_map` was asked.
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GnttabUnmapGrantRef {
    /// With `GNTMAP_contains_pte` mappings: the machine address of the L1 entry.
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: u32,
    /// Out: a `GNTST_*` status.
    pub status: i16,
}

/// `struct gnttab_setup_table`: asks Xen for the frames of our own grant table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GnttabSetupTable {
    pub dom: u16,
    pub nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Guest handle (pointer) to an array of `nr_frames` frame numbers.
    pub frame_list: u64,
}

/// `struct gnttab_query_size`: how many grant-table frames a domain has and may have.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GnttabQuerySize {
    pub dom: u16,
    /// Out: frames in use.
    pub nr_frames: u32,
    /// Out: the most frames the domain may set up.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `struct grant_entry_v1`: one entry of a granting domain's table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: u16,
    pub frame: u32,
}

/// `GTF_*` flags of a v1 grant entry.
pub mod gtf {
    pub const INVALID: u16 = 0;
    pub const PERMIT_ACCESS: u16 = 1;
    pub const ACCEPT_TRANSFER: u16 = 2;
    pub const TYPE_MASK: u16 = 3;
    pub const READONLY: u16 = 1 << 2;
    pub const READING: u16 = 1 << 3;
    pub const WRITING: u16 = 1 << 4;
}

/// A grant operation's per-op status (`GNTST_*`), typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantStatus {
    Okay,
    GeneralError,
    BadDomain,
    BadGntref,
    BadHandle,
    BadVirtAddr,
    BadDevAddr,
    NoDeviceSpace,
    PermissionDenied,
    BadPage,
    BadCopyArg,
    AddressTooBig,
    Eagain,
    NoSpace,
    /// A value this ABI version does not define.
    Unknown(i16),
}

impl GrantStatus {
    /// The typed form of a raw `GNTST_*` value.
    pub const fn from_raw(raw: i16) -> GrantStatus {
        match raw {
            0 => GrantStatus::Okay,
            -1 => GrantStatus::GeneralError,
            -2 => GrantStatus::BadDomain,
            -3 => GrantStatus::BadGntref,
            -4 => GrantStatus::BadHandle,
            -5 => GrantStatus::BadVirtAddr,
            -6 => GrantStatus::BadDevAddr,
            -7 => GrantStatus::NoDeviceSpace,
            -8 => GrantStatus::PermissionDenied,
            -9 => GrantStatus::BadPage,
            -10 => GrantStatus::BadCopyArg,
            -11 => GrantStatus::AddressTooBig,
            -12 => GrantStatus::Eagain,
            -13 => GrantStatus::NoSpace,
            other => GrantStatus::Unknown(other),
        }
    }

    /// The raw `GNTST_*` value.
    pub const fn to_raw(self) -> i16 {
        match self {
            GrantStatus::Okay => 0,
            GrantStatus::GeneralError => -1,
            GrantStatus::BadDomain => -2,
            GrantStatus::BadGntref => -3,
            GrantStatus::BadHandle => -4,
            GrantStatus::BadVirtAddr => -5,
            GrantStatus::BadDevAddr => -6,
            GrantStatus::NoDeviceSpace => -7,
            GrantStatus::PermissionDenied => -8,
            GrantStatus::BadPage => -9,
            GrantStatus::BadCopyArg => -10,
            GrantStatus::AddressTooBig => -11,
            GrantStatus::Eagain => -12,
            GrantStatus::NoSpace => -13,
            GrantStatus::Unknown(raw) => raw,
        }
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            GrantStatus::Okay => "GNTST_okay",
            GrantStatus::GeneralError => "GNTST_general_error",
            GrantStatus::BadDomain => "GNTST_bad_domain",
            GrantStatus::BadGntref => "GNTST_bad_gntref",
            GrantStatus::BadHandle => "GNTST_bad_handle",
            GrantStatus::BadVirtAddr => "GNTST_bad_virt_addr",
            GrantStatus::BadDevAddr => "GNTST_bad_dev_addr",
            GrantStatus::NoDeviceSpace => "GNTST_no_device_space",
            GrantStatus::PermissionDenied => "GNTST_permission_denied",
            GrantStatus::BadPage => "GNTST_bad_page",
            GrantStatus::BadCopyArg => "GNTST_bad_copy_arg",
            GrantStatus::AddressTooBig => "GNTST_address_too_big",
            GrantStatus::Eagain => "GNTST_eagain",
            GrantStatus::NoSpace => "GNTST_no_space",
            GrantStatus::Unknown(raw) => return write!(formatter, "GNTST_unknown({raw})"),
        };
        formatter.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips() {
        for raw in -14..=1i16 {
            assert_eq!(GrantStatus::from_raw(raw).to_raw(), raw);
        }
        assert_eq!(GrantStatus::from_raw(-12), GrantStatus::Eagain);
    }
}
