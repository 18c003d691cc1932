//! Kernel command line parsing: `loglevel=`, `selftest`, scenario selection (to be filled in).
