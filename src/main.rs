//! The grantsvc kernel binary: a Xen PV x86-64 guest. On any other target it only explains itself.
#![cfg_attr(target_os = "none", no_std, no_main)]
// Only the kernel's boot and hypervisor-interface modules may use `unsafe`; they allow it locally.
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("grantsvc is a Xen PV kernel: build it with `make` (target x86_64-unknown-none) and start it with `xl create domain.cfg`.");
}
