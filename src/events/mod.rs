//! Event channels without hardware: the 2-level pending-bitmap scan, the set of ports ready for the run loop, and timer deadlines.

mod pending_scan;
mod ready_ports;
mod timer_deadlines;

pub use self::pending_scan::{scan_pending, PendingBitmaps, ScanSummary};
pub use self::ready_ports::{ReadyPorts, ReadySnapshot};
pub use self::timer_deadlines::TimerDeadlines;
