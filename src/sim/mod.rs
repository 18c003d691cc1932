//! A simulated Xen for host tests: machine frames with owners, validated page tables, grant tables, maptrack (to be filled in).
