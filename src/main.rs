//! The grantsvc kernel binary: a Xen PV x86-64 guest. On any other target it only explains itself.
//!
//! Built as it is, this is the production image: it boots and runs the service. With the `lab`
//! feature (`make lab-kernel`) it first does what the lab's command-line words ask for.
#![cfg_attr(target_os = "none", no_std, no_main)]
// Only the kernel's boot and hypervisor-interface modules may use `unsafe`; they allow it locally.
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod kernel;

#[cfg(target_os = "none")]
kernel::boot::entry::entry_point!(run);

// The hypervisor-interface layer in the host test build, its hypercall entry swapped for a fake
// Xen (see that module's "Host tests"), so that Miri sees its pointer handling. What is dead
// code is judged by the kernel's own builds, which compile the whole layer.
#[cfg(all(test, not(target_os = "none")))]
#[path = "kernel/xen/mod.rs"]
#[allow(dead_code)]
mod xen;

/// Runs on the booted kernel: the lab build's requested lab run first (it returns only when the
/// command line asks for none), then the service.
#[cfg(target_os = "none")]
fn run(booted: kernel::booted::Kernel) -> ! {
    #[cfg(feature = "lab")]
    kernel::lab::run_requested(&booted);
    kernel::service::run(&booted)
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("grantsvc is a Xen PV kernel: build it with `make` (target x86_64-unknown-none) and start it with `xl create domain.cfg`.");
}
