//! Path, token and value checks made before a request is built, following xenstored's `is_valid_nodename`.
//!
//! xenstored (Xen's `tools/xenstored/core.c`) accepts a node path that starts with `/` (or is
//! relative to the caller's home, `/local/domain/<domid>`), does not end in `/` unless it is
//! `/`, has no `//`, and uses only `A-Z a-z 0-9 - / _ @`. Absolute paths are limited to
//! `XENSTORE_ABS_PATH_MAX` bytes and relative ones to `XENSTORE_REL_PATH_MAX`. Watches may also
//! name the special events `@introduceDomain` and `@releaseDomain`. Checking here turns a typo
//! into a local error instead of an `EINVAL` round trip, and keeps NULs out of the payload.

use core::fmt;

use crate::wire::{ABSOLUTE_PATH_MAX, RELATIVE_PATH_MAX};

/// The special watch path fired when a domain is introduced to xenstored.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain dies (is released).
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

/// Why a path or token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    Empty,
    /// Longer than the limit for its kind (absolute or relative).
    TooLong {
        length: usize,
        limit: usize,
    },
    /// A byte outside `A-Z a-z 0-9 - / _ @`, at this offset.
    BadCharacter {
        offset: usize,
        byte: u8,
    },
    /// Ends in `/` and is not the root.
    TrailingSlash,
    /// Contains `//`.
    DoubleSlash,
    /// Starts with `@` but is not one of the special watch paths (or is not a watch).
    NotASpecialPath,
    /// A watch token that is empty or contains a NUL.
    BadToken,
}

impl fmt::Display for PathError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Empty => formatter.write_str("empty path"),
            PathError::TooLong { length, limit } => {
                write!(
                    formatter,
                    "path of {length} bytes over the {limit}-byte limit"
                )
            }
            PathError::BadCharacter { offset, byte } => {
                write!(
                    formatter,
                    "byte {byte:#04x} at offset {offset} not allowed in a path"
                )
            }
            PathError::TrailingSlash => formatter.write_str("path ends in '/'"),
            PathError::DoubleSlash => formatter.write_str("path contains '//'"),
            PathError::NotASpecialPath => {
                formatter.write_str("'@' path is not @introduceDomain or @releaseDomain")
            }
            PathError::BadToken => formatter.write_str("watch token empty or containing NUL"),
        }
    }
}

fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'/' | b'_' | b'@')
}

/// Checks a node path (absolute or relative to our home) for a request.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('@') {
        return Err(PathError::NotASpecialPath);
    }
    let limit = if path.starts_with('/') {
        ABSOLUTE_PATH_MAX
    } else {
        RELATIVE_PATH_MAX
    };
    if path.len() > limit {
        return Err(PathError::TooLong {
            length: path.len(),
            limit,
        });
    }
    if let Some((offset, &byte)) = path
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, byte)| !is_path_byte(**byte))
    {
        return Err(PathError::BadCharacter { offset, byte });
    }
    if path.ends_with('/') && path != "/" {
        return Err(PathError::TrailingSlash);
    }
    if path.contains("//") {
        return Err(PathError::DoubleSlash);
    }
    Ok(())
}

/// Checks a watch path: a node path, or one of the special `@` event paths.
pub fn validate_watch_path(path: &str) -> Result<(), PathError> {
    if path == INTRODUCE_DOMAIN || path == RELEASE_DOMAIN {
        return Ok(());
    }
    validate_path(path)
}

/// Checks a watch token: any non-empty bytes without NUL (NUL ends it on the wire).
pub fn validate_token(token: &str) -> Result<(), PathError> {
    if token.is_empty() || token.contains('\0') {
        return Err(PathError::BadToken);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn ordinary_paths_are_accepted() {
        for path in [
            "/",
            "/local/domain/0/name",
            "device/vif/0/state",
            "data",
            "/a-b_c@d/E9",
        ] {
            assert_eq!(validate_path(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn xenstored_rules_are_enforced() {
        assert_eq!(validate_path(""), Err(PathError::Empty));
        assert_eq!(validate_path("/a/"), Err(PathError::TrailingSlash));
        assert_eq!(validate_path("a/"), Err(PathError::TrailingSlash));
        assert_eq!(validate_path("/a//b"), Err(PathError::DoubleSlash));
        assert_eq!(
            validate_path("/a b"),
            Err(PathError::BadCharacter {
                offset: 2,
                byte: b' '
            })
        );
        assert_eq!(
            validate_path("/a\0b"),
            Err(PathError::BadCharacter { offset: 2, byte: 0 })
        );
        assert_eq!(
            validate_path("/a.b"),
            Err(PathError::BadCharacter {
                offset: 2,
                byte: b'.'
            })
        );
        assert_eq!(
            validate_path("/é"),
            Err(PathError::BadCharacter {
                offset: 1,
                byte: 0xc3
            })
        );
    }

    #[test]
    fn length_limits_depend_on_absolute_or_relative() {
        let absolute: String = core::iter::once('/')
            .chain(core::iter::repeat_n('a', ABSOLUTE_PATH_MAX - 1))
            .collect();
        assert_eq!(validate_path(&absolute), Ok(()));
        let too_long = absolute.clone() + "a";
        assert_eq!(
            validate_path(&too_long),
            Err(PathError::TooLong {
                length: ABSOLUTE_PATH_MAX + 1,
                limit: ABSOLUTE_PATH_MAX
            })
        );
        let relative: String = core::iter::repeat_n('a', RELATIVE_PATH_MAX).collect();
        assert_eq!(validate_path(&relative), Ok(()));
        assert_eq!(
            validate_path(&(relative + "a")),
            Err(PathError::TooLong {
                length: RELATIVE_PATH_MAX + 1,
                limit: RELATIVE_PATH_MAX
            })
        );
    }

    #[test]
    fn special_paths_only_for_watches() {
        assert_eq!(validate_watch_path(RELEASE_DOMAIN), Ok(()));
        assert_eq!(validate_watch_path(INTRODUCE_DOMAIN), Ok(()));
        assert_eq!(
            validate_path(RELEASE_DOMAIN),
            Err(PathError::NotASpecialPath)
        );
        assert_eq!(
            validate_watch_path("@domainDied"),
            Err(PathError::NotASpecialPath)
        );
        assert_eq!(validate_watch_path("/local/domain/3"), Ok(()));
    }

    #[test]
    fn tokens_must_be_non_empty_without_nul() {
        assert_eq!(validate_token("session-3 state"), Ok(()));
        assert_eq!(validate_token(""), Err(PathError::BadToken));
        assert_eq!(validate_token("a\0b"), Err(PathError::BadToken));
    }
}
