//! Xen ABI: start info (to be filled in).
