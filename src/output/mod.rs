//! Turning events into output: a `Sink` per format (`text.rs`, `json.rs`), and what
//! both write alike. Pure functions of (event, style).

use chrono::FixedOffset;

use crate::config::Format;

pub mod file;
mod json;
mod sink;
pub use sink::Sink;
#[cfg(test)]
mod properties;
#[cfg(test)]
mod summary_tests;
mod text;
mod words;
pub mod writer;

#[cfg(test)]
pub(crate) use text::{details, text_line};

/// How to print.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub format: Format,
    /// The local time zone's offset, for timestamps.
    pub offset: FixedOffset,
    /// -r: the kernel's stamp when tracing started, to print times since then.
    pub since: Option<u64>,
    /// -W: PPID, UID and CGROUP columns (text).
    pub wide: bool,
}

impl Style {
    /// The sink of this style's format.
    pub fn sink(self) -> Box<dyn Sink> {
        match self.format {
            Format::Text => Box::new(text::Text {
                offset: self.offset,
                since: self.since,
                wide: self.wide,
            }),
            Format::Json => Box::new(json::Json {
                offset: self.offset,
                since: self.since,
            }),
        }
    }
}

/// Writes one event as one line.
#[cfg(test)]
pub fn write_event(
    out: &mut impl std::io::Write,
    ev: &crate::model::event::Event,
    style: Style,
) -> std::io::Result<()> {
    style.sink().event(out, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{
        ConnectResult, Detail, Event, ExitStatus, Health, Protocol, Socket, TcpEnd, Who,
    };

    const UTC: Style = Style {
        format: Format::Text,
        offset: match FixedOffset::east_opt(0) {
            Some(o) => o,
            None => unreachable!(),
        },
        since: None,
        wide: false,
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
            boot_ns: 0,
            pid: 4242,
            tid: 4243,
            process: process.to_vec(),
            socket,
            detail,
            matched: 0,
            who: None,
        }
    }

    fn tcp(local: &str, remote: Option<&str>) -> Option<Socket> {
        Some(Socket {
            protocol: Protocol::Tcp,
            local: local.parse().unwrap(),
            remote: remote.map(|r| r.parse().unwrap()),
            accepted: false,
            peer_pid: None,
            peer_process: None,
            fds: 0,
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
        UTC.sink().header(&mut header).unwrap();
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
    fn relative_times_follow_the_wall_clock() {
        let relative = Style {
            since: Some(1_000),
            ..UTC
        };
        let mut header = Vec::new();
        relative.sink().header(&mut header).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            "TIME               ELAPSED     PID PROCESS         EVENT   PROTO LOCAL                 REMOTE                DETAILS\n"
        );
        let send = Event {
            boot_ns: 12_345_678_901_999 + 1_000,
            ..ev(
                b"srv",
                tcp("127.0.0.1:7000", Some("127.0.0.1:1")),
                Detail::Send { bytes: 5 },
            )
        };
        let line = |style: Style, e: &Event| {
            let mut v = Vec::new();
            write_event(&mut v, e, style).unwrap();
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            line(relative, &send),
            "09:30:05.123456 12345.678901    4242 srv             SEND    tcp   127.0.0.1:7000        127.0.0.1:1           bytes=5\n"
        );
        // An event stamped before the start (found in use at load) is at 0.
        let early = Event {
            boot_ns: 10,
            ..send.clone()
        };
        assert!(line(relative, &early).starts_with("09:30:05.123456   0.000000    4242 srv "));
        let json = Style {
            format: Format::Json,
            ..relative
        };
        assert!(line(json, &send).contains(r#""elapsed_ns":12345678901999,"#));
        assert!(!line(JSON, &send).contains("elapsed_ns"));
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
            peer_pid: None,
            peer_process: None,
            fds: 0,
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
                    partial: true,
                    health: Some(Health {
                        end: TcpEnd::PeerRst,
                        rtt_us: 1_234,
                        retrans: 3
                    }),
                }
            )),
            "09:30:05.123456    4242 srv             CLOSE   tcp   127.0.0.1:7000        127.0.0.1:5           sent=10 received=20 lifetime=1.500s rtt=1.234ms retrans=3 end=peer-rst partial\n"
        );
        assert_eq!(
            text(&ev(
                b"srv",
                tcp("0.0.0.0:7000", None),
                Detail::Close {
                    sent: 0,
                    received: 0,
                    lifetime_ns: 5,
                    partial: false,
                    health: None,
                }
            )),
            "09:30:05.123456    4242 srv             CLOSE   tcp   0.0.0.0:7000          *                     sent=0 received=0 lifetime=5ns\n"
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

    fn with_who(mut e: Event, cgroup: Option<&str>) -> Event {
        e.who = Some(Who {
            uid: 1000,
            ppid: 1,
            cgroup_id: 77,
            cgroup: cgroup.map(str::to_string),
        });
        e
    }

    const CONTAINER: &str = "/system.slice/docker-3f4e5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081.scope";

    #[test]
    fn wide_text_says_who_after_pid() {
        let wide = Style { wide: true, ..UTC };
        let mut header = Vec::new();
        wide.sink().header(&mut header).unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            "TIME                PID    PPID    UID CGROUP                PROCESS         EVENT   PROTO LOCAL                 REMOTE                DETAILS\n"
        );
        let line = |e: &Event| {
            let mut out = Vec::new();
            write_event(&mut out, e, wide).unwrap();
            String::from_utf8(out).unwrap()
        };
        let accept = ev(
            b"srv",
            tcp("127.0.0.1:80", Some("127.0.0.1:5")),
            Detail::Accept,
        );
        assert_eq!(
            line(&with_who(accept.clone(), Some(CONTAINER))),
            "09:30:05.123456    4242       1   1000 docker:3f4e5a6b7c8d   srv             ACCEPT  tcp   127.0.0.1:80          127.0.0.1:5\n"
        );
        // A path with a space stays one field; an unknown identity is dashes.
        assert!(line(&with_who(accept.clone(), Some("/a b"))).contains(" 1000 /a\\x20b "));
        assert_eq!(
            line(&accept),
            "09:30:05.123456    4242       -      - -                     srv             ACCEPT  tcp   127.0.0.1:80          127.0.0.1:5\n"
        );
    }

    #[test]
    fn retransmits_and_resets() {
        let socket = || tcp("10.0.0.2:5000", Some("10.0.0.1:443"));
        assert_eq!(
            text(&ev(b"curl", socket(), Detail::Retrans { segs: 3 })),
            "09:30:05.123456    4242 curl            RETRANS tcp   10.0.0.2:5000         10.0.0.1:443          segs=3\n"
        );
        assert_eq!(
            text(&ev(b"curl", socket(), Detail::Reset { received: true })),
            "09:30:05.123456    4242 curl            RESET   tcp   10.0.0.2:5000         10.0.0.1:443          received\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&ev(
            b"curl",
            socket(),
            Detail::Reset { received: false },
        )))
        .unwrap();
        assert_eq!(
            (&v["event"], &v["direction"]),
            (&"reset".into(), &"sent".into())
        );
        let v: serde_json::Value =
            serde_json::from_str(&json(&ev(b"curl", socket(), Detail::Retrans { segs: 2 })))
                .unwrap();
        assert_eq!((&v["event"], &v["segs"]), (&"retrans".into(), &2.into()));
    }

    #[test]
    fn done_gives_the_final_count_after_close() {
        let done = ev(
            b"srv",
            tcp("10.0.0.1:80", Some("10.0.0.2:5000")),
            Detail::Done {
                lifetime_ns: 4_425_000_000,
                partial: false,
                health: crate::model::event::Health {
                    end: crate::model::event::TcpEnd::LocalFin,
                    rtt_us: 1500,
                    retrans: 1105,
                },
                after_close: 964,
            },
        );
        assert_eq!(
            text(&done),
            "09:30:05.123456    4242 srv             DONE    tcp   10.0.0.1:80           10.0.0.2:5000         retrans=1105 after_close=964 lifetime=4.425s rtt=1.500ms end=local-fin\n"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&done)).unwrap();
        assert_eq!(
            (&v["event"], &v["retrans"], &v["retrans_after_close"]),
            (&"done".into(), &1105.into(), &964.into())
        );
        assert_eq!(
            (&v["lifetime_ns"], &v["end"]),
            (&4_425_000_000u64.into(), &"local-fin".into())
        );
    }

    #[test]
    fn json_says_who_on_every_event() {
        let accept = ev(
            b"srv",
            tcp("127.0.0.1:80", Some("127.0.0.1:5")),
            Detail::Accept,
        );
        let v: serde_json::Value =
            serde_json::from_str(&json(&with_who(accept.clone(), Some(CONTAINER)))).unwrap();
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["ppid"], 1);
        assert_eq!(v["cgroup"], CONTAINER);
        assert_eq!(v["container_runtime"], "docker");
        assert_eq!(v["container_id"].as_str().unwrap().len(), 64);
        assert!(v.get("unit").is_none());
        let v: serde_json::Value = serde_json::from_str(&json(&with_who(
            accept.clone(),
            Some("/system.slice/nginx.service"),
        )))
        .unwrap();
        assert_eq!(v["unit"], "nginx.service");
        assert!(v.get("container_id").is_none());
        // The cgroup was gone before sockwatch looked: null, the rest as known.
        let v: serde_json::Value =
            serde_json::from_str(&json(&with_who(accept.clone(), None))).unwrap();
        assert!(v["cgroup"].is_null());
        assert_eq!(v["uid"], 1000);
        let v: serde_json::Value = serde_json::from_str(&json(&accept)).unwrap();
        assert!(v.get("uid").is_none() && v.get("cgroup").is_none());
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
                health: Some(Health {
                    end: TcpEnd::LocalFin,
                    rtt_us: 51,
                    retrans: 0,
                }),
            },
        ));
        assert_eq!(
            out,
            concat!(
                r#"{"time":"2026-11-26T09:30:05.123456+00:00","pid":4242,"tid":4243,"process":"srv","#,
                r#""event":"close","protocol":"tcp","local_addr":"127.0.0.1","local_port":7000,"#,
                r#""remote_addr":"127.0.0.1","remote_port":5,"sent":10,"received":20,"lifetime_ns":7,"#,
                r#""partial":false,"rtt_us":51,"retrans":0,"end":"local-fin"}"#,
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
