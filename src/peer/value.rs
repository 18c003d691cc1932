//! Decoding of numbers a peer writes into xenstore (grant refs, ports, states): strict decimal, typed errors.
//!
//! Xen's tools write these with `"%d"` / `"%u"` (`tools/libs/vchan/init.c` `init_xs_srv`), so only
//! plain ASCII digits are accepted: no sign, no spaces, no hex, no trailing newline, and no leading
//! zero (`"%u"` never writes one; every protocol here, grant-share, vchan, blkif and the xenbus
//! `state` node, is written that way by Xen's tools and Linux's `xenbus_printf`, so a leading zero
//! means the writer is not what it claims, and accepting it would let `"01"` and `"1"` name the
//! same ref or device). A value is untrusted bytes, not necessarily UTF-8.

use core::fmt;

/// At most this many bytes of a bad value are kept for the log line.
pub const EXCERPT_LENGTH: usize = 16;

/// The start of a bad value, for logging (printed with non-printable bytes escaped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt(heapless::Vec<u8, EXCERPT_LENGTH>);

impl Excerpt {
    /// The first [`EXCERPT_LENGTH`] bytes of `value`.
    pub fn of(value: &[u8]) -> Excerpt {
        let kept = value.get(..EXCERPT_LENGTH).unwrap_or(value);
        Excerpt(heapless::Vec::from_slice(kept).unwrap_or_default())
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "\"{}\"", self.0.escape_ascii())
    }
}

/// Why a peer-written number was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueFault {
    /// The node was empty.
    Empty,
    /// Something other than ASCII digits.
    NotDecimal(Excerpt),
    /// Digits, but more than the field holds.
    TooLarge(Excerpt),
    /// Digits with a leading zero (`"01"`), which no `"%u"` writes.
    LeadingZero(Excerpt),
}

impl fmt::Display for ValueFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueFault::Empty => formatter.write_str("empty value"),
            ValueFault::NotDecimal(excerpt) => write!(formatter, "non-numeric value {excerpt}"),
            ValueFault::TooLarge(excerpt) => write!(formatter, "value {excerpt} out of range"),
            ValueFault::LeadingZero(excerpt) => {
                write!(formatter, "value {excerpt} has a leading zero")
            }
        }
    }
}

/// Parses a strict decimal `u32`: what `"%u"` writes, nothing else.
pub fn parse_u32(value: &[u8]) -> Result<u32, ValueFault> {
    if value.is_empty() {
        return Err(ValueFault::Empty);
    }
    if value.len() > 1 && value.first() == Some(&b'0') && value.iter().all(u8::is_ascii_digit) {
        return Err(ValueFault::LeadingZero(Excerpt::of(value)));
    }
    let mut number: u32 = 0;
    for &byte in value {
        if !byte.is_ascii_digit() {
            return Err(ValueFault::NotDecimal(Excerpt::of(value)));
        }
        number = number
            .checked_mul(10)
            .and_then(|tens| tens.checked_add(u32::from(byte - b'0')))
            .ok_or_else(|| ValueFault::TooLarge(Excerpt::of(value)))?;
    }
    Ok(number)
}

/// An event-channel port in the *peer's* port space (as published in xenstore), before binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemotePort(pub u32);

impl RemotePort {
    /// Ports below this exist in some event-channel ABI (`EVTCHN_FIFO_NR_CHANNELS`, 2^17, in
    /// `public/event_channel.h`); port 0 is never allocated.
    pub const LIMIT: u32 = 1 << 17;

    /// The port a peer published, or `None` when no event-channel ABI has it (0, or at or
    /// beyond [`RemotePort::LIMIT`]): the one range check every protocol's decoder shares.
    pub const fn new(port: u32) -> Option<RemotePort> {
        if port == 0 || port >= Self::LIMIT {
            None
        } else {
            Some(RemotePort(port))
        }
    }
}

impl fmt::Display for RemotePort {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn only_plain_digits_parse() {
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_u32(b""), Err(ValueFault::Empty));
        for bad in [
            &b"-1"[..],
            b"+1",
            b" 1",
            b"1\n",
            b"0x10",
            b"12a",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(parse_u32(bad), Err(ValueFault::NotDecimal(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_u32(b"4294967296"),
            Err(ValueFault::TooLarge(_))
        ));
        assert!(matches!(
            parse_u32(b"99999999999999999999999999999999"),
            Err(ValueFault::TooLarge(_))
        ));
    }

    #[test]
    fn leading_zeros_are_refused() {
        for bad in [&b"01"[..], b"00", b"000", b"0042", b"04294967295"] {
            assert!(
                matches!(parse_u32(bad), Err(ValueFault::LeadingZero(_))),
                "{bad:?}"
            );
        }
        // A lone zero is what "%u" writes for 0; a zero inside or at the end is an ordinary digit.
        assert_eq!(parse_u32(b"0"), Ok(0));
        assert_eq!(parse_u32(b"10"), Ok(10));
        assert_eq!(parse_u32(b"1005"), Ok(1005));
        // Non-digits after a zero are still "not decimal", not a leading zero.
        assert!(matches!(parse_u32(b"0x1"), Err(ValueFault::NotDecimal(_))));
        assert_eq!(
            parse_u32(b"007").unwrap_err().to_string(),
            "value \"007\" has a leading zero"
        );
    }

    #[test]
    fn every_u32_round_trips_through_its_decimal_form() {
        for number in [0, 1, 9, 10, 99, 100, 65535, 1 << 31, u32::MAX] {
            let text = alloc::format!("{number}");
            assert_eq!(parse_u32(text.as_bytes()), Ok(number));
        }
    }

    #[test]
    fn remote_ports_are_1_up_to_the_fifo_limit() {
        assert_eq!(RemotePort::new(0), None);
        assert_eq!(RemotePort::new(1), Some(RemotePort(1)));
        assert_eq!(RemotePort::new(131071), Some(RemotePort(131071)));
        assert_eq!(RemotePort::new(131072), None);
        assert_eq!(RemotePort::new(u32::MAX), None);
    }

    #[test]
    fn bad_values_are_quoted_escaped_and_cut() {
        let fault = parse_u32(b"ring\n\x00ref-that-goes-on-and-on").unwrap_err();
        assert_eq!(
            fault.to_string(),
            "non-numeric value \"ring\\n\\x00ref-that-g\""
        );
    }
}
