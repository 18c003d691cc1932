//! Checks grantsvc's vchan shared-page offsets against Xen's C header, compiled with the host's C compiler.
//!
//! Needs `cc` and `/usr/include/xen/io/libxenvchan.h` (Debian's `libxen-dev`); when either is
//! missing the test says so and fails, because a silently skipped layout check proves nothing.

use grantsvc::abi::vchan::*;
use std::path::PathBuf;
use std::process::Command;

const HEADER: &str = "/usr/include/xen/io/libxenvchan.h";

const PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <xen/io/libxenvchan.h>
int main(void) {
    printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %d %d\n",
        offsetof(struct vchan_interface, left.cons),
        offsetof(struct vchan_interface, left.prod),
        offsetof(struct vchan_interface, right.cons),
        offsetof(struct vchan_interface, right.prod),
        offsetof(struct vchan_interface, left_order),
        offsetof(struct vchan_interface, right_order),
        offsetof(struct vchan_interface, cli_live),
        offsetof(struct vchan_interface, srv_live),
        offsetof(struct vchan_interface, cli_notify),
        offsetof(struct vchan_interface, srv_notify),
        offsetof(struct vchan_interface, grants),
        VCHAN_NOTIFY_WRITE, VCHAN_NOTIFY_READ);
    return 0;
}
"#;

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("grantsvc-vchan-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn vchan_interface_offsets_match_the_c_header() {
    assert!(
        std::path::Path::new(HEADER).exists(),
        "{HEADER} missing: install libxen-dev"
    );
    let dir = scratch_dir();
    let source = dir.join("layout.c");
    let binary = dir.join("layout");
    std::fs::write(&source, PROGRAM).expect("write C source");
    let compiled = Command::new("cc")
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(compiled.success(), "cc failed on the layout program");
    let output = Command::new(&binary).output().expect("run layout program");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8(output.stdout).expect("utf-8 output");
    let numbers: Vec<usize> = text
        .split_whitespace()
        .map(|word| word.parse().expect("number"))
        .collect();
    let expected = [
        LEFT_CONS_OFFSET,
        LEFT_PROD_OFFSET,
        RIGHT_CONS_OFFSET,
        RIGHT_PROD_OFFSET,
        LEFT_ORDER_OFFSET,
        RIGHT_ORDER_OFFSET,
        CLI_LIVE_OFFSET,
        SRV_LIVE_OFFSET,
        CLI_NOTIFY_OFFSET,
        SRV_NOTIFY_OFFSET,
        GRANTS_OFFSET,
        usize::from(NOTIFY_WRITE),
        usize::from(NOTIFY_READ),
    ];
    assert_eq!(numbers, expected);
}
