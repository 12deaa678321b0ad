//! NDJSON: one object per event, and one per summary row.

use std::io::{self, Write};

use chrono::FixedOffset;
use serde::Serialize;

use super::sink::Sink;
use super::words::{connect_result, deny_call, deny_rule, reset_way, signal_name, time};
use crate::model::event::{Detail, Endpoint, Event, ExitStatus, Socket, UnixAddr, Who};
use crate::model::summary::Summary;

/// The JSON format, with timestamps in `offset`'s time zone.
pub struct Json {
    pub offset: FixedOffset,
    /// -r: the kernel's stamp at the start, for `elapsed_ns`.
    pub since: Option<u64>,
}

impl Sink for Json {
    /// None: every object names its keys.
    fn header(&self, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }

    fn event(&self, out: &mut dyn Write, ev: &Event) -> io::Result<()> {
        let mut j = JsonEvent::new(ev, self.offset);
        j.elapsed_ns = self.since.map(|start| ev.boot_ns.saturating_sub(start));
        serde_json::to_writer(&mut *out, &j)?;
        out.write_all(b"\n")
    }

    /// One object per row, with the counted columns.
    fn summary(&self, out: &mut dyn Write, summary: &Summary, _titles: bool) -> io::Result<()> {
        let keys = summary.titles();
        for r in summary.table() {
            let mut row = serde_json::Map::new();
            row.insert("summary".into(), true.into());
            row.insert(
                "process".into(),
                String::from_utf8_lossy(r.process).into_owned().into(),
            );
            if let Some(w) = &r.who {
                if let serde_json::Value::Object(who) = serde_json::to_value(JsonWho::new(w))? {
                    row.extend(who);
                }
            }
            row.insert("remote".into(), r.remote.into());
            for ((_, key), cell) in keys.iter().zip(r.cells) {
                if let Some(n) = cell {
                    row.insert((*key).into(), n.into());
                }
            }
            serde_json::to_writer(&mut *out, &row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The NDJSON object for an event; keys are documented in the README.
#[derive(Serialize, Default)]
struct JsonEvent {
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    elapsed_ns: Option<u64>,
    pid: u32,
    tid: u32,
    process: String,
    #[serde(flatten)]
    who: Option<JsonWho>,
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
    rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retrans: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retrans_after_close: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    call: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

/// Who the process is (`ppid` goes with the event's other keys).
#[derive(Serialize)]
struct JsonWho {
    uid: u32,
    /// The path, or null where the cgroup was gone before sockwatch looked.
    cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

impl JsonWho {
    fn new(w: &Who) -> JsonWho {
        let owner = w
            .cgroup
            .as_deref()
            .map(crate::model::owner::owner)
            .unwrap_or_default();
        let (container_runtime, container_id) = owner.container.unzip();
        JsonWho {
            uid: w.uid,
            cgroup: w.cgroup.clone(),
            container_id,
            container_runtime,
            pod: owner.pod,
            unit: owner.unit,
        }
    }
}

#[derive(Serialize)]
struct JsonSocket {
    protocol: &'static str,
    #[serde(flatten)]
    ip: Option<JsonIp>,
    #[serde(flatten)]
    unix: Option<JsonUnix>,
}

#[derive(Serialize)]
struct JsonIp {
    #[serde(skip_serializing_if = "Option::is_none")]
    local_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_port: Option<u16>,
    remote_addr: Option<String>,
    remote_port: Option<u16>,
}

/// A unix-domain socket: a path as it is, `@name` for an abstract name (with
/// `*_abstract`), `""` unnamed; `remote_path` null without a peer.
#[derive(Serialize)]
struct JsonUnix {
    socket_type: &'static str,
    local_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_abstract: Option<bool>,
    remote_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_abstract: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_process: Option<String>,
    /// SEND, RECV: descriptors passed (SCM_RIGHTS).
    #[serde(skip_serializing_if = "Option::is_none")]
    fds: Option<u8>,
}

/// A unix-domain address's JSON string, and whether it is abstract.
fn json_unix(end: &Endpoint) -> (String, Option<bool>) {
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match end.unix() {
        Some(UnixAddr::Path(p)) => (lossy(p), None),
        Some(UnixAddr::Abstract(name)) => (format!("@{}", lossy(name)), Some(true)),
        _ => (String::new(), None),
    }
}

impl JsonSocket {
    fn new(s: &Socket) -> JsonSocket {
        let Some(socket_type) = s.protocol.unix_type() else {
            return JsonSocket {
                protocol: s.protocol.name(),
                ip: Some(JsonIp {
                    local_addr: s.local.ip().map(|ip| ip.to_string()),
                    local_port: s.local.port(),
                    remote_addr: s
                        .remote
                        .as_ref()
                        .and_then(|r| r.ip())
                        .map(|ip| ip.to_string()),
                    remote_port: s.remote.as_ref().and_then(|r| r.port()),
                }),
                unix: None,
            };
        };
        let (local_path, local_abstract) = json_unix(&s.local);
        let remote = s.remote.as_ref().map(json_unix);
        JsonSocket {
            protocol: "unix",
            ip: None,
            unix: Some(JsonUnix {
                socket_type,
                local_path,
                local_abstract,
                remote_abstract: remote.as_ref().and_then(|r| r.1),
                remote_path: remote.map(|r| r.0),
                peer_pid: s.peer_pid,
                peer_process: s
                    .peer_process
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                fds: (s.fds > 0).then_some(s.fds),
            }),
        }
    }
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
            who: ev.who.as_ref().map(JsonWho::new),
            ppid: ev.who.as_ref().map(|w| w.ppid),
            socket: ev.socket.as_ref().map(JsonSocket::new),
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
            Detail::Retrans { segs } => j.segs = Some(*segs),
            Detail::Reset { received } => j.direction = Some(reset_way(*received)),
            Detail::Close {
                sent,
                received,
                lifetime_ns,
                partial,
                health,
            } => {
                j.sent = Some(*sent);
                j.received = Some(*received);
                j.lifetime_ns = Some(*lifetime_ns);
                j.partial = Some(*partial);
                if let Some(h) = health {
                    j.rtt_us = Some(h.rtt_us);
                    j.retrans = Some(h.retrans);
                    j.end = Some(h.end.name());
                }
            }
            Detail::Done {
                lifetime_ns,
                partial,
                health,
                after_close,
            } => {
                j.lifetime_ns = Some(*lifetime_ns);
                j.partial = Some(*partial);
                j.rtt_us = Some(health.rtt_us);
                j.retrans = Some(health.retrans);
                j.retrans_after_close = Some(*after_close);
                j.end = Some(health.end.name());
            }
        }
        j
    }
}
