//! `--path` and `path=`: a unix-domain address, exact or a prefix ending in `/`.

use std::fmt;

#[cfg(test)]
use crate::model::event::UnixAddr;
use crate::model::text::escape;

/// The words the kernel compares a path in (`PATH_WORDS` in sockwatch.h).
pub const WORDS: usize = 14;

/// A unix-domain address to match, as sun_path holds it (an abstract name with its
/// leading NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    bytes: Vec<u8>,
    /// Every address under a directory: the text ended in `/`.
    prefix: bool,
}

impl PathPattern {
    /// A path as sockwatch prints it: `@name` for an abstract name, `\xNN` for a
    /// byte; a trailing `/` makes it a prefix.
    pub fn parse(text: &str) -> Result<PathPattern, String> {
        let (abstract_name, rest) = match text.strip_prefix('@') {
            Some(name) => (true, name),
            None => (false, text),
        };
        let mut bytes = crate::model::text::unescape(rest)?;
        if !abstract_name && bytes.is_empty() {
            return Err("an empty path (write @NAME for an abstract name)".into());
        }
        if !abstract_name && bytes.contains(&0) {
            return Err("a path cannot hold a NUL byte".into());
        }
        if abstract_name {
            bytes.insert(0, 0);
        }
        // sun_path's size, less a path's NUL.
        let room = if abstract_name { 108 } else { 107 };
        if bytes.len() > room {
            return Err(format!(
                "longer than the {room} bytes a unix-domain address holds"
            ));
        }
        Ok(PathPattern {
            prefix: text.ends_with('/'),
            bytes,
        })
    }

    #[cfg(test)]
    pub fn matches(&self, addr: &UnixAddr) -> bool {
        let have = addr.sun_path();
        if have.is_empty() {
            return false;
        }
        if self.prefix {
            have.starts_with(&self.bytes)
        } else {
            trim_nuls(&have) == trim_nuls(&self.bytes)
        }
    }

    /// The kernel's form (`struct path_prefix`): the bytes, zero after them, and the
    /// mask of those that decide: all of them, or the prefix's.
    pub fn words(&self) -> ([u64; WORDS], [u64; WORDS]) {
        let mut value = [0u8; WORDS * 8];
        let mut mask = [0u8; WORDS * 8];
        value[..self.bytes.len()].copy_from_slice(&self.bytes);
        let decided = if self.prefix {
            self.bytes.len()
        } else {
            mask.len()
        };
        mask[..decided].fill(0xff);
        (to_words(&value), to_words(&mask))
    }
}

/// An exact match ignores NULs at the end (a path's own, as the kernel keeps it).
#[cfg(test)]
fn trim_nuls(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    &b[..end]
}

/// Bytes as the kernel's words see them in memory.
pub fn to_words(bytes: &[u8; WORDS * 8]) -> [u64; WORDS] {
    std::array::from_fn(|i| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap()))
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bytes.split_first() {
            Some((0, name)) => write!(f, "@{}", escape(name)),
            _ => f.write_str(&escape(&self.bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> UnixAddr {
        UnixAddr::Path(s.as_bytes().to_vec())
    }

    #[test]
    fn exact_and_prefix() {
        let exact = PathPattern::parse("/run/a.sock").unwrap();
        assert!(exact.matches(&path("/run/a.sock")));
        assert!(!exact.matches(&path("/run/a.sock2")));
        assert!(!exact.matches(&path("/run/a.soc")));
        let dir = PathPattern::parse("/run/").unwrap();
        assert!(dir.matches(&path("/run/a.sock")));
        assert!(!dir.matches(&path("/var/run/a.sock")));
        assert!(!dir.matches(&UnixAddr::Unnamed));
    }

    #[test]
    fn abstract_names_and_escapes() {
        let p = PathPattern::parse("@my\\x20name").unwrap();
        assert!(p.matches(&UnixAddr::Abstract(b"my name".to_vec())));
        assert!(!p.matches(&path("my name")));
        assert_eq!(p.to_string(), "@my\\x20name");
        assert!(PathPattern::parse("").is_err());
        assert!(PathPattern::parse("/a\\x00b").is_err());
        assert!(PathPattern::parse(&"x".repeat(108)).is_err());
        assert!(PathPattern::parse(&format!("@{}", "x".repeat(107))).is_ok());
    }

    #[test]
    fn words_mask_what_decides() {
        let (value, mask) = PathPattern::parse("/ab/").unwrap().words();
        assert_eq!(value[0].to_ne_bytes()[..5], *b"/ab/\0");
        assert_eq!(mask[0].to_ne_bytes(), [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(mask[1], 0);
        let (_, mask) = PathPattern::parse("/ab").unwrap().words();
        assert!(mask.iter().all(|&w| w == !0));
    }
}
