//! The xenbus state a peer writes into its `state` node (`public/io/xenbus.h` `enum xenbus_state`), parsed strictly.

use super::value::{parse_u32, Excerpt, ValueFault};
use core::fmt;

/// `enum xenbus_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenbusState {
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

impl XenbusState {
    /// The state for `number`, if it names one.
    pub const fn from_number(number: u32) -> Option<XenbusState> {
        Some(match number {
            0 => XenbusState::Unknown,
            1 => XenbusState::Initialising,
            2 => XenbusState::InitWait,
            3 => XenbusState::Initialised,
            4 => XenbusState::Connected,
            5 => XenbusState::Closing,
            6 => XenbusState::Closed,
            7 => XenbusState::Reconfiguring,
            8 => XenbusState::Reconfigured,
            _ => return None,
        })
    }

    /// Parses a peer-written `state` node.
    pub fn parse(value: &[u8]) -> Result<XenbusState, ValueFault> {
        let number = parse_u32(value)?;
        XenbusState::from_number(number).ok_or_else(|| ValueFault::TooLarge(Excerpt::of(value)))
    }

    /// The decimal string to write into a `state` node.
    pub const fn as_str(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }

    /// True for the states in which a peer is letting go (its grants must be unmapped).
    pub const fn is_closing(self) -> bool {
        matches!(self, XenbusState::Closing | XenbusState::Closed)
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?} ({})", self, self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips() {
        for number in 0..=8 {
            let state = XenbusState::from_number(number).unwrap();
            assert_eq!(state as u32, number);
            assert_eq!(XenbusState::parse(state.as_str().as_bytes()), Ok(state));
        }
    }

    #[test]
    fn garbage_states_are_typed_errors() {
        assert!(matches!(
            XenbusState::parse(b"9"),
            Err(ValueFault::TooLarge(_))
        ));
        assert!(matches!(
            XenbusState::parse(b"Connected"),
            Err(ValueFault::NotDecimal(_))
        ));
        assert_eq!(XenbusState::parse(b""), Err(ValueFault::Empty));
        assert!(XenbusState::Closing.is_closing() && XenbusState::Closed.is_closing());
        assert!(!XenbusState::Connected.is_closing());
    }
}
