//! grantsvc's target-independent core: Xen ABI types, the pmap, grant mapping and peer protocols, tested on the host.
//!
//! Nothing here touches hardware or issues a hypercall: the kernel binary (`src/main.rs`, with
//! its target-specific modules under `src/kernel/`) supplies the hypervisor through the
//! [`hypervisor::Hypervisor`] trait, and host tests supply a simulated one (`sim`).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi;
pub mod addr;
pub mod boot_info;
pub mod cmdline;
pub mod console_ring;
pub mod domain_control;
pub mod event_delivery;
pub mod frame_alloc;
pub mod hypervisor;
pub mod ids;
pub mod peer;
pub mod pmap;
pub mod shared_memory;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
