//! The grantsvc kernel binary: a Xen PV x86-64 guest. On any other target it only explains itself.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("grantsvc is a Xen PV kernel: build it with `make` (target x86_64-unknown-none) and start it with `xl create domain.cfg`.");
}
