//! Xen ABI: shared info (to be filled in).
