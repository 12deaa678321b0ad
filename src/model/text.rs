//! Text every layer writes and reads alike: escaped bytes, counts with their
//! nouns, durations, errno names.

use nix::errno::Errno;

/// Escapes untrusted bytes so they stay one whitespace-free field: printable ASCII
/// stays, backslash doubles, everything else (space, controls, non-ASCII) becomes \xNN.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    push_escaped(&mut s, bytes);
    s
}

pub fn push_escaped(s: &mut String, bytes: &[u8]) {
    use std::fmt::Write as _;
    for &b in bytes {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x21..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
}

/// Bytes as `escape` writes them: `\xNN` and `\\` stand for their bytes.
pub fn unescape(value: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut rest = value.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', after @ ..] => {
                out.push(b'\\');
                rest = after;
            }
            [b'x', hi, lo, after @ ..] => {
                let hex = std::str::from_utf8(&[*hi, *lo]).unwrap_or("").to_string();
                let byte = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("\\x{hex} is not a byte (\\x00 to \\xff)"))?;
                out.push(byte);
                rest = after;
            }
            _ => return Err("a backslash starts \\xNN or \\\\ only".into()),
        }
    }
    Ok(out)
}

/// The PROCESS column: never empty, so that every line keeps its columns. A process
/// may set an empty name (prctl); it prints as `-`, and a name that is `-` as `\x2d`.
pub fn process_field(name: &[u8]) -> String {
    match name {
        b"" => "-".into(),
        b"-" => "\\x2d".into(),
        _ => escape(name),
    }
}

/// A count with its noun: "1 event", "2 events".
pub fn count(n: u64, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        (_, false) => format!("{n} {noun}s"),
    }
}

/// A duration, truncated to three decimals of the largest fitting unit.
pub fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}.{:03}us", ns / 1_000, ns % 1_000),
        1_000_000..=999_999_999 => format!("{}.{:03}ms", ns / 1_000_000, ns % 1_000_000 / 1_000),
        _ => format!(
            "{}.{:03}s",
            ns / 1_000_000_000,
            ns % 1_000_000_000 / 1_000_000
        ),
    }
}

/// ECONNREFUSED for 111; "errno 999" for numbers the C library does not name.
pub fn errno_name(errno: i32) -> String {
    match Errno::from_raw(errno) {
        Errno::UnknownErrno => format!("errno{errno}"),
        e => format!("{e:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0, "event"), "0 events");
        assert_eq!(count(2, "process"), "2 processes");
        assert_eq!(count(1, "event"), "1 event");
        assert_eq!(count(2, "socket"), "2 sockets");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0ns");
        assert_eq!(duration(999), "999ns");
        assert_eq!(duration(1_000), "1.000us");
        assert_eq!(duration(12_345_678), "12.345ms");
        assert_eq!(duration(61_000_000_000), "61.000s");
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(111), "ECONNREFUSED");
        assert_eq!(errno_name(110), "ETIMEDOUT");
        assert_eq!(errno_name(9999), "errno9999");
    }
}
