//! `panic` and `fault`: deliberate failures right after boot, so that the lab sees the panic message and the trap report and the domain crash.

use crate::kernel::boot::traps;

/// The unmapped address `fault` reads: inside the pmap's chosen-VA region, which nothing maps
/// at boot.
const DELIBERATE_FAULT_ADDRESS: u64 = 0xffff_c0ff_dead_0000;

/// `panic`: the panic handler reports and crashes the domain.
pub fn panic_now() -> ! {
    panic!("deliberate panic requested on the command line");
}

/// `fault`: a read of an unmapped page; the page-fault report crashes the domain.
pub fn fault_now() -> ! {
    log::info!("deliberate page fault requested: reading {DELIBERATE_FAULT_ADDRESS:#x}");
    let value = traps::read_byte_expecting_fault(DELIBERATE_FAULT_ADDRESS);
    panic!("reading {DELIBERATE_FAULT_ADDRESS:#x} did not fault (read {value:#x})");
}
