//! CRC-32 (IEEE, as zlib's `crc32`) computed a byte at a time from a 1 KiB table: what grant-share's page digests and vchan's `checksum` command report.
//!
//! The `crc` crate's one-table form: crc32fast's slice-by-16 tables were 16 KiB of the
//! kernel image (issue 10 keeps it small), for a speed no peer needs: the digested bytes are
//! a few pages per session and a vchan payload, both far below what one table gives.

use crc::{Crc, Table, CRC_32_ISO_HDLC};

static CRC32: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&CRC_32_ISO_HDLC);

/// A running CRC-32.
#[derive(Clone)]
pub struct Crc32(crc::Digest<'static, u32, Table<1>>);

impl Default for Crc32 {
    fn default() -> Self {
        Crc32(CRC32.digest())
    }
}

impl Crc32 {
    /// Adds `bytes` to the digest.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The CRC-32 of everything added so far (the digest goes on).
    pub fn value(&self) -> u32 {
        self.0.clone().finalize()
    }
}

impl core::fmt::Debug for Crc32 {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(formatter, "Crc32({:08x})", self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_zlib_and_an_independent_implementation() {
        let mut digest = Crc32::default();
        assert_eq!(digest.value(), 0);
        digest.update(b"1234");
        digest.update(b"56789");
        // zlib.crc32(b"123456789") == 0xcbf43926, the CRC-32 check value.
        assert_eq!(digest.value(), 0xcbf4_3926);
        let bytes: Vec<u8> = (0..5000u32).map(|index| (index * 7 + 3) as u8).collect();
        let mut digest = Crc32::default();
        digest.update(&bytes);
        assert_eq!(digest.value(), crc32fast::hash(&bytes));
    }
}
