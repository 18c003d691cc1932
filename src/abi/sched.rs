//! Xen ABI: `HYPERVISOR_sched_op` sub-operations, shutdown reasons and argument structs (`public/sched.h`).

pub const SCHEDOP_YIELD: u32 = 0;
pub const SCHEDOP_BLOCK: u32 = 1;
pub const SCHEDOP_SHUTDOWN: u32 = 2;
pub const SCHEDOP_POLL: u32 = 3;

/// Why a domain shuts itself down (`SHUTDOWN_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    /// Exited normally: clean up and kill.
    Poweroff = 0,
    /// Clean up, kill, then restart.
    Reboot = 1,
    /// Clean up, save suspend info, kill.
    Suspend = 2,
    /// Tell the toolstack we crashed (`on_crash=` applies).
    Crash = 3,
    /// Restart because the watchdog expired.
    Watchdog = 4,
}

/// `struct sched_shutdown`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedShutdown {
    pub reason: u32,
}

/// `struct sched_poll`: block until one of `nr_ports` ports is pending or `timeout` passes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedPoll {
    /// Guest handle (pointer) to an array of `evtchn_port_t`.
    pub ports: u64,
    pub nr_ports: u32,
    /// Absolute system time in nanoseconds; 0 means no timeout.
    pub timeout: u64,
}

/// Most ports one `SCHEDOP_poll` accepts (Xen's "fairly arbitrary limit").
pub const SCHED_POLL_MAX_PORTS: usize = 128;
