//! Xen ABI: xenstore ring (to be filled in).
