//! Checks grantsvc's blkif ABI (ring header, request and response layouts, constants, ring sizes) against Xen's C header, compiled with gcc.
//!
//! Needs `gcc` and `/usr/include/xen/io/blkif.h` (Debian's `libxen-dev`); when either is missing
//! the test says so and fails, because a silently skipped layout check proves nothing.

use core::mem::{offset_of, size_of};
use grantsvc::abi::blkif::*;
use std::path::Path;
use std::process::Command;

const HEADER: &str = "/usr/include/xen/io/blkif.h";

/// (C expression, Rust value) pairs.
fn facts() -> Vec<(String, u64)> {
    let mut facts: Vec<(String, u64)> = Vec::new();
    let mut fact = |c: &str, rust: usize| facts.push((c.to_string(), rust as u64));
    fact(
        "sizeof(struct blkif_request_segment)",
        size_of::<RequestSegment>(),
    );
    fact(
        "offsetof(struct blkif_request_segment, gref)",
        offset_of!(RequestSegment, gref),
    );
    fact(
        "offsetof(struct blkif_request_segment, first_sect)",
        offset_of!(RequestSegment, first_sect),
    );
    fact(
        "offsetof(struct blkif_request_segment, last_sect)",
        offset_of!(RequestSegment, last_sect),
    );
    fact("sizeof(struct blkif_request)", size_of::<Request>());
    fact(
        "offsetof(struct blkif_request, operation)",
        offset_of!(Request, operation),
    );
    fact(
        "offsetof(struct blkif_request, nr_segments)",
        offset_of!(Request, nr_segments),
    );
    fact(
        "offsetof(struct blkif_request, handle)",
        offset_of!(Request, handle),
    );
    fact(
        "offsetof(struct blkif_request, id)",
        offset_of!(Request, id),
    );
    fact(
        "offsetof(struct blkif_request, sector_number)",
        offset_of!(Request, sector_number),
    );
    fact(
        "offsetof(struct blkif_request, seg)",
        offset_of!(Request, seg),
    );
    fact(
        "sizeof(struct blkif_request_discard)",
        size_of::<RequestDiscard>(),
    );
    fact(
        "offsetof(struct blkif_request_discard, flag)",
        offset_of!(RequestDiscard, flag),
    );
    fact(
        "offsetof(struct blkif_request_discard, handle)",
        offset_of!(RequestDiscard, handle),
    );
    fact(
        "offsetof(struct blkif_request_discard, id)",
        offset_of!(RequestDiscard, id),
    );
    fact(
        "offsetof(struct blkif_request_discard, sector_number)",
        offset_of!(RequestDiscard, sector_number),
    );
    fact(
        "offsetof(struct blkif_request_discard, nr_sectors)",
        offset_of!(RequestDiscard, nr_sectors),
    );
    fact(
        "sizeof(struct blkif_request_indirect)",
        size_of::<RequestIndirect>(),
    );
    fact(
        "offsetof(struct blkif_request_indirect, indirect_op)",
        offset_of!(RequestIndirect, indirect_op),
    );
    fact(
        "offsetof(struct blkif_request_indirect, nr_segments)",
        offset_of!(RequestIndirect, nr_segments),
    );
    fact(
        "offsetof(struct blkif_request_indirect, id)",
        offset_of!(RequestIndirect, id),
    );
    fact(
        "offsetof(struct blkif_request_indirect, sector_number)",
        offset_of!(RequestIndirect, sector_number),
    );
    fact(
        "offsetof(struct blkif_request_indirect, handle)",
        offset_of!(RequestIndirect, handle),
    );
    fact(
        "offsetof(struct blkif_request_indirect, indirect_grefs)",
        offset_of!(RequestIndirect, indirect_grefs),
    );
    fact("sizeof(struct blkif_response)", size_of::<Response>());
    fact(
        "offsetof(struct blkif_response, id)",
        offset_of!(Response, id),
    );
    fact(
        "offsetof(struct blkif_response, operation)",
        offset_of!(Response, operation),
    );
    fact(
        "offsetof(struct blkif_response, status)",
        offset_of!(Response, status),
    );
    fact(
        "offsetof(struct blkif_sring, req_prod)",
        header_offset::REQ_PROD,
    );
    fact(
        "offsetof(struct blkif_sring, req_event)",
        header_offset::REQ_EVENT,
    );
    fact(
        "offsetof(struct blkif_sring, rsp_prod)",
        header_offset::RSP_PROD,
    );
    fact(
        "offsetof(struct blkif_sring, rsp_event)",
        header_offset::RSP_EVENT,
    );
    fact(
        "offsetof(struct blkif_sring, pvt)",
        offset_of!(SharedRingHeader, private),
    );
    fact(
        "offsetof(struct blkif_sring, __pad)",
        offset_of!(SharedRingHeader, pad),
    );
    fact("offsetof(struct blkif_sring, ring)", RING_OFFSET);
    fact("sizeof(union blkif_sring_entry)", SLOT_SIZE);
    for order in 0..=MAX_RING_PAGE_ORDER {
        fact(
            &format!("__CONST_RING_SIZE(blkif, 4096 << {order})"),
            ring_slots(order).expect("orders 0..=4 have a size") as usize,
        );
    }
    let mut constant = |c: &str, rust: i64| facts.push((format!("(long long)({c})"), rust as u64));
    constant("BLKIF_OP_READ", op::READ.into());
    constant("BLKIF_OP_WRITE", op::WRITE.into());
    constant("BLKIF_OP_WRITE_BARRIER", op::WRITE_BARRIER.into());
    constant("BLKIF_OP_FLUSH_DISKCACHE", op::FLUSH_DISKCACHE.into());
    constant("BLKIF_OP_RESERVED_1", op::RESERVED_1.into());
    constant("BLKIF_OP_DISCARD", op::DISCARD.into());
    constant("BLKIF_OP_INDIRECT", op::INDIRECT.into());
    constant("BLKIF_RSP_EOPNOTSUPP", status::EOPNOTSUPP.into());
    constant("BLKIF_RSP_ERROR", status::ERROR.into());
    constant("BLKIF_RSP_OKAY", status::OKAY.into());
    constant(
        "BLKIF_MAX_SEGMENTS_PER_REQUEST",
        MAX_SEGMENTS_PER_REQUEST as i64,
    );
    constant(
        "BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST",
        MAX_INDIRECT_PAGES_PER_REQUEST as i64,
    );
    constant("BLKIF_DISCARD_SECURE", DISCARD_SECURE.into());
    constant("VDISK_CDROM", vdisk::CDROM.into());
    constant("VDISK_REMOVABLE", vdisk::REMOVABLE.into());
    constant("VDISK_READONLY", vdisk::READONLY.into());
    constant(
        "4096 / sizeof(struct blkif_request_segment)",
        SEGMENTS_PER_INDIRECT_PAGE as i64,
    );
    for (c_name, rust) in [
        ("XEN_IO_PROTO_ABI_X86_64", PROTOCOL_X86_64),
        ("XEN_IO_PROTO_ABI_X86_32", PROTOCOL_X86_32),
    ] {
        // 1 when the C string equals Rust's.
        facts.push((format!("strcmp({c_name}, \"{rust}\") == 0"), 1));
    }
    facts
}

#[test]
fn blkif_abi_matches_the_c_header() {
    assert!(
        Path::new(HEADER).exists(),
        "{HEADER} missing: install libxen-dev"
    );
    let facts = facts();
    let mut source = String::from(
        "#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n\
         #include <xen/xen.h>\n#include <xen/io/blkif.h>\n#include <xen/io/protocols.h>\nint main(void) {\n",
    );
    for (expression, _) in &facts {
        source.push_str(&format!(
            "    printf(\"%llu\\n\", (unsigned long long)({expression}));\n"
        ));
    }
    source.push_str("    return 0;\n}\n");
    let directory =
        std::env::temp_dir().join(format!("grantsvc-blkif-layout-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("create a scratch folder");
    let (c_file, binary) = (directory.join("layout.c"), directory.join("layout"));
    std::fs::write(&c_file, source).expect("write the C program");
    let compiled = Command::new("gcc")
        .args(["-std=gnu11", "-o"])
        .arg(&binary)
        .arg(&c_file)
        .output()
        .expect("run gcc (install gcc and libxen-dev)");
    assert!(
        compiled.status.success(),
        "gcc failed on the layout program:\n{}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&binary)
        .output()
        .expect("run the layout program");
    let _ = std::fs::remove_dir_all(&directory);
    let c_values: Vec<u64> = String::from_utf8(output.stdout)
        .expect("ASCII output")
        .lines()
        .map(|line| line.parse().expect("a number per line"))
        .collect();
    assert_eq!(c_values.len(), facts.len(), "one value per fact");
    let mismatches: Vec<String> = facts
        .iter()
        .zip(&c_values)
        .filter(|((_, rust), c)| rust != *c)
        .map(|((expression, rust), c)| format!("{expression}: C says {c}, Rust says {rust}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "blkif ABI differs from Xen's header:\n{}",
        mismatches.join("\n")
    );
}
