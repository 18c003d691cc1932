//! Xen's public ABI for x86-64 PV guests, as `repr(C)` types and constants (layouts checked against `/usr/include/xen` in tests).

pub mod arch_x86_64;
pub mod blkif;
pub mod console;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall_numbers;
pub mod mmu;
pub mod sched;
pub mod shared_info;
pub mod start_info;
pub mod vchan;
