//! Xen ABI: console (to be filled in).
