//! Index arithmetic of the PV console ring (to be filled in).
