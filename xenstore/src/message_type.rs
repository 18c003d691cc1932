//! The xenstore message types of `enum xsd_sockmsg_type` in Xen's `public/io/xs_wire.h`.

use core::fmt;

/// One message type. The numbering is the wire's; 20 (`XS_RESTRICT`) was removed from Xen and
/// is refused like any other unknown number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum MessageType {
    /// `XS_CONTROL`, also spelled `XS_DEBUG`.
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPermissions = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Remove = 13,
    SetPermissions = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MessageType {
    /// `XS_DEBUG` is another name for `XS_CONTROL`.
    pub const DEBUG: MessageType = MessageType::Control;

    /// Every known type, in wire order.
    pub const ALL: [MessageType; 22] = [
        MessageType::Control,
        MessageType::Directory,
        MessageType::Read,
        MessageType::GetPermissions,
        MessageType::Watch,
        MessageType::Unwatch,
        MessageType::TransactionStart,
        MessageType::TransactionEnd,
        MessageType::Introduce,
        MessageType::Release,
        MessageType::GetDomainPath,
        MessageType::Write,
        MessageType::Mkdir,
        MessageType::Remove,
        MessageType::SetPermissions,
        MessageType::WatchEvent,
        MessageType::Error,
        MessageType::IsDomainIntroduced,
        MessageType::Resume,
        MessageType::SetTarget,
        MessageType::ResetWatches,
        MessageType::DirectoryPart,
    ];

    /// The type with wire number `number`, or `None` for a number Xen does not define.
    pub fn from_wire(number: u32) -> Option<MessageType> {
        MessageType::ALL
            .iter()
            .copied()
            .find(|candidate| candidate.to_wire() == number)
    }

    /// The wire number of this type.
    pub const fn to_wire(self) -> u32 {
        self as u32
    }

    /// The C name of this type, for logs.
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Control => "XS_CONTROL",
            MessageType::Directory => "XS_DIRECTORY",
            MessageType::Read => "XS_READ",
            MessageType::GetPermissions => "XS_GET_PERMS",
            MessageType::Watch => "XS_WATCH",
            MessageType::Unwatch => "XS_UNWATCH",
            MessageType::TransactionStart => "XS_TRANSACTION_START",
            MessageType::TransactionEnd => "XS_TRANSACTION_END",
            MessageType::Introduce => "XS_INTRODUCE",
            MessageType::Release => "XS_RELEASE",
            MessageType::GetDomainPath => "XS_GET_DOMAIN_PATH",
            MessageType::Write => "XS_WRITE",
            MessageType::Mkdir => "XS_MKDIR",
            MessageType::Remove => "XS_RM",
            MessageType::SetPermissions => "XS_SET_PERMS",
            MessageType::WatchEvent => "XS_WATCH_EVENT",
            MessageType::Error => "XS_ERROR",
            MessageType::IsDomainIntroduced => "XS_IS_DOMAIN_INTRODUCED",
            MessageType::Resume => "XS_RESUME",
            MessageType::SetTarget => "XS_SET_TARGET",
            MessageType::ResetWatches => "XS_RESET_WATCHES",
            MessageType::DirectoryPart => "XS_DIRECTORY_PART",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xs_wire_h() {
        assert_eq!(MessageType::Control.to_wire(), 0);
        assert_eq!(MessageType::DEBUG, MessageType::Control);
        assert_eq!(MessageType::GetDomainPath.to_wire(), 10);
        assert_eq!(MessageType::WatchEvent.to_wire(), 15);
        assert_eq!(MessageType::Error.to_wire(), 16);
        assert_eq!(MessageType::SetTarget.to_wire(), 19);
        // XS_RESET_WATCHES = XS_SET_TARGET + 2: the removed XS_RESTRICT keeps its number.
        assert_eq!(MessageType::ResetWatches.to_wire(), 21);
        assert_eq!(MessageType::DirectoryPart.to_wire(), 22);
    }

    #[test]
    fn every_known_number_round_trips_and_the_rest_are_refused() {
        // Every 16-bit number; under Miri (`make miri`), where each is thousands of times
        // slower, the first 256, which hold every known type and its neighbours.
        let numbers = if cfg!(miri) { 0x100 } else { 0x1_0000u32 };
        for number in 0..numbers {
            match MessageType::from_wire(number) {
                Some(message_type) => assert_eq!(message_type.to_wire(), number),
                None => assert!(number == 20 || number > 22, "{number} refused"),
            }
        }
        assert_eq!(MessageType::from_wire(20), None);
        assert_eq!(MessageType::from_wire(0xffff), None, "XS_INVALID");
        assert_eq!(MessageType::from_wire(u32::MAX), None);
    }
}
