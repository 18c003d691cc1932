//! Parsing of the `params` node (the `target=` of `xl block-attach`) into the store to create.
//!
//! libxl writes `target` verbatim into the backend's `params` node when the backend is a driver
//! domain (`tools/libs/light/libxl_disk.c` `device_disk_add`). grantsvc understands
//! `ram:<size>`: `<size>` is decimal bytes, or decimal followed by `K`, `M` or `G` (powers of
//! 1024), a whole number of 512-byte sectors, from one sector up to [`MAX_RAM_DISK_BYTES`].

use crate::abi::blkif::SECTOR_SIZE;
use crate::peer::value::Excerpt;
use core::fmt;

/// The largest RAM disk a `params` node may ask for (1 TiB): far above any budget, but low
/// enough that every byte count and sector count stays far from overflow.
pub const MAX_RAM_DISK_BYTES: u64 = 1 << 40;

/// A store named by `params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A zeroed disk of this many bytes in grantsvc's memory.
    Ram { bytes: u64 },
}

/// Why a `params` value was refused (written to the backend's `error` node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetFault {
    /// Not `ram:` followed by something.
    UnknownKind(Excerpt),
    /// The size is not decimal digits with an optional `K`/`M`/`G`.
    BadSize(Excerpt),
    /// Zero bytes.
    Empty,
    /// Not a whole number of 512-byte sectors.
    NotWholeSectors { bytes: u64 },
    /// Above [`MAX_RAM_DISK_BYTES`].
    TooLarge { bytes: u64 },
}

impl fmt::Display for TargetFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetFault::UnknownKind(excerpt) => {
                write!(formatter, "target {excerpt} is not ram:<size>")
            }
            TargetFault::BadSize(excerpt) => write!(
                formatter,
                "size {excerpt} is not a decimal number with an optional K, M or G"
            ),
            TargetFault::Empty => formatter.write_str("a disk of 0 bytes"),
            TargetFault::NotWholeSectors { bytes } => {
                write!(
                    formatter,
                    "{bytes} bytes is not a whole number of 512-byte sectors"
                )
            }
            TargetFault::TooLarge { bytes } => write!(
                formatter,
                "{bytes} bytes is more than the {MAX_RAM_DISK_BYTES}-byte limit"
            ),
        }
    }
}

impl Target {
    /// Parses a `params` value.
    pub fn parse(params: &[u8]) -> Result<Target, TargetFault> {
        let size = params
            .strip_prefix(b"ram:")
            .ok_or_else(|| TargetFault::UnknownKind(Excerpt::of(params)))?;
        let bad = || TargetFault::BadSize(Excerpt::of(size));
        let (digits, shift) = match size.split_last() {
            Some((b'K', digits)) => (digits, 10),
            Some((b'M', digits)) => (digits, 20),
            Some((b'G', digits)) => (digits, 30),
            _ => (size, 0),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let mut number: u64 = 0;
        for &digit in digits {
            // Saturation stands for "too large": it is refused below either way.
            number = number
                .saturating_mul(10)
                .saturating_add(u64::from(digit - b'0'));
        }
        let bytes = number
            .checked_shl(shift)
            .filter(|bytes| bytes >> shift == number);
        let bytes = bytes.unwrap_or(u64::MAX);
        if bytes == 0 {
            return Err(TargetFault::Empty);
        }
        if bytes > MAX_RAM_DISK_BYTES {
            return Err(TargetFault::TooLarge { bytes });
        }
        if bytes % SECTOR_SIZE as u64 != 0 {
            return Err(TargetFault::NotWholeSectors { bytes });
        }
        Ok(Target::Ram { bytes })
    }

    /// Size in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        match *self {
            Target::Ram { bytes } => bytes / SECTOR_SIZE as u64,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn sizes_take_k_m_g_suffixes() {
        let parse = |text: &str| Target::parse(text.as_bytes());
        assert_eq!(parse("ram:64M"), Ok(Target::Ram { bytes: 64 << 20 }));
        assert_eq!(parse("ram:1G"), Ok(Target::Ram { bytes: 1 << 30 }));
        assert_eq!(parse("ram:4K"), Ok(Target::Ram { bytes: 4096 }));
        assert_eq!(parse("ram:512"), Ok(Target::Ram { bytes: 512 }));
        assert_eq!(parse("ram:1024G"), Ok(Target::Ram { bytes: 1 << 40 }));
        assert_eq!(parse("ram:256M").unwrap().sectors(), 524288);
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        let parse = |text: &str| Target::parse(text.as_bytes());
        assert_eq!(parse("ram:0"), Err(TargetFault::Empty));
        assert_eq!(parse("ram:0G"), Err(TargetFault::Empty));
        assert_eq!(
            parse("ram:1000"),
            Err(TargetFault::NotWholeSectors { bytes: 1000 })
        );
        assert_eq!(
            parse("ram:1025G"),
            Err(TargetFault::TooLarge { bytes: 1025 << 30 })
        );
        assert_eq!(
            parse("ram:99999999999999999999999G"),
            Err(TargetFault::TooLarge { bytes: u64::MAX })
        );
        assert_eq!(
            parse("ram:17179869184G"),
            Err(TargetFault::TooLarge { bytes: u64::MAX })
        );
        for bad in [
            "ram:", "ram:M", "ram:64m", "ram:64MB", "ram: 64M", "ram:-1", "ram:0x10", "ram:64T",
        ] {
            assert!(matches!(parse(bad), Err(TargetFault::BadSize(_))), "{bad}");
        }
        for bad in ["/dev/sda", "RAM:64M", "", "phy:ram:64M"] {
            assert!(
                matches!(parse(bad), Err(TargetFault::UnknownKind(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse("disk:1").unwrap_err().to_string(),
            "target \"disk:1\" is not ram:<size>"
        );
    }
}
