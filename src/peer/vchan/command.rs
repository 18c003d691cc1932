//! The command service: one-line commands, each answered with one line on the same stream.
//!
//! Lines end with `\n` (a `\r` before it is ignored) and are at most [`MAX_LINE`] bytes.
//! - `stats` → `stats peers=P regions=R pages=N maps=M unmaps=U faults=F turns=T`: the service's
//!   counters (T: service-loop turns since boot).
//! - `checksum <length>` → the next `<length>` bytes on the stream (any bytes, not lines) are
//!   taken as a payload and answered with `checksum bytes=<length> crc32=<8 hex digits>` (CRC-32,
//!   the IEEE/zlib polynomial, as `python3 -c 'import zlib; print(zlib.crc32(data))'` computes):
//!   proof that grantsvc saw exactly the bytes sent, not merely passed them along.
//! - `help` → `help stats | checksum <length> | help`.
//! - an empty line → no answer; anything else → `error unknown command`; a line longer than
//!   [`MAX_LINE`] → `error line too long` (the rest of that line is discarded).

use super::service::ByteService;
use crate::peer::counters::ServiceCounters;
use crate::peer::crc32::Crc32;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Longest command line accepted, without its `\n`.
pub const MAX_LINE: usize = 128;
/// Longest answer, including its `\n`; the service waits for this much output room before
/// completing a line.
pub const MAX_REPLY: usize = 256;
/// Largest `checksum` payload accepted (1 GiB).
pub const MAX_CHECKSUM_LENGTH: u64 = 1 << 30;

#[derive(Debug, Default)]
enum Mode {
    /// Collecting a command line.
    #[default]
    Line,
    /// Discarding the rest of an over-long line.
    Discarding,
    /// Taking `remaining` more payload bytes for a `checksum`.
    Checksum {
        length: u64,
        remaining: u64,
        hasher: Crc32,
    },
}

/// The command service's state.
#[derive(Debug, Default)]
pub struct CommandService {
    line: Vec<u8>,
    mode: Mode,
}

/// Parses a decimal length made only of ASCII digits (no sign, no spaces).
fn parse_length(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl CommandService {
    /// Runs one complete command line; returns the new mode and the reply (empty for none).
    fn execute(line: &[u8], counters: &ServiceCounters) -> (Mode, String) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = core::str::from_utf8(line).unwrap_or("\u{fffd}");
        let mut words = text.split(' ').filter(|word| !word.is_empty());
        let mut reply = String::new();
        let mut mode = Mode::Line;
        // `write!` into a String cannot fail; the results are ignored for that reason.
        match (words.next(), words.next(), words.next()) {
            (None, _, _) => {}
            (Some("stats"), None, _) => {
                let _ = write!(
                    reply,
                    "stats peers={} regions={} pages={} maps={} unmaps={} faults={} turns={}",
                    counters.peers,
                    counters.mapped_regions,
                    counters.mapped_pages,
                    counters.maps,
                    counters.unmaps,
                    counters.faults,
                    counters.loop_turns
                );
            }
            (Some("checksum"), Some(length), None) => match parse_length(length) {
                Some(0) => reply = Self::checksum_reply(0, Crc32::default()),
                Some(length) if length <= MAX_CHECKSUM_LENGTH => {
                    mode = Mode::Checksum {
                        length,
                        remaining: length,
                        hasher: Crc32::default(),
                    };
                }
                _ => reply.push_str("error checksum needs a length in 0..=1073741824"),
            },
            (Some("help"), None, _) => reply.push_str("help stats | checksum <length> | help"),
            _ => reply.push_str("error unknown command"),
        }
        if !reply.is_empty() && !reply.ends_with('\n') {
            reply.push('\n');
        }
        (mode, reply)
    }

    /// Finishes a checksum whose payload is complete; returns its reply.
    fn checksum_reply(length: u64, hasher: Crc32) -> String {
        let mut reply = String::new();
        let _ = writeln!(
            reply,
            "checksum bytes={length} crc32={:08x}",
            hasher.value()
        );
        reply
    }
}

impl ByteService for CommandService {
    fn process(
        &mut self,
        input: &[u8],
        output: &mut Vec<u8>,
        output_limit: usize,
        counters: &ServiceCounters,
    ) -> usize {
        let mut consumed = 0;
        while consumed < input.len() {
            let rest = input.get(consumed..).unwrap_or_default();
            let room = output_limit.saturating_sub(output.len());
            match &mut self.mode {
                Mode::Checksum {
                    length,
                    remaining,
                    hasher,
                } => {
                    let take = rest
                        .len()
                        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    let (payload, _) = rest.split_at(take);
                    if take as u64 == *remaining && room < MAX_REPLY {
                        break; // the reply must fit before the payload is finished
                    }
                    hasher.update(payload);
                    *remaining -= take as u64;
                    consumed += take;
                    if *remaining == 0 {
                        let reply = Self::checksum_reply(*length, hasher.clone());
                        output.extend_from_slice(reply.as_bytes());
                        self.mode = Mode::Line;
                    }
                }
                Mode::Line | Mode::Discarding => {
                    let end = rest.iter().position(|&byte| byte == b'\n');
                    let Some(end) = end else {
                        if matches!(self.mode, Mode::Line) {
                            self.line.extend_from_slice(rest);
                            if self.line.len() > MAX_LINE {
                                self.line.clear();
                                self.mode = Mode::Discarding;
                            }
                        }
                        consumed = input.len();
                        break;
                    };
                    if room < MAX_REPLY {
                        break; // completing the line may need a full reply's room
                    }
                    let (reply, mode) = if matches!(self.mode, Mode::Discarding) {
                        (String::from("error line too long\n"), Mode::Line)
                    } else {
                        self.line
                            .extend_from_slice(rest.get(..end).unwrap_or_default());
                        let (mode, reply) = if self.line.len() > MAX_LINE {
                            (Mode::Line, String::from("error line too long\n"))
                        } else {
                            Self::execute(&self.line, counters)
                        };
                        (reply, mode)
                    };
                    self.line.clear();
                    self.mode = mode;
                    output.extend_from_slice(reply.as_bytes());
                    consumed += end + 1;
                }
            }
        }
        consumed
    }
}

#[cfg(test)]
mod tests;
