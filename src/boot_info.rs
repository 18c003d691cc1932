//! start_info: validating what Xen hands the kernel at boot and summarising it (to be filled in).
