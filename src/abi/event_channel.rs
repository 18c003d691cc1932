//! Xen ABI: event channel (to be filled in).
