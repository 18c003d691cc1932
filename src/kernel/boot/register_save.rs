//! The general-register save and restore sequences the trap and event-upcall entries share, as asm text.
//!
//! Both entries build the same frame: the fifteen general registers pushed rax first, so that
//! r15 ends up lowest, which is the order of the first fields of `traps::TrapFrame`. One copy of
//! the sequence keeps that order from drifting between the entries. They are `macro_rules!`
//! producing string literals (not `.macro`s in a `global_asm!`) because each `global_asm!` may
//! land in a different object file, where an assembler macro defined elsewhere is unknown.

/// Pushes every general register, rax first (so r15 is lowest), then clears the direction flag
/// as the System V ABI requires on entry to Rust code.
macro_rules! push_general_registers {
    () => {
        "
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
"
    };
}

/// Pops what `push_general_registers!` pushed, in reverse.
macro_rules! pop_general_registers {
    () => {
        "
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
"
    };
}
