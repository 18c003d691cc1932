//! Xen ABI: the hypercall numbers (`__HYPERVISOR_*` in `public/xen.h`), each an index into the hypercall page.

pub const SET_TRAP_TABLE: u32 = 0;
pub const MMU_UPDATE: u32 = 1;
pub const SET_CALLBACKS: u32 = 4;
pub const UPDATE_VA_MAPPING: u32 = 14;
pub const SET_TIMER_OP: u32 = 15;
pub const XEN_VERSION: u32 = 17;
pub const MEMORY_OP: u32 = 12;
pub const CONSOLE_IO: u32 = 18;
pub const GRANT_TABLE_OP: u32 = 20;
pub const VM_ASSIST: u32 = 21;
pub const IRET: u32 = 23;
pub const VCPU_OP: u32 = 24;
pub const MMUEXT_OP: u32 = 26;
pub const SCHED_OP: u32 = 29;
pub const CALLBACK_OP: u32 = 30;
pub const EVENT_CHANNEL_OP: u32 = 32;

/// Bytes per entry of the hypercall page: entry `n` is at `hypercall_page + n * 32`.
pub const HYPERCALL_ENTRY_SIZE: usize = 32;

/// Entries in the one-page hypercall page.
pub const HYPERCALL_PAGE_ENTRIES: u32 = 128;

/// `XENVER_version`: returns `major << 16 | minor`.
pub const XENVER_VERSION: u32 = 0;
/// `XENVER_extraversion`: fills a 16-byte string such as ".7".
pub const XENVER_EXTRAVERSION: u32 = 1;

/// `XENMEM_maximum_ram_page` of `HYPERVISOR_memory_op`: returns the host's highest machine
/// frame number plus one (Xen's `max_page`); takes no argument.
pub const XENMEM_MAXIMUM_RAM_PAGE: u32 = 2;

/// `CONSOLEIO_write` of `HYPERVISOR_console_io`.
pub const CONSOLEIO_WRITE: u32 = 0;

/// `UVMF_INVLPG` flag of `update_va_mapping`: flush only this VA from the local TLB.
pub const UVMF_INVLPG: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hypercall_fits_in_the_page() {
        for number in [
            SET_TRAP_TABLE,
            MMU_UPDATE,
            SET_CALLBACKS,
            UPDATE_VA_MAPPING,
            SET_TIMER_OP,
            XEN_VERSION,
            CONSOLE_IO,
            GRANT_TABLE_OP,
            VM_ASSIST,
            IRET,
            VCPU_OP,
            MMUEXT_OP,
            SCHED_OP,
            CALLBACK_OP,
            EVENT_CHANNEL_OP,
        ] {
            assert!(number < HYPERCALL_PAGE_ENTRIES);
        }
        assert_eq!(HYPERCALL_PAGE_ENTRIES as usize * HYPERCALL_ENTRY_SIZE, 4096);
    }
}
