//! Xen ABI: hypercall numbers (to be filled in).
