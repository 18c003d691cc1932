//! Xen ABI: sched (to be filled in).
