//! The backend directory as data: what the toolstack wrote there (decoded), and what grantsvc writes before InitWait and at connect.
//!
//! The toolstack's nodes (`tools/libs/light/libxl_disk.c` `device_disk_add`): `params` (the
//! `target`, verbatim), `mode` (`w` or `r`), `device-type` (`disk` or `cdrom`),
//! `discard-enable` (`0` or `1`), plus `frontend`, `frontend-id`, `online`, `state`, `type`,
//! `dev`, `removable`, `bootable` that the session framework reads or grantsvc ignores.
//!
//! grantsvc's nodes, as Linux `xen-blkback/xenbus.c` writes them (`xen_blkbk_probe` before
//! InitWait; `connect` and `xen_blkbk_discard` at Connected), each advertised unconditionally
//! when implemented and used only when the frontend advertised it too.

use super::frontend_nodes::BackendOffer;
use super::target::{Target, TargetFault};
use crate::abi::blkif::{vdisk, SECTOR_SIZE};
use crate::addr::PAGE_SIZE;
use crate::peer::value::Excerpt;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// One node to write: its name under the backend directory and its value.
pub type Node = (&'static str, String);

/// What the toolstack asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolstackRequest {
    pub target: Target,
    pub writable: bool,
    pub cdrom: bool,
    pub discard_enable: bool,
}

/// A toolstack node grantsvc cannot serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolstackFault {
    Missing(&'static str),
    Target(TargetFault),
    Bad { key: &'static str, value: Excerpt },
}

impl fmt::Display for ToolstackFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolstackFault::Missing(key) => write!(formatter, "backend node {key} missing"),
            ToolstackFault::Target(fault) => write!(formatter, "params: {fault}"),
            ToolstackFault::Bad { key, value } => {
                write!(formatter, "backend node {key}: unexpected value {value}")
            }
        }
    }
}

impl ToolstackRequest {
    /// Decodes the toolstack's nodes; `read` gives a node's value by name.
    pub fn decode<'a>(
        read: impl Fn(&'static str) -> Option<&'a [u8]>,
    ) -> Result<ToolstackRequest, ToolstackFault> {
        let params = read("params").ok_or(ToolstackFault::Missing("params"))?;
        let target = Target::parse(params).map_err(ToolstackFault::Target)?;
        let bad = |key: &'static str, value: &[u8]| ToolstackFault::Bad {
            key,
            value: Excerpt::of(value),
        };
        let writable = match read("mode") {
            Some(b"w") => true,
            Some(b"r") => false,
            Some(other) => return Err(bad("mode", other)),
            None => return Err(ToolstackFault::Missing("mode")),
        };
        let cdrom = match read("device-type") {
            None | Some(b"disk") => false,
            Some(b"cdrom") => true,
            Some(other) => return Err(bad("device-type", other)),
        };
        let discard_enable = match read("discard-enable") {
            None | Some(b"1") => true,
            Some(b"0") => false,
            Some(other) => return Err(bad("discard-enable", other)),
        };
        Ok(ToolstackRequest {
            target,
            writable: writable && !cdrom,
            cdrom,
            discard_enable,
        })
    }
}

/// The nodes written before switching to InitWait: the transport limits offered.
pub fn before_init_wait(offer: &BackendOffer) -> Vec<Node> {
    vec![
        (
            "feature-max-indirect-segments",
            format!("{}", offer.max_indirect_segments),
        ),
        (
            "max-ring-page-order",
            format!("{}", offer.max_ring_page_order),
        ),
        ("multi-queue-max-queues", format!("{}", offer.max_queues)),
    ]
}

/// What the connect nodes describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskDescription {
    /// Size in 512-byte sectors.
    pub sectors: u64,
    pub writable: bool,
    pub cdrom: bool,
    /// The store can discard and the toolstack did not disable it.
    pub discard: bool,
}

impl DiskDescription {
    /// The disk's physical sector size: a page when the disk is whole pages (the RAM disk's
    /// unit of allocation, so Linux aligns its I/O to it), else a sector.
    pub fn physical_sector_size(&self) -> u64 {
        let page_sectors = (PAGE_SIZE / SECTOR_SIZE) as u64;
        if self.sectors % page_sectors == 0 {
            PAGE_SIZE as u64
        } else {
            SECTOR_SIZE as u64
        }
    }
}

/// The nodes written in one transaction before switching to Connected.
pub fn at_connect(disk: &DiskDescription) -> Vec<Node> {
    let mut info = 0;
    if !disk.writable {
        info |= vdisk::READONLY;
    }
    if disk.cdrom {
        info |= vdisk::CDROM;
    }
    let flag = |on: bool| String::from(if on { "1" } else { "0" });
    let mut nodes = vec![
        ("sectors", format!("{}", disk.sectors)),
        ("info", format!("{info}")),
        ("sector-size", format!("{SECTOR_SIZE}")),
        (
            "physical-sector-size",
            format!("{}", disk.physical_sector_size()),
        ),
        ("feature-flush-cache", flag(disk.writable)),
        ("feature-discard", flag(disk.discard && disk.writable)),
        ("feature-persistent", flag(true)),
    ];
    if disk.discard && disk.writable {
        nodes.extend([
            ("discard-granularity", format!("{PAGE_SIZE}")),
            ("discard-alignment", String::from("0")),
            ("discard-secure", String::from("0")),
        ]);
    }
    nodes
}

#[cfg(test)]
#[path = "backend_nodes_tests.rs"]
mod tests;
