//! Turning events into text lines or NDJSON: pure functions of (event, style).

use std::io::{self, Write};

use chrono::{DateTime, FixedOffset};
use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::Serialize;

use crate::event::{ConnectResult, Detail, Event, ExitStatus};

/// The output format: text lines, or one JSON object per line (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub format: Format,
    /// The local time zone's offset, for timestamps.
    pub offset: FixedOffset,
}

/// The text columns: the header and every line go through this one layout.
#[allow(clippy::too_many_arguments)]
fn columns(
    time: &str,
    pid: &str,
    process: &str,
    event: &str,
    proto: &str,
    local: &str,
    remote: &str,
    details: &str,
) -> String {
    let line = format!(
        "{time:<15} {pid:>7} {process:<15} {event:<7} {proto:<5} {local:<21} {remote:<21} {details}"
    );
    let mut line = line.trim_end().to_string();
    line.push('\n');
    line
}

/// Writes the text column header.
pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(
        columns(
            "TIME", "PID", "PROCESS", "EVENT", "PROTO", "LOCAL", "REMOTE", "DETAILS",
        )
        .as_bytes(),
    )
}

/// Writes one event as one line.
pub fn write_event(out: &mut impl Write, ev: &Event, style: Style) -> io::Result<()> {
    match style.format {
        Format::Json => {
            serde_json::to_writer(&mut *out, &JsonEvent::new(ev, style.offset))?;
            out.write_all(b"\n")
        }
        Format::Text => out.write_all(text_line(ev, style.offset).as_bytes()),
    }
}

fn time(ns: i64, offset: FixedOffset) -> DateTime<FixedOffset> {
    DateTime::from_timestamp_nanos(ns).with_timezone(&offset)
}

/// Escapes untrusted bytes so they stay one whitespace-free field: printable ASCII
/// stays, backslash doubles, everything else (space, controls, non-ASCII) becomes \xNN.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    push_escaped(&mut s, bytes);
    s
}

fn push_escaped(s: &mut String, bytes: &[u8]) {
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

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{signal}"))
}

fn connect_result(result: ConnectResult) -> String {
    match result {
        ConnectResult::Ok => "ok".into(),
        ConnectResult::Failed(errno) => errno_name(errno),
        ConnectResult::Aborted => "aborted".into(),
    }
}

/// The refused call: `connect`, or `sendmsg` for a datagram sent to an address.
fn deny_call(sendmsg: bool) -> &'static str {
    if sendmsg {
        "sendmsg"
    } else {
        "connect"
    }
}

/// What refused it: `deny#N` (the Nth --deny), or `allow` (no --allow fitted).
fn deny_rule(rule: Option<usize>) -> String {
    rule.map_or_else(|| "allow".into(), |i| format!("deny#{}", i + 1))
}

/// The DETAILS column alone, for the property tests' reference line.
#[cfg(test)]
pub(crate) fn details(ev: &Event) -> String {
    let mut s = String::new();
    push_details(&mut s, ev);
    s
}

/// The DETAILS column, written in place: no string of its own for the common events.
fn push_details(line: &mut String, ev: &Event) {
    use std::fmt::Write as _;
    let _ = match &ev.detail {
        Detail::Fork { ppid } => write!(line, "ppid={ppid}"),
        Detail::Exec {
            filename,
            ppid,
            cut,
        } => {
            let cut = if *cut { " path-cut" } else { "" };
            write!(line, "path={} ppid={ppid}{cut}", escape(filename))
        }
        Detail::Exit(ExitStatus::Code(code)) => write!(line, "exit_code={code}"),
        Detail::Exit(ExitStatus::Signal { signal, core }) => write!(
            line,
            "signal={}{}",
            signal_name(*signal),
            if *core { " core_dumped" } else { "" }
        ),
        Detail::Listen { backlog: Some(b) } => write!(line, "backlog={b}"),
        Detail::Listen { backlog: None } => Ok(()),
        Detail::Connect { result, latency_ns } => write!(
            line,
            "result={} latency={}",
            connect_result(*result),
            duration(*latency_ns)
        ),
        Detail::Accept => Ok(()),
        Detail::Send { bytes } => write!(line, "bytes={bytes}"),
        Detail::Recv { bytes } if ev.is_end_of_stream() => write!(line, "bytes={bytes} eof"),
        Detail::Recv { bytes } => write!(line, "bytes={bytes}"),
        Detail::Deny { sendmsg, rule } => {
            write!(line, "call={} by={}", deny_call(*sendmsg), deny_rule(*rule))
        }
        Detail::Close {
            sent,
            received,
            lifetime_ns,
            partial,
        } => write!(
            line,
            "sent={sent} received={received} lifetime={}{}",
            duration(*lifetime_ns),
            if *partial { " partial" } else { "" }
        ),
    };
}

/// The text line for an event, newline included.
///
/// Written straight into one buffer, with the layout of `columns()`: this runs for
/// every line, and intermediate strings and a general time formatter cost more
/// than the rest of sockwatch's work per event.
pub fn text_line(ev: &Event, offset: FixedOffset) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(160);
    clock_time(&mut line, ev.time_ns, offset);
    let _ = write!(line, " {:>7} ", ev.pid);
    padded(&mut line, 15, |l| push_process(l, &ev.process));
    let _ = write!(line, " {:<7} ", EVENT_NAMES[ev.kind() as usize]);
    match &ev.socket {
        Some(s) => {
            let _ = write!(line, "{:<5} {:<21} ", s.protocol.name(), s.local);
            match s.remote {
                Some(r) => write!(line, "{r:<21} "),
                None => write!(line, "{:<21} ", "*"),
            }
            .ok();
        }
        None => line.push_str("-     -                     -                     "),
    }
    push_details(&mut line, ev);
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

/// EVENT column names, by `Kind` (in its declaration order).
const EVENT_NAMES: [&str; 10] = [
    "FORK", "EXEC", "EXIT", "LISTEN", "CONNECT", "ACCEPT", "SEND", "RECV", "CLOSE", "DENY",
];

/// `HH:MM:SS.ffffff` of the local time (microseconds truncated), as chrono's
/// `%H:%M:%S%.6f` writes it.
fn clock_time(line: &mut String, ns: i64, offset: FixedOffset) {
    use std::fmt::Write as _;
    let local = i128::from(ns) + i128::from(offset.local_minus_utc()) * 1_000_000_000;
    let secs = local.div_euclid(1_000_000_000).rem_euclid(86_400);
    let micros = local.rem_euclid(1_000_000_000) / 1_000;
    let _ = write!(
        line,
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        micros
    );
}

/// Runs `write`, then pads what it wrote with spaces to `width` characters.
fn padded(line: &mut String, width: usize, write: impl FnOnce(&mut String)) {
    let start = line.len();
    write(line);
    let written = line[start..].chars().count();
    line.extend(std::iter::repeat_n(' ', width.saturating_sub(written)));
}

/// The PROCESS column's text (see `process_field`), written in place.
fn push_process(line: &mut String, name: &[u8]) {
    match name {
        b"" => line.push('-'),
        b"-" => line.push_str("\\x2d"),
        _ => push_escaped(line, name),
    }
}

/// The NDJSON object for an event; keys are documented in the README.
#[derive(Serialize, Default)]
struct JsonEvent {
    time: String,
    pid: u32,
    tid: u32,
    process: String,
    event: &'static str,
    #[serde(flatten)]
    socket: Option<JsonSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_cut: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    core_dumped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backlog: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ppid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eof: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lifetime_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    partial: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

#[derive(Serialize)]
struct JsonSocket {
    protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_port: Option<u16>,
    remote_addr: Option<String>,
    remote_port: Option<u16>,
}

impl JsonEvent {
    fn new(ev: &Event, offset: FixedOffset) -> JsonEvent {
        let mut j = JsonEvent {
            time: time(ev.time_ns, offset)
                .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
                .to_string(),
            pid: ev.pid,
            tid: ev.tid,
            process: String::from_utf8_lossy(&ev.process).into_owned(),
            event: ev.kind().name(),
            socket: ev.socket.as_ref().map(|s| JsonSocket {
                protocol: s.protocol.name(),
                local_addr: s.local.ip().map(|ip| ip.to_string()),
                local_port: s.local.port(),
                remote_addr: s.remote.and_then(|r| r.ip()).map(|ip| ip.to_string()),
                remote_port: s.remote.and_then(|r| r.port()),
            }),
            ..Default::default()
        };
        match &ev.detail {
            Detail::Fork { ppid } => j.ppid = Some(*ppid),
            Detail::Exec {
                filename,
                ppid,
                cut,
            } => {
                j.path = Some(String::from_utf8_lossy(filename).into());
                j.path_cut = cut.then_some(true);
                j.ppid = Some(*ppid);
            }
            Detail::Exit(ExitStatus::Code(code)) => j.exit_code = Some(*code),
            Detail::Exit(ExitStatus::Signal { signal, core }) => {
                j.signal = Some(signal_name(*signal));
                j.core_dumped = Some(*core);
            }
            Detail::Listen { backlog } => j.backlog = *backlog,
            Detail::Connect { result, latency_ns } => {
                j.result = Some(connect_result(*result));
                j.latency_ns = Some(*latency_ns);
            }
            Detail::Accept => {}
            Detail::Send { bytes } => j.bytes = Some(*bytes),
            Detail::Recv { bytes } => {
                j.bytes = Some(*bytes);
                j.eof = Some(ev.is_end_of_stream());
            }
            Detail::Deny { sendmsg, rule } => {
                j.call = Some(deny_call(*sendmsg));
                j.by = Some(deny_rule(*rule));
            }
            Detail::Close {
                sent,
                received,
                lifetime_ns,
                partial,
            } => {
                j.sent = Some(*sent);
                j.received = Some(*received);
                j.lifetime_ns = Some(*lifetime_ns);
                j.partial = Some(*partial);
            }
        }
        j
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Protocol, Socket};

    const UTC: Style = Style {
        format: Format::Text,
        offset: match FixedOffset::east_opt(0) {
            Some(o) => o,
            None => unreachable!(),
        },
    };
    const JSON: Style = Style {
        format: Format::Json,
        ..UTC
    };
    // 2026-11-26T09:30:05.123456789Z
    const T: i64 = 1_795_685_405_123_456_789;

    fn ev(process: &[u8], socket: Option<Socket>, detail: Detail) -> Event {
        Event {
            time_ns: T,
            pid: 4242,
            tid: 4243,
            process: process.to_vec(),
            socket,
            detail,
            matched: 0,
        }
    }

    fn tcp(local: &str, remote: Option<&str>) -> Option<Socket> {
        Some(Socket {
            protocol: Protocol::Tcp,
            local: local.parse().unwrap(),
            remote: remote.map(|r| r.parse().unwrap()),
            accepted: false,
        })
    }

    fn text(e: &Event) -> String {
        let mut v = Vec::new();
        write_event(&mut v, e, UTC).unwrap();
        String::from_utf8(v).unwrap()
    }

    fn json(e: &Event) -> String {
        let mut v = Vec::new();
        write_event(&mut v, e, JSON).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn header_matches_columns() {
        const HEADER: &str = "TIME                PID PROCESS         EVENT   PROTO LOCAL                 REMOTE                DETAILS";
        let mut header = Vec::new();
        write_header(&mut header).unwrap();
        assert_eq!(String::from_utf8(header).unwrap(), format!("{HEADER}\n"));
        let line = text(&ev(
            b"echo-server",
            tcp("127.0.0.1:7000", Some("127.0.0.1:51234")),
            Detail::Send { bytes: 1 },
        ));
        // Every column starts under its title, but PID, which is right-aligned.
        let starts = |s: &str| -> Vec<usize> {
            let b = s.as_bytes();
            (0..b.len())
                .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
                .collect()
        };
        let (h, l) = (starts(HEADER), starts(&line));
        assert_eq!(h.len(), l.len(), "{line}");
        assert_eq!(h[0], l[0]);
        assert_eq!(h[1] + "PID".len(), l[1] + "4242".len(), "{line}");
        assert_eq!(h[2..], l[2..], "{line}");
    }

    #[test]
    fn text_lines() {
        assert_eq!(
            text(&ev(
                b"echo-server",
                tcp("127.0.0.1:7000", Some("127.0.0.1:51234")),
                Detail::Send { bytes: 5 }
            )),
            "09:30:05.123456    4242 echo-server     SEND    tcp   127.0.0.1:7000        127.0.0.1:51234       bytes=5\n"
        );
        assert_eq!(
            text(&ev(b"srv", tcp("[::1]:7000", None), Detail::Listen { backlog: Some(128) })),
            "09:30:05.123456    4242 srv             LISTEN  tcp   [::1]:7000            *                     backlog=128\n"
        );
        assert_eq!(
            text(&ev(
                b"curl",
                tcp("127.0.0.1:40000", Some("127.0.0.1:1")),
                Detail::Connect {
                    result: ConnectResult::Failed(111),
                    latency_ns: 81_234
                }
            )),
            "09:30:05.123456    4242 curl            CONNECT tcp   127.0.0.1:40000       127.0.0.1:1           result=ECONNREFUSED latency=81.234us\n"
        );
        assert_eq!(
            text(&ev(
                b"curl",
                None,
                Detail::Exec {
                    filename: b"/usr/bin/curl".to_vec(),
                    ppid: 4000,
                    cut: false,
                }
            )),
            "09:30:05.123456    4242 curl            EXEC    -     -                     -                     path=/usr/bin/curl ppid=4000\n"
        );
        assert_eq!(
            text(&ev(
                b"sh",
                None,
                Detail::Exec {
                    filename: b"/very/long/pa".to_vec(),
                    ppid: 1,
                    cut: true,
                }
            )),
            "09:30:05.123456    4242 sh              EXEC    -     -                     -                     path=/very/long/pa ppid=1 path-cut\n"
        );
        assert_eq!(
            text(&ev(b"nginx", None, Detail::Fork { ppid: 4000 })),
            "09:30:05.123456    4242 nginx           FORK    -     -                     -                     ppid=4000\n"
        );
        let udp = Some(Socket {
            protocol: Protocol::Udp,
            local: "0.0.0.0:53".parse().unwrap(),
            remote: None,
            accepted: false,
        });
        assert_eq!(
            text(&ev(b"dnsmasq", udp, Detail::Listen { backlog: None })),
            "09:30:05.123456    4242 dnsmasq         LISTEN  udp   0.0.0.0:53            *\n"
        );
        assert_eq!(
            text(&ev(
                b"srv",
                tcp("127.0.0.1:7000", Some("127.0.0.1:5")),
                Detail::Close {
                    sent: 10,
                    received: 20,
                    lifetime_ns: 1_500_000_000,
                    partial: true
                }
            )),
            "09:30:05.123456    4242 srv             CLOSE   tcp   127.0.0.1:7000        127.0.0.1:5           sent=10 received=20 lifetime=1.500s partial\n"
        );
    }

    #[test]
    fn recv_of_zero_on_a_stream_is_eof() {
        let line = text(&ev(
            b"srv",
            tcp("127.0.0.1:7000", Some("127.0.0.1:5")),
            Detail::Recv { bytes: 0 },
        ));
        assert!(line.ends_with("bytes=0 eof\n"), "{line}");
    }

    #[test]
    fn exit_lines() {
        let line = text(&ev(b"srv", None, Detail::Exit(ExitStatus::Code(3))));
        assert!(line.ends_with(" exit_code=3\n"), "{line}");
        let line = text(&ev(
            b"srv",
            None,
            Detail::Exit(ExitStatus::Signal {
                signal: 9,
                core: false,
            }),
        ));
        assert!(line.ends_with(" signal=SIGKILL\n"), "{line}");
    }

    #[test]
    fn hostile_names_stay_on_one_line() {
        let line = text(&ev(b"x\nFAKE \"q\"\t\\\xff", None, Detail::Accept));
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.contains(r#"x\x0aFAKE\x20"q"\x09\\\xff"#), "{line}");
        assert_eq!(line.split_whitespace().count(), 7, "{line}");
    }

    #[test]
    fn empty_and_dash_names_keep_the_columns() {
        let e = ev(b"", None, Detail::Accept);
        assert_eq!(text(&e).split_whitespace().nth(2), Some("-"));
        let e = ev(b"-", None, Detail::Accept);
        assert_eq!(text(&e).split_whitespace().nth(2), Some("\\x2d"));
    }

    #[test]
    fn hostile_names_make_valid_json() {
        let out = json(&ev(b"x\nFAKE \"q\"\t\\\xff", None, Detail::Accept));
        assert_eq!(out.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["process"], "x\nFAKE \"q\"\t\\\u{fffd}");
    }

    #[test]
    fn json_object() {
        let out = json(&ev(
            b"srv",
            tcp("127.0.0.1:7000", Some("127.0.0.1:5")),
            Detail::Close {
                sent: 10,
                received: 20,
                lifetime_ns: 7,
                partial: false,
            },
        ));
        assert_eq!(
            out,
            concat!(
                r#"{"time":"2026-11-26T09:30:05.123456+00:00","pid":4242,"tid":4243,"process":"srv","#,
                r#""event":"close","protocol":"tcp","local_addr":"127.0.0.1","local_port":7000,"#,
                r#""remote_addr":"127.0.0.1","remote_port":5,"sent":10,"received":20,"lifetime_ns":7,"#,
                r#""partial":false}"#,
                "\n"
            )
        );
        let out = json(&ev(
            b"srv",
            tcp("0.0.0.0:7000", None),
            Detail::Listen { backlog: Some(5) },
        ));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["remote_addr"], serde_json::Value::Null);
        assert_eq!(v["backlog"], 5);
        let out = json(&ev(b"srv", None, Detail::Exit(ExitStatus::Code(0))));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["exit_code"], 0);
        assert!(v.get("protocol").is_none());
    }

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

    #[test]
    fn a_denied_call_says_which_and_what_refused_it() {
        let deny = |sendmsg, rule| {
            ev(
                b"curl",
                tcp("0.0.0.0:0", Some("10.0.0.1:443")),
                Detail::Deny { sendmsg, rule },
            )
        };
        let line = text(&deny(false, Some(1)));
        assert!(
            line.ends_with(" DENY    tcp   0.0.0.0:0             10.0.0.1:443          call=connect by=deny#2\n"),
            "{line}"
        );
        assert!(text(&deny(true, None)).ends_with(" call=sendmsg by=allow\n"));
        let j = json(&deny(true, None));
        assert!(j.contains(r#""event":"deny""#), "{j}");
        assert!(j.contains(r#""call":"sendmsg","by":"allow""#), "{j}");
    }
}
