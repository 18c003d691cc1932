//! Host tests of the pmap against the simulated hypervisor.

mod fixture;
mod grant_errors;
mod grant_mapping;
mod mapping_guard;
mod model;
mod ordinary;
mod remove;
