//! Boot-time machinery that needs `unsafe`: the entry point and stack, the ELF notes, the heap arena, trap entry.
#![allow(unsafe_code)]

mod elf_notes;
pub mod entry;
pub mod heap;
pub mod traps;
pub mod upcall;
