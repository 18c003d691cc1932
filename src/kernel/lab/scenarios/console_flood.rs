//! `console-flood`: many more bytes than the console ring holds, none dropped.
//!
//! The lab checks every numbered line arrived in order, which exercises the ring's wraparound
//! and the wait for space.

use super::Outcome;
use crate::kernel::booted::Kernel;
use crate::kernel::console;

pub fn run(_: &Kernel) -> Outcome {
    const LINES: u32 = 2000;
    for line in 0..LINES {
        log::info!(
            "console-flood line {line:04} of {LINES}: the quick brown fox jumps over the lazy dog"
        );
    }
    let dropped = console::dropped_bytes();
    if dropped == 0 {
        Outcome::Pass
    } else {
        Outcome::Fail(alloc::format!("{dropped} console bytes dropped"))
    }
}
