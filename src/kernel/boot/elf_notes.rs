//! The Xen ELF notes (`public/elfnote.h`) that tell Xen's loader how to start grantsvc, in a PT_NOTE segment.
//!
//! The linker script places `.note.Xen` in its own PT_NOTE program header. Numeric notes are
//! 8-byte values; string notes are NUL-terminated.

core::arch::global_asm!(
    concat!(
        r#"
    .macro xen_elfnote type, payload:vararg
        .balign 4
        .long 4                 /* namesz: "Xen" and its NUL */
        .long 772f - 771f       /* descsz */
        .long \type
        .asciz "Xen"
        .balign 4
    771:
        \payload
    772:
        .balign 4
    .endm

    .pushsection .note.Xen, "a", @note
    xen_elfnote 6,  .asciz "grantsvc"              /* XEN_ELFNOTE_GUEST_OS */
    xen_elfnote 7,  .asciz ""#,
        env!("CARGO_PKG_VERSION"),
        r#""    /* XEN_ELFNOTE_GUEST_VERSION */
    xen_elfnote 8,  .asciz "generic"               /* XEN_ELFNOTE_LOADER */
    xen_elfnote 5,  .asciz "xen-3.0"               /* XEN_ELFNOTE_XEN_VERSION */
    xen_elfnote 3,  .quad {virt_base}              /* XEN_ELFNOTE_VIRT_BASE */
    xen_elfnote 4,  .quad 0                        /* XEN_ELFNOTE_PADDR_OFFSET */
    xen_elfnote 1,  .quad _start                   /* XEN_ELFNOTE_ENTRY */
    xen_elfnote 2,  .quad hypercall_page           /* XEN_ELFNOTE_HYPERCALL_PAGE */
    .popsection
    "#
    ),
    virt_base = const grantsvc::boot_info::KERNEL_VIRT_BASE,
    options(att_syntax)
);
