//! Boot-time machinery that needs `unsafe`: the entry point and stack, the ELF notes, the heap arena, trap entry.
#![allow(unsafe_code)]

// Before the entries: `#[macro_use]` makes its asm-text macros visible to the modules after it.
#[macro_use]
mod register_save;
mod elf_notes;
pub mod entry;
pub mod heap;
pub mod traps;
pub mod upcall;
