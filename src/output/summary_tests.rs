//! The summary table as each sink writes it, from rows the model adds up.

use crate::config::Format;
use crate::model::event::{
    ConnectResult, Detail, Event, EventSet, Identity, Kind, Protocol, Socket, Tally, Who,
};
use crate::model::summary::*;
use crate::output::Style;

fn style(format: Format) -> Style {
    Style {
        format,
        offset: chrono::FixedOffset::east_opt(0).unwrap(),
        since: None,
        wide: false,
    }
}

fn write_text(s: &Summary, out: &mut Vec<u8>, titles: bool) {
    style(Format::Text).sink().summary(out, s, titles).unwrap();
}

fn write_json(s: &Summary, out: &mut Vec<u8>) {
    style(Format::Json).sink().summary(out, s, false).unwrap();
}

fn ev(process: &str, pid: u32, local: &str, remote: Option<&str>, detail: Detail) -> Event {
    Event {
        time_ns: 0,
        boot_ns: 0,
        pid,
        tid: pid,
        process: process.as_bytes().to_vec(),
        socket: Some(Socket {
            protocol: Protocol::Tcp,
            local: local.parse().unwrap(),
            remote: remote.map(|r| r.parse().unwrap()),
            accepted: false,
            peer_pid: None,
            peer_process: None,
            fds: 0,
        }),
        detail,
        matched: 0,
        who: None,
    }
}

/// The same event on the server's end of an accepted connection.
fn served(mut e: Event) -> Event {
    e.socket.as_mut().unwrap().accepted = true;
    e
}

fn close(sent: u64, received: u64) -> Detail {
    Detail::Close {
        sent,
        received,
        lifetime_ns: 1,
        partial: false,
        health: None,
    }
}

fn sample() -> Summary {
    let mut s = Summary::new(EventSet::DEFAULT, false, false);
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
    // Two connections accepted from one client host: one row, though a
    // forked child (pid 10) serves the second.
    for (port, pid) in [("127.0.0.1:50001", 9), ("127.0.0.1:50002", 10)] {
        let c = Some(port);
        s.add(&served(ev("db", 9, "127.0.0.1:5432", c, Detail::Accept)));
        s.add(&served(ev(
            "db",
            pid,
            "127.0.0.1:5432",
            c,
            Detail::Recv { bytes: 4 },
        )));
        s.add(&served(ev("db", pid, "127.0.0.1:5432", c, close(0, 4))));
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
                    closed: 1,
                    ..Row::default()
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
                    closed: 2,
                    ..Row::default()
                }
            ),
        ]
    );
}

#[test]
fn text_and_json() {
    let s = sample();
    let mut text = Vec::new();
    write_text(&s, &mut text, true);
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].starts_with("PROCESS         REMOTE "));
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["app", "127.0.0.1:5432", "1", "1", "0", "10", "32", "1"]
    );
    let mut json = Vec::new();
    write_json(&s, &mut json);
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(json).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"summary": true, "process": "app", "remote": "127.0.0.1:5432",
            "connects_ok": 1, "connects_failed": 1, "accepts": 0, "sent": 10,
            "received": 32, "closed": 1})
    );
}

#[test]
fn only_the_counted_columns_and_no_header_if_asked() {
    let mut s = Summary::new(EventSet(Kind::Send.bit() | Kind::Close.bit()), false, false);
    let c = Some("127.0.0.1:50001");
    for d in [
        Detail::Accept,
        Detail::Send { bytes: 4 },
        Detail::Recv { bytes: 9 },
    ] {
        s.add(&served(ev("db", 9, "127.0.0.1:5432", c, d)));
    }
    s.add(&served(ev("db", 9, "127.0.0.1:5432", c, close(4, 9))));
    let mut text = Vec::new();
    write_text(&s, &mut text, false);
    let text = String::from_utf8(text).unwrap();
    // The server's end is grouped by client host, whatever is counted.
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["db", "127.0.0.1:*", "-", "-", "-", "4", "-", "1"]
    );
    let mut json = Vec::new();
    write_json(&s, &mut json);
    let row: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        row,
        serde_json::json!({"summary": true, "process": "db", "remote": "127.0.0.1:*",
            "sent": 4, "closed": 1})
    );
}

#[test]
fn with_denials_a_denied_column() {
    let deny = Detail::Deny {
        sendmsg: false,
        rule: Some(0),
    };
    let mut s = Summary::new(EventSet::DEFAULT, true, false);
    s.add(&ev(
        "curl",
        7,
        "0.0.0.0:0",
        Some("10.0.0.1:443"),
        deny.clone(),
    ));
    s.add(&ev("curl", 7, "0.0.0.0:0", Some("10.0.0.1:443"), deny));
    let mut text = Vec::new();
    write_text(&s, &mut text, true);
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with(" CLOSED DENIED"), "{text}");
    assert!(
        lines[1].starts_with("curl            10.0.0.1:443 "),
        "{text}"
    );
    assert!(lines[1].ends_with("      0      2"), "{text}");
    let mut json = Vec::new();
    write_json(&s, &mut json);
    assert!(String::from_utf8(json).unwrap().contains("\"denied\":2"));
    // Without --deny or --allow, no such column.
    let mut text = Vec::new();
    write_text(
        &Summary::new(EventSet::DEFAULT, false, false),
        &mut text,
        true,
    );
    assert!(String::from_utf8(text)
        .unwrap()
        .trim_end()
        .ends_with(" CLOSED"));
}

#[test]
fn retransmits_and_resets_have_columns_when_asked_for() {
    let mut s = Summary::new(EventSet::ALL, false, false);
    let peer = Some("10.0.0.1:443");
    for segs in [3, 4] {
        s.add(&ev(
            "curl",
            7,
            "10.0.0.2:5000",
            peer,
            Detail::Retrans { segs },
        ));
    }
    s.add(&ev(
        "curl",
        7,
        "10.0.0.2:5000",
        peer,
        Detail::Reset { received: true },
    ));
    let mut text = Vec::new();
    write_text(&s, &mut text, true);
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].ends_with(" CLOSED RETRANS RESETS"), "{text}");
    assert!(lines[1].ends_with("      0       7      1"), "{text}");
    let mut json = Vec::new();
    write_json(&s, &mut json);
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.contains("\"retrans\":7") && json.contains("\"resets\":1"),
        "{json}"
    );
}

#[test]
fn rows_by_who_when_asked() {
    let id = "3f4e5a6b7c8d9e0f".repeat(4);
    let container = format!("/system.slice/docker-{id}.scope");
    let container = container.as_str();
    let who = |uid, cgroup_id, path: Option<&str>| Who {
        uid,
        ppid: 1,
        cgroup_id,
        cgroup: path.map(str::to_string),
    };
    let mut s = Summary::new(EventSet::DEFAULT, false, true);
    let peer = Some("10.0.0.1:443");
    for (uid, id, path) in [
        (0, 5, Some(container)),
        (33, 6, None),
        (0, 5, Some(container)),
    ] {
        let mut e = ev("app", 7, "10.0.0.2:5000", peer, Detail::Send { bytes: 10 });
        e.who = Some(who(uid, id, path));
        s.add(&e);
    }
    // The kernel's rows: one of a known cgroup, one of a process it could not name.
    let tally = |identity| Tally {
        process: b"app".to_vec(),
        identity,
        remote: peer.map(|p| p.parse().unwrap()),
        accepted: false,
        sent: 1,
        received: 0,
        events: 1,
    };
    s.add_tally(&tally(Some(Identity {
        uid: 1000,
        cgroup_id: 8,
    })));
    s.add_tally(&tally(None));
    // The loop's lookup of each cgroup's path (cgroup 6 was gone).
    s.name_cgroups(|id| match id {
        5 => Some(container.to_string()),
        8 => Some("/user.slice".to_string()),
        _ => None,
    });
    let mut text = Vec::new();
    write_text(&s, &mut text, true);
    let text = String::from_utf8(text).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().take(5).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["PROCESS", "UID", "CGROUP", "REMOTE", "CONN-OK"],
            ["app", "-", "-", "10.0.0.1:443", "0"],
            ["app", "0", "docker:3f4e5a6b7c8d", "10.0.0.1:443", "0"],
            ["app", "33", "-", "10.0.0.1:443", "0"],
            ["app", "1000", "/user.slice", "10.0.0.1:443", "0"],
        ],
        "{text}"
    );
    assert!(text.lines().nth(2).unwrap().contains(" 20 "), "{text}");
    let mut json = Vec::new();
    write_json(&s, &mut json);
    let rows: Vec<serde_json::Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows[0].get("uid").is_none(), "{}", rows[0]);
    assert_eq!(
        rows[1],
        serde_json::json!({"summary": true, "process": "app", "uid": 0,
            "cgroup": container, "container_id": id,
            "container_runtime": "docker", "remote": "10.0.0.1:443", "connects_ok": 0,
            "connects_failed": 0, "accepts": 0, "sent": 20, "received": 0, "closed": 0})
    );
    assert_eq!(rows[2]["cgroup"], serde_json::Value::Null);
}
