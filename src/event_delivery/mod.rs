//! Event delivery without hardware: the 2-level pending-bitmap scan, the set of ports ready for the run loop, timer deadlines, and when the loop may block.

mod pending_scan;
mod ready_ports;
mod timer_deadlines;
mod wait_plan;

pub use self::pending_scan::{scan_pending, PendingBitmaps, ScanSummary};
pub use self::ready_ports::{ReadyPorts, ReadySnapshot};
pub use self::timer_deadlines::TimerDeadlines;
pub use self::wait_plan::{found_only_at_timer, next_wait, NextWait, QueuedWork};
