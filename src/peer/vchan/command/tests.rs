//! Tests of the command service: answers, payload checksums, split input, back-pressure.

use super::*;

fn counters() -> ServiceCounters {
    ServiceCounters {
        peers: 2,
        mapped_regions: 3,
        mapped_pages: 7,
        maps: 11,
        unmaps: 8,
        faults: 1,
        ..ServiceCounters::new()
    }
}

/// Feeds `input` in chunks of `chunk` bytes with plenty of output room; returns the output.
fn run(input: &[u8], chunk: usize) -> String {
    let mut service = CommandService::default();
    let mut output = Vec::new();
    for piece in input.chunks(chunk) {
        let consumed = service.process(piece, &mut output, 1 << 20, &counters());
        assert_eq!(consumed, piece.len());
    }
    String::from_utf8(output).unwrap()
}

#[test]
fn stats_reports_the_counters() {
    assert_eq!(
        run(b"stats\n", 64),
        "stats peers=2 regions=3 pages=7 maps=11 unmaps=8 faults=1 turns=0\n"
    );
    assert_eq!(
        run(b"stats\r\n", 1),
        "stats peers=2 regions=3 pages=7 maps=11 unmaps=8 faults=1 turns=0\n"
    );
}

#[test]
fn checksum_covers_exactly_the_payload_bytes() {
    // zlib.crc32(b"123456789") == 0xcbf43926, the CRC-32 check value.
    let mut input = b"checksum 9\n123456789".to_vec();
    input.extend_from_slice(b"help\n");
    for chunk in [1, 3, 100] {
        assert_eq!(
            run(&input, chunk),
            "checksum bytes=9 crc32=cbf43926\nhelp stats | checksum <length> | help\n"
        );
    }
}

#[test]
fn checksum_payload_may_hold_newlines_and_commands() {
    let payload = b"stats\n\0\xff\nchecksum 3\n";
    let mut input = alloc::format!("checksum {}\n", payload.len()).into_bytes();
    input.extend_from_slice(payload);
    let expected = crc32fast::hash(payload);
    assert_eq!(
        run(&input, 5),
        alloc::format!("checksum bytes={} crc32={expected:08x}\n", payload.len())
    );
}

#[test]
fn an_empty_checksum_answers_at_once() {
    assert_eq!(run(b"checksum 0\n", 4), "checksum bytes=0 crc32=00000000\n");
}

#[test]
fn bad_commands_get_errors_and_the_service_goes_on() {
    let input = b"bogus\nchecksum -1\nchecksum 99999999999\nchecksum\n\nstats now\nstats\n";
    let output = run(input, 7);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], "error unknown command");
    assert!(lines[1].starts_with("error checksum"));
    assert!(lines[2].starts_with("error checksum"));
    assert_eq!(lines[3], "error unknown command");
    assert_eq!(lines[4], "error unknown command");
    assert!(lines[5].starts_with("stats peers=2"));
}

#[test]
fn an_over_long_line_is_refused_and_discarded() {
    let mut input = vec![b'a'; MAX_LINE * 3];
    input.extend_from_slice(b"\nstats\n");
    for chunk in [1, 50, 1000] {
        let output = run(&input, chunk);
        assert!(
            output.starts_with("error line too long\nstats peers=2"),
            "{output}"
        );
    }
}

#[test]
fn a_full_output_holds_back_the_line() {
    let mut service = CommandService::default();
    let mut output = vec![0u8; 10];
    // Room for less than a reply: the line is left for later.
    assert_eq!(
        service.process(b"stats\n", &mut output, 100, &counters()),
        0
    );
    assert_eq!(output.len(), 10);
    output.clear();
    assert_eq!(
        service.process(b"stats\n", &mut output, 300, &counters()),
        6
    );
    assert!(output.starts_with(b"stats peers=2"));
}
