//! Explains how an echo differs from what was sent: where, how far, and what the received bytes are instead (stale, repeated, missing).
//!
//! A bare "differs at byte N" cannot tell a lost chunk from a stale ring read. With random data,
//! the bytes received at the first difference identify where they came from: the same stream
//! some bytes earlier (a stale lap of a ring, or a repeat) or later (bytes lost), and whether the
//! stream gets back in step afterwards. The ring positions are printed for vchan-socket-proxy's
//! default rings (1 KiB client-to-server, 2 KiB server-to-client).

use std::fmt::Write;

/// Bytes compared to recognise where received bytes came from (unique in random data).
const PROBE: usize = 32;
/// Farthest shift looked for, either way.
const MAX_SHIFT: usize = 64 * 1024;
/// Bytes in step again that end a differing run.
const IN_STEP: usize = 32;

/// Where the first differing run ends: the first offset from which `IN_STEP` bytes agree again.
fn run_end(sent: &[u8], received: &[u8], from: usize) -> usize {
    let overlap = sent.len().min(received.len());
    (from..overlap)
        .find(|&at| {
            let end = overlap.min(at + IN_STEP);
            sent.get(at..end) == received.get(at..end)
        })
        .unwrap_or(overlap)
}

/// The smallest shift `k` with `received[at..]` equal to `sent[at + k..]` (later: `true`) or
/// `sent[at - k..]` (earlier: `false`) over `PROBE` bytes.
fn find_source(sent: &[u8], received: &[u8], at: usize) -> Option<(usize, bool)> {
    let probe = received.get(at..received.len().min(at + PROBE))?;
    if probe.is_empty() {
        return None;
    }
    let matches = |start: usize| sent.get(start..start + probe.len()) == Some(probe);
    (1..=MAX_SHIFT).find_map(|shift| {
        if matches(at + shift) {
            Some((shift, true))
        } else if shift <= at && matches(at - shift) {
            Some((shift, false))
        } else {
            None
        }
    })
}

/// Where each 16-byte piece of the differing run `first..end` (at most 16 pieces) came from:
/// `zeros`, `ok` (in step), `sent+N` / `sent-N` (bytes sent N later or earlier) or `?`.
///
/// Vector copies move 16 or 32 bytes at a time, so a run made of pieces from elsewhere in the
/// stream, or of zeroed halves, points at a copy that used stale registers rather than at ring
/// indices (which move whole transfers).
fn pieces(sent: &[u8], received: &[u8], first: usize, end: usize) -> String {
    const PIECE: usize = 16;
    let last = end.min(first + 16 * PIECE);
    let mut account = Vec::new();
    let mut at = first;
    while at < last {
        let stop = received.len().min(at + PIECE);
        let piece = received.get(at..stop).unwrap_or_default();
        let name = if piece.iter().all(|&byte| byte == 0) {
            "zeros".to_string()
        } else if sent.get(at..stop) == Some(piece) {
            "ok".to_string()
        } else {
            match sent
                .windows(piece.len().max(1))
                .position(|window| window == piece)
            {
                Some(found) if found >= at => format!("sent+{}", found - at),
                Some(found) => format!("sent-{}", at - found),
                None => "?".to_string(),
            }
        };
        account.push(name);
        at = stop;
    }
    if last < end {
        account.push("...".to_string());
    }
    account.join(", ")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// A one-line account of how `received` differs from `sent`, or `None` when it is equal.
pub fn describe(sent: &[u8], received: &[u8]) -> Option<String> {
    let overlap = sent.len().min(received.len());
    let first = (0..overlap)
        .find(|&at| sent.get(at) != received.get(at))
        .or((sent.len() != received.len()).then_some(overlap))?;
    let mut text = format!(
        "first difference at byte {first} of {} sent, {} received (position {} in a 1 KiB ring, {} in a 2 KiB ring)",
        sent.len(),
        received.len(),
        first % 1024,
        first % 2048
    );
    if first == overlap {
        return Some(text);
    }
    let end = run_end(sent, received, first);
    let differing = (0..overlap)
        .filter(|&at| sent.get(at) != received.get(at))
        .count();
    let _ = write!(
        text,
        "; {} byte(s) differ from there before {IN_STEP} agree again, {differing} differ in all",
        end - first
    );
    let _ = match find_source(sent, received, first) {
        Some((shift, true)) => write!(
            text,
            "; received there: the bytes sent {shift} later ({shift} byte(s) missing)"
        ),
        Some((shift, false)) if end < overlap => write!(
            text,
            "; received there: the bytes sent {shift} earlier, then back in step (stale bytes, e.g. an old lap of a ring)"
        ),
        Some((shift, false)) => write!(
            text,
            "; received there: the bytes sent {shift} earlier ({shift} byte(s) repeated)"
        ),
        None if received.get(first..end).is_some_and(|run| run.iter().all(|&byte| byte == 0)) => {
            write!(text, "; received there: zeros")
        }
        None => write!(
            text,
            "; received there: bytes not found within {MAX_SHIFT} of that offset in what was sent"
        ),
    };
    let _ = write!(
        text,
        "; in 16-byte pieces: {}",
        pieces(sent, received, first, end)
    );
    let window = |bytes: &[u8]| {
        hex(bytes
            .get(first..bytes.len().min(first + 16))
            .unwrap_or_default())
    };
    let _ = write!(
        text,
        "; sent {}, received {}",
        window(sent),
        window(received)
    );
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(length: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn equal_streams_have_no_difference() {
        let sent = random(10_000);
        assert_eq!(describe(&sent, &sent), None);
    }

    #[test]
    fn a_stale_lap_is_recognised() {
        let sent = random(100_000);
        let mut received = sent.clone();
        // A 1 KiB ring read one lap early at 31744: the previous lap's bytes.
        received.copy_within(31744 - 1024..31744 - 1024 + 300, 31744);
        let text = describe(&sent, &received).unwrap();
        assert!(text.starts_with("first difference at byte 31744 of 100000 sent, 100000 received (position 0 in a 1 KiB ring, 1024 in a 2 KiB ring)"), "{text}");
        assert!(text.contains("; 300 byte(s) differ from there"), "{text}");
        assert!(
            text.contains("the bytes sent 1024 earlier, then back in step"),
            "{text}"
        );
    }

    #[test]
    fn missing_and_repeated_bytes_are_told_apart() {
        let sent = random(50_000);
        let mut lost = sent.clone();
        lost.drain(5000..5000 + 2048);
        let text = describe(&sent, &lost).unwrap();
        assert!(
            text.contains("the bytes sent 2048 later (2048 byte(s) missing)"),
            "{text}"
        );
        let mut repeated = sent.clone();
        let copy = sent[7000..7100].to_vec();
        repeated.splice(7100..7100, copy);
        let text = describe(&sent, &repeated).unwrap();
        assert!(text.contains("at byte 7100 "), "{text}");
        assert!(
            text.contains("the bytes sent 100 earlier (100 byte(s) repeated)"),
            "{text}"
        );
    }

    #[test]
    fn stale_vector_registers_show_in_the_pieces() {
        // What the lab saw: 64 bytes made of two 16-byte pieces sent later, each followed by
        // 16 zero bytes (32-byte stores of registers whose upper halves were zero).
        let sent = random(100_000);
        let mut received = sent.clone();
        let at = 40_960;
        received[at..at + 16].copy_from_slice(&sent[at + 16_640..at + 16_656]);
        received[at + 16..at + 32].fill(0);
        received[at + 32..at + 48].copy_from_slice(&sent[at + 17_184..at + 17_200]);
        received[at + 48..at + 64].fill(0);
        let text = describe(&sent, &received).unwrap();
        assert!(
            text.contains("; in 16-byte pieces: sent+16640, zeros, sent+17152, zeros;"),
            "{text}"
        );
    }

    #[test]
    fn zeros_and_short_echoes_are_described() {
        let sent = random(20_000);
        let mut zeroed = sent.clone();
        zeroed[3000..3100].fill(0);
        let text = describe(&sent, &zeroed).unwrap();
        assert!(text.contains("received there: zeros"), "{text}");
        assert!(
            text.contains(&format!("sent {}", hex(&sent[3000..3016]))),
            "{text}"
        );
        let text = describe(&sent, &sent[..19_000]).unwrap();
        assert!(
            text.starts_with("first difference at byte 19000 of 20000 sent, 19000 received"),
            "{text}"
        );
    }
}
