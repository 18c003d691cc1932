//! Xen ABI: vchan (to be filled in).
