//! Host tests of the pmap against the simulated hypervisor.

mod fixture;
mod grant_errors;
mod grant_mapping;
mod lent_frame;
mod mapping_guard;
mod model;
mod ordinary;
mod remove;
