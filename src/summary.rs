//! `-c`/`-C`: a table of connects, accepts, bytes and closes per process and remote end.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use crate::event::{ConnectResult, Detail, Event, EventSet, Kind};
use crate::format::process_field;

/// The events a summary counts, which the kernel must report.
pub const KINDS: EventSet = EventSet(
    Kind::Connect.bit()
        | Kind::Accept.bit()
        | Kind::Send.bit()
        | Kind::Recv.bit()
        | Kind::Close.bit(),
);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Row {
    pub connects_ok: u64,
    pub connects_failed: u64,
    pub accepts: u64,
    pub sent: u64,
    pub received: u64,
    pub closed: u64,
}

/// Totals by (process name, remote end). An accepted connection's remote end is
/// the client's address with its port left out (`127.0.0.1:*`): a server gets one
/// row per client host, not one per connection.
#[derive(Debug, Default)]
pub struct Summary {
    rows: BTreeMap<(Vec<u8>, String), Row>,
    /// Accepted connections still open: (pid, local, remote).
    accepted: HashSet<(u32, SocketAddr, SocketAddr)>,
}

impl Summary {
    pub fn add(&mut self, ev: &Event) {
        let Some(socket) = &ev.socket else {
            return;
        };
        if !KINDS.contains(ev.kind()) {
            return;
        }
        let conn = socket.remote.map(|r| (ev.pid, socket.local, r));
        if ev.kind() == Kind::Accept {
            if let Some(c) = conn {
                self.accepted.insert(c);
            }
        }
        let accepted = conn.is_some_and(|c| self.accepted.contains(&c));
        let remote = match socket.remote {
            None => "*".to_string(),
            Some(SocketAddr::V4(a)) if accepted => format!("{}:*", a.ip()),
            Some(SocketAddr::V6(a)) if accepted => format!("[{}]:*", a.ip()),
            Some(r) => r.to_string(),
        };
        let row = self.rows.entry((ev.process.clone(), remote)).or_default();
        match &ev.detail {
            Detail::Connect {
                result: ConnectResult::Ok,
                ..
            } => row.connects_ok += 1,
            Detail::Connect { .. } => row.connects_failed += 1,
            Detail::Accept => row.accepts += 1,
            Detail::Send { bytes } => row.sent += bytes,
            Detail::Recv { bytes } => row.received += bytes,
            Detail::Close { .. } => {
                row.closed += 1;
                if let Some(c) = conn {
                    self.accepted.remove(&c);
                }
            }
            _ => {}
        }
    }

    pub fn rows(&self) -> impl Iterator<Item = (&[u8], &str, &Row)> {
        self.rows
            .iter()
            .map(|((p, r), row)| (p.as_slice(), r.as_str(), row))
    }

    /// The table as text: a header, then one aligned row per process and remote end.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let line = |cells: [&str; 8]| {
            let [p, r, co, cf, a, s, rc, cl] = cells;
            format!("{p:<15} {r:<41} {co:>7} {cf:>9} {a:>7} {s:>12} {rc:>12} {cl:>6}\n")
        };
        out.write_all(
            line([
                "PROCESS",
                "REMOTE",
                "CONN-OK",
                "CONN-FAIL",
                "ACCEPTS",
                "SENT",
                "RECEIVED",
                "CLOSED",
            ])
            .as_bytes(),
        )?;
        for (process, remote, r) in self.rows() {
            let n = [
                r.connects_ok,
                r.connects_failed,
                r.accepts,
                r.sent,
                r.received,
                r.closed,
            ]
            .map(|v| v.to_string());
            out.write_all(
                line([
                    &process_field(process),
                    remote,
                    &n[0],
                    &n[1],
                    &n[2],
                    &n[3],
                    &n[4],
                    &n[5],
                ])
                .as_bytes(),
            )?;
        }
        Ok(())
    }

    /// The table as NDJSON: one object per row.
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        #[derive(Serialize)]
        struct JsonRow<'a> {
            summary: bool,
            process: String,
            remote: &'a str,
            #[serde(flatten)]
            counts: &'a Row,
        }
        for (process, remote, counts) in self.rows() {
            let row = JsonRow {
                summary: true,
                process: String::from_utf8_lossy(process).into_owned(),
                remote,
                counts,
            };
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Protocol, Socket};

    fn ev(process: &str, pid: u32, local: &str, remote: Option<&str>, detail: Detail) -> Event {
        Event {
            time_ns: 0,
            pid,
            tid: pid,
            process: process.as_bytes().to_vec(),
            socket: Some(Socket {
                protocol: Protocol::Tcp,
                local: local.parse().unwrap(),
                remote: remote.map(|r| r.parse().unwrap()),
            }),
            detail,
        }
    }

    fn close(sent: u64, received: u64) -> Detail {
        Detail::Close {
            sent,
            received,
            lifetime_ns: 1,
            partial: false,
        }
    }

    fn sample() -> Summary {
        let mut s = Summary::default();
        let db = Some("127.0.0.1:5432");
        for (port, ok) in [("127.0.0.1:40001", true), ("127.0.0.1:40002", false)] {
            let result = if ok {
                ConnectResult::Ok
            } else {
                ConnectResult::Failed(111)
            };
            s.add(&ev(
                "app",
                7,
                port,
                db,
                Detail::Connect {
                    result,
                    latency_ns: 5,
                },
            ));
        }
        s.add(&ev(
            "app",
            7,
            "127.0.0.1:40001",
            db,
            Detail::Send { bytes: 10 },
        ));
        s.add(&ev(
            "app",
            7,
            "127.0.0.1:40001",
            db,
            Detail::Recv { bytes: 32 },
        ));
        s.add(&ev("app", 7, "127.0.0.1:40001", db, close(10, 32)));
        // Two connections accepted from one client host: one row.
        for port in ["127.0.0.1:50001", "127.0.0.1:50002"] {
            let c = Some(port);
            s.add(&ev("db", 9, "127.0.0.1:5432", c, Detail::Accept));
            s.add(&ev("db", 9, "127.0.0.1:5432", c, Detail::Recv { bytes: 4 }));
            s.add(&ev("db", 9, "127.0.0.1:5432", c, close(0, 4)));
        }
        s.add(&ev(
            "db",
            9,
            "0.0.0.0:5432",
            None,
            Detail::Listen { backlog: Some(1) },
        ));
        s
    }

    #[test]
    fn rows_by_process_and_remote() {
        let s = sample();
        let rows: Vec<(String, String, Row)> = s
            .rows()
            .map(|(p, r, row)| (String::from_utf8_lossy(p).into(), r.to_string(), *row))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "app".into(),
                    "127.0.0.1:5432".into(),
                    Row {
                        connects_ok: 1,
                        connects_failed: 1,
                        accepts: 0,
                        sent: 10,
                        received: 32,
                        closed: 1
                    }
                ),
                (
                    "db".into(),
                    "127.0.0.1:*".into(),
                    Row {
                        connects_ok: 0,
                        connects_failed: 0,
                        accepts: 2,
                        sent: 0,
                        received: 8,
                        closed: 2
                    }
                ),
            ]
        );
        assert!(s.accepted.is_empty());
    }

    #[test]
    fn text_and_json() {
        let s = sample();
        let mut text = Vec::new();
        s.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("PROCESS         REMOTE "));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["app", "127.0.0.1:5432", "1", "1", "0", "10", "32", "1"]
        );
        let mut json = Vec::new();
        s.write_json(&mut json).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(json).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            serde_json::json!({"summary": true, "process": "app", "remote": "127.0.0.1:5432",
                "connects_ok": 1, "connects_failed": 1, "accepts": 0, "sent": 10,
                "received": 32, "closed": 1})
        );
    }
}
