//! The pmap: grantsvc's one x86-64 address space over the PV MMU, with grant regions (to be filled in).
