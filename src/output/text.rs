//! Text lines: aligned columns, one event per line, and the summary as a table.

use std::io::{self, Write};
use std::net::SocketAddr;

use chrono::FixedOffset;

use super::sink::Sink;
use super::words::{connect_result, deny_call, deny_rule, reset_way, signal_name};
use crate::model::event::{Detail, Endpoint, Event, ExitStatus, Who};
use crate::model::summary::Summary;
use crate::model::text::{duration, escape, process_field, push_escaped};

/// The text format, with timestamps in `offset`'s time zone.
pub struct Text {
    pub offset: FixedOffset,
    /// -r: the kernel's stamp at the start, for the ELAPSED column.
    pub since: Option<u64>,
    /// -W: PPID, UID and CGROUP after PID.
    pub wide: bool,
}

impl Sink for Text {
    fn header(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut line = columns(
            "TIME", "PID", "PROCESS", "EVENT", "PROTO", "LOCAL", "REMOTE", "DETAILS",
        );
        if self.wide {
            line.insert_str(TIME_WIDTH + 8, &wide_columns("PPID", "UID", "CGROUP"));
        }
        if self.since.is_some() {
            line.insert_str(TIME_WIDTH, &format!(" {:>ELAPSED_WIDTH$}", "ELAPSED"));
        }
        out.write_all(line.as_bytes())
    }

    fn event(&self, out: &mut dyn Write, ev: &Event) -> io::Result<()> {
        let mut line = text_line(ev, self.offset);
        if self.wide {
            insert_who(&mut line, ev);
        }
        if let Some(start) = self.since {
            insert_elapsed(&mut line, ev.boot_ns.saturating_sub(start));
        }
        out.write_all(line.as_bytes())
    }

    /// Titles (unless left out), then one aligned row per process and remote end.
    fn summary(&self, out: &mut dyn Write, summary: &Summary, titles: bool) -> io::Result<()> {
        // The counts' widths; the columns that come only when asked for are as wide as their titles.
        let widths: Vec<usize> = summary
            .titles()
            .iter()
            .enumerate()
            .map(|(i, t)| [7, 9, 7, 12, 12, 6].get(i).copied().unwrap_or(t.0.len()))
            .collect();
        // With rows by who the process is: UID and CGROUP after PROCESS, as -W has them.
        let wide = summary.by_identity();
        let line = |process: &str, who: (&str, &str), remote: &str, cells: Vec<String>| {
            let mut l = format!("{process:<15}");
            if wide {
                l += &format!(" {:>6} {:<21}", who.0, who.1);
            }
            l += &format!(" {remote:<41}");
            for (cell, width) in cells.iter().zip(&widths) {
                l += &format!(" {cell:>width$}");
            }
            l + "\n"
        };
        if titles {
            let titles = summary.titles().iter().map(|t| t.0.to_string()).collect();
            out.write_all(line("PROCESS", ("UID", "CGROUP"), "REMOTE", titles).as_bytes())?;
        }
        for r in summary.table() {
            let cells = r
                .cells
                .iter()
                .map(|c| c.map_or_else(|| "-".to_string(), |n| n.to_string()))
                .collect();
            let (uid, cgroup) = r.who.as_ref().map_or(("-".into(), "-".into()), |w| {
                (w.uid.to_string(), cgroup_label(w))
            });
            let process = process_field(r.process);
            out.write_all(line(&process, (&uid, &cgroup), r.remote, cells).as_bytes())?;
        }
        Ok(())
    }
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
        Detail::Connect { result, latency_ns } => {
            let _ = write!(
                line,
                "result={} latency={}",
                connect_result(*result),
                duration(*latency_ns)
            );
            push_peer(line, ev);
            Ok(())
        }
        Detail::Accept => {
            push_peer(line, ev);
            Ok(())
        }
        Detail::Send { bytes } | Detail::Recv { bytes } => {
            line.push_str("bytes=");
            push_number(line, *bytes);
            if ev.is_end_of_stream() {
                line.push_str(" eof");
            }
            if let Some(s) = ev.socket.as_ref().filter(|s| s.fds > 0) {
                line.push_str(" fds=");
                push_number(line, s.fds);
            }
            Ok(())
        }
        Detail::Deny { sendmsg, rule } => {
            write!(line, "call={} by={}", deny_call(*sendmsg), deny_rule(*rule))
        }
        Detail::Retrans { segs } => write!(line, "segs={segs}"),
        Detail::Reset { received } => {
            line.push_str(reset_way(*received));
            Ok(())
        }
        Detail::Close {
            sent,
            received,
            lifetime_ns,
            partial,
            health,
        } => {
            let _ = write!(
                line,
                "sent={sent} received={received} lifetime={}",
                duration(*lifetime_ns)
            );
            if let Some(h) = health {
                let _ = write!(
                    line,
                    " rtt={} retrans={} end={}",
                    duration(u64::from(h.rtt_us) * 1_000),
                    h.retrans,
                    h.end.name()
                );
            }
            if *partial {
                line.push_str(" partial");
            }
            Ok(())
        }
        Detail::Done {
            lifetime_ns,
            partial,
            health,
            after_close,
        } => {
            let _ = write!(
                line,
                "retrans={} after_close={after_close} lifetime={} rtt={} end={}",
                health.retrans,
                duration(*lifetime_ns),
                duration(u64::from(health.rtt_us) * 1_000),
                health.end.name()
            );
            if *partial {
                line.push_str(" partial");
            }
            Ok(())
        }
    };
}

/// `peer_pid=N peer=NAME`: a unix-domain CONNECT's or ACCEPT's peer process.
fn push_peer(line: &mut String, ev: &Event) {
    let Some(s) = &ev.socket else {
        return;
    };
    if let Some(pid) = s.peer_pid {
        if !line.is_empty() && !line.ends_with(' ') {
            line.push(' ');
        }
        line.push_str("peer_pid=");
        push_number(line, pid);
        if let Some(name) = &s.peer_process {
            line.push_str(" peer=");
            push_process(line, name);
        }
    }
}

/// The text line for an event, newline included.
///
/// Written straight into one buffer, with the layout of `columns()`: this runs for
/// every line, and intermediate strings and a general time formatter cost more
/// than the rest of sockwatch's work per event.
pub fn text_line(ev: &Event, offset: FixedOffset) -> String {
    let mut line = String::with_capacity(160);
    clock_time(&mut line, ev.time_ns, offset);
    line.push(' ');
    let pid = itoa::Buffer::new().format(ev.pid).len();
    line.extend(std::iter::repeat_n(' ', 7usize.saturating_sub(pid)));
    push_number(&mut line, ev.pid);
    line.push(' ');
    padded(&mut line, 15, |l| push_process(l, &ev.process));
    line.push(' ');
    padded(&mut line, 7, |l| {
        l.push_str(EVENT_NAMES[ev.kind() as usize])
    });
    line.push(' ');
    match &ev.socket {
        Some(s) => {
            padded(&mut line, 5, |l| l.push_str(s.protocol.name()));
            line.push(' ');
            padded(&mut line, 21, |l| push_endpoint(l, &s.local));
            line.push(' ');
            match &s.remote {
                Some(r) => padded(&mut line, 21, |l| push_endpoint(l, r)),
                None => padded(&mut line, 21, |l| l.push('*')),
            }
            line.push(' ');
        }
        None => line.push_str("-     -                     -                     "),
    }
    push_details(&mut line, ev);
    line.truncate(line.trim_end().len());
    line.push('\n');
    line
}

/// Appends a number's digits (itoa's: this runs several times a line, and
/// `write!` goes through the general formatting machinery).
fn push_number(line: &mut String, n: impl itoa::Integer) {
    line.push_str(itoa::Buffer::new().format(n));
}

/// Appends an end as `Display` writes it, an IPv4 one without `write!`.
fn push_endpoint(line: &mut String, end: &Endpoint) {
    use std::fmt::Write as _;
    match end {
        Endpoint::Unix(u) => line.push_str(&crate::model::event::unix_text(u)),
        Endpoint::Ip(SocketAddr::V4(a)) => {
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                push_number(line, octet);
            }
            line.push(':');
            push_number(line, a.port());
        }
        other => {
            let _ = write!(line, "{other}");
        }
    }
}

/// TIME's width: `HH:MM:SS.ffffff`.
const TIME_WIDTH: usize = 15;
/// ELAPSED's least width: seconds up to 999 line up.
const ELAPSED_WIDTH: usize = 10;

/// -r: the ELAPSED column, `S.ffffff` seconds (microseconds truncated, as TIME's),
/// right after TIME.
fn insert_elapsed(line: &mut String, elapsed_ns: u64) {
    let text = format!(
        " {:>ELAPSED_WIDTH$}",
        format!(
            "{}.{:06}",
            elapsed_ns / 1_000_000_000,
            elapsed_ns % 1_000_000_000 / 1_000
        )
    );
    line.insert_str(TIME_WIDTH, &text);
}

/// -W's columns, inserted after PID: PPID, UID and CGROUP.
fn wide_columns(ppid: &str, uid: &str, cgroup: &str) -> String {
    format!(" {ppid:>7} {uid:>6} {cgroup:<21}")
}

/// -W: who the process is, after PID (`-` where the kernel could not say). PID
/// ends at a fixed place: it is right-aligned in its column and never wider.
fn insert_who(line: &mut String, ev: &Event) {
    let at = TIME_WIDTH + 8 + line[TIME_WIDTH + 8..].find(' ').unwrap_or(0);
    let columns = match &ev.who {
        Some(w) => wide_columns(
            itoa::Buffer::new().format(w.ppid),
            itoa::Buffer::new().format(w.uid),
            &cgroup_label(w),
        ),
        None => wide_columns("-", "-", "-"),
    };
    line.insert_str(at, &columns);
}

/// The CGROUP column: the container or unit the path names, or the path; `-` when
/// the cgroup was gone before it was looked up.
fn cgroup_label(w: &Who) -> String {
    w.cgroup.as_deref().map_or_else(
        || "-".to_string(),
        |p| escape(crate::model::owner::label(p).as_bytes()),
    )
}

/// EVENT column names, by `Kind` (in its declaration order).
const EVENT_NAMES: [&str; 13] = [
    "FORK", "EXEC", "EXIT", "LISTEN", "CONNECT", "ACCEPT", "SEND", "RECV", "CLOSE", "DENY",
    "RETRANS", "RESET", "DONE",
];

/// `HH:MM:SS.ffffff` of the local time (microseconds truncated), as chrono's
/// `%H:%M:%S%.6f` writes it.
fn clock_time(line: &mut String, ns: i64, offset: FixedOffset) {
    let local = i128::from(ns) + i128::from(offset.local_minus_utc()) * 1_000_000_000;
    let secs = local.div_euclid(1_000_000_000).rem_euclid(86_400) as u32;
    let micros = (local.rem_euclid(1_000_000_000) / 1_000) as u32;
    let digits = |line: &mut String, n: u32, width: u32| {
        for place in (0..width).rev() {
            line.push(char::from(b'0' + (n / 10u32.pow(place) % 10) as u8));
        }
    };
    digits(line, secs / 3600, 2);
    line.push(':');
    digits(line, secs / 60 % 60, 2);
    line.push(':');
    digits(line, secs % 60, 2);
    line.push('.');
    digits(line, micros, 6);
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
