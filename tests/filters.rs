//! Live tests of the kernel-side filters: `--port`, `--peer`, `--proto` alone and
//! combined, over IPv4 and IPv6, and `--cgroup` on a cgroup the test makes.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// TCP over IPv4 and IPv6 and connected UDP over IPv4, one echo each.
struct Servers {
    tcp4: (Workload, u16),
    tcp6: (Workload, u16),
    udp4: (Workload, u16),
}

impl Servers {
    fn start(rounds: &str) -> Servers {
        Servers {
            tcp4: echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", rounds]),
            tcp6: echo_server(&unique_name("s"), &["tcp", "[::1]:0", rounds]),
            udp4: echo_server(&unique_name("s"), &["udp", "127.0.0.1:0", rounds]),
        }
    }
}

/// A client's socket lines: CONNECT, SEND, RECV and CLOSE of one echo of `n` bytes.
fn echo(name: &str, proto: &str, local: &str, remote: &str, n: u64) -> Vec<String> {
    vec![
        format!("{name} CONNECT {proto} {local} {remote} result=ok latency=*"),
        format!("{name} SEND {proto} {local} {remote} bytes={n}"),
        format!("{name} RECV {proto} {local} {remote} bytes={n}"),
        format!("{name} CLOSE {proto} {local} {remote} sent={n} received={n} lifetime=*"),
    ]
}

/// Runs the three clients as one COMMAND under these filters; returns the socket
/// lines of each client (tcp4, tcp6, udp4), by the local address each printed.
fn traced(filters: &[&str], s: &Servers) -> [Vec<String>; 3] {
    let names = [unique_name("a"), unique_name("b"), unique_name("u")];
    let clients = [
        ("tcp", format!("127.0.0.1:{}", s.tcp4.1), "5"),
        ("tcp", format!("[::1]:{}", s.tcp6.1), "6"),
        ("udp", format!("127.0.0.1:{}", s.udp4.1), "7"),
    ];
    let script: Vec<String> = names
        .iter()
        .zip(&clients)
        .map(|(name, (proto, addr, n))| {
            let path = named_example("echo_client", name);
            format!("{} {proto} {addr} {n}", path.display())
        })
        .collect();
    let mut args: Vec<&str> = filters.to_vec();
    let script = script.join("; ");
    args.extend(["--", "sh", "-c", &script]);
    let out = Trace::start(&args).wait(Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let (locals, events) = split_client_output(&out.stdout);
    assert_eq!(locals.len(), 3, "{}", out.stdout);
    let lines = parse(&events);
    let socket_lines = |name: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.process == name && l.proto != "-")
            .map(Line::key)
            .collect()
    };
    [
        socket_lines(&names[0]),
        socket_lines(&names[1]),
        socket_lines(&names[2]),
    ]
    .map(|mut v| {
        // Keys carry the client's name; compare them by the line's content only.
        for (name, local) in names.iter().zip(&locals) {
            for k in &mut v {
                *k = k
                    .replacen(name.as_str(), "C", 1)
                    .replace(local.as_str(), "LOCAL");
            }
        }
        v
    })
}

#[test]
fn each_filter_alone_and_combined_over_ipv4_and_ipv6() {
    require_root();
    let s = Servers::start("12");
    let tcp4 = echo("C", "tcp", "LOCAL", &format!("127.0.0.1:{}", s.tcp4.1), 5);
    let tcp6 = echo("C", "tcp", "LOCAL", &format!("[::1]:{}", s.tcp6.1), 6);
    let udp4 = echo("C", "udp", "LOCAL", &format!("127.0.0.1:{}", s.udp4.1), 7);
    let none: Vec<String> = Vec::new();
    let (p4, p6, pu) = (
        s.tcp4.1.to_string(),
        s.tcp6.1.to_string(),
        s.udp4.1.to_string(),
    );
    let cases: Vec<(Vec<&str>, [&Vec<String>; 3])> = vec![
        (vec![], [&tcp4, &tcp6, &udp4]),
        (vec!["--port", &p4], [&tcp4, &none, &none]),
        (vec!["--port", &p6], [&none, &tcp6, &none]),
        (vec!["--port", &p4, "--port", &pu], [&tcp4, &none, &udp4]),
        (vec!["--peer", "::1"], [&none, &tcp6, &none]),
        (vec!["--peer", "127.0.0.0/8"], [&tcp4, &none, &udp4]),
        (vec!["--peer", "10.0.0.0/8"], [&none, &none, &none]),
        (vec!["--proto", "udp"], [&none, &none, &udp4]),
        (vec!["--proto", "tcp"], [&tcp4, &tcp6, &none]),
        (
            vec!["--peer", "127.0.0.0/8", "--proto", "tcp"],
            [&tcp4, &none, &none],
        ),
        (vec!["--port", &p6, "--peer", "::/0"], [&none, &tcp6, &none]),
        (
            vec!["--port", &p6, "--peer", "127.0.0.0/8"],
            [&none, &none, &none],
        ),
    ];
    for (filters, expected) in cases {
        let got = traced(&filters, &s);
        assert_eq!(
            got,
            expected.map(|e| e.clone()),
            "filters {filters:?}: the lines of the tcp4, tcp6 and udp4 clients"
        );
    }
}

/// A cgroup v2 directory of the test's own, removed at the end.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Cgroup {
        let root = cgroup2_root();
        let dir = root.join(format!("sockwatch-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(self.0.join("inner"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2] == "cgroup2").then(|| PathBuf::from(f[1]))
        })
        .expect("cgroup v2 is mounted (scripts/test mounts it if not)")
}

#[test]
fn cgroup_alone_and_narrowing_a_name() {
    require_root();
    let cg = Cgroup::new();
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "4"]);
    let addr = format!("127.0.0.1:{port}");
    let name = unique_name("g");
    let client = named_example("echo_client", &name);
    // One client in a cgroup below the traced one, one outside it, same name.
    let run_in = |dir: Option<&PathBuf>| {
        let enter = dir.map_or(String::new(), |d| {
            format!("echo $$ > {}/cgroup.procs; ", d.display())
        });
        let script = format!("{enter}exec {} tcp {addr} 9 > /dev/null", client.display());
        assert!(Command::new("sh")
            .args(["-c", &script])
            .status()
            .unwrap()
            .success());
    };
    let inner = cg.0.join("inner");
    for target in [vec![], vec![name.as_str()]] {
        let mut args = vec!["-e", "connect,close", "--cgroup", cg.0.to_str().unwrap()];
        args.extend(&target);
        let trace = Trace::start(&args);
        run_in(None);
        run_in(Some(&inner));
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        let keys = keys_local_hidden(&lines);
        assert_eq!(
            keys,
            [
                format!("{name} CONNECT tcp LOCAL {addr} result=ok latency=*"),
                format!("{name} CLOSE tcp LOCAL {addr} sent=9 received=9 lifetime=*"),
            ],
            "--cgroup with {target:?}"
        );
    }
    server.finish();
}

/// With no NAME, a --port traces every process behind it: the server and its
/// client whatever their names, nothing of another port, no process events.
#[test]
fn a_port_alone_traces_every_process_behind_it() {
    require_root();
    let (server, other) = (unique_name("s"), unique_name("s"));
    let (a, port) = echo_server(&server, &["tcp", "127.0.0.1:0", "1"]);
    let (b, other_port) = echo_server(&other, &["tcp", "127.0.0.1:0", "1"]);
    let trace = Trace::start(&["--port", &port.to_string()]);
    let ready = trace.early_stderr().join("\n");
    assert!(
        ready.contains(&format!(
            "tracing every process (events: listen,connect,accept,send,recv,close; only port {port};"
        )),
        "{ready}"
    );
    let (client, other_client) = (unique_name("c"), unique_name("c"));
    let remote = format!("127.0.0.1:{port}");
    let local = run_client("echo_client", &client, &["tcp", &remote, "7"]);
    let other_remote = format!("127.0.0.1:{other_port}");
    run_client("echo_client", &other_client, &["tcp", &other_remote, "9"]);
    a.finish();
    b.finish();
    let out = trace.stop();
    let lines = parse(&out.stdout);
    let of = |name: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.process == name)
            .map(Line::key)
            .collect()
    };
    assert_eq!(of(&client), echo(&client, "tcp", &local, &remote, 7));
    assert_eq!(
        of(&server),
        [
            format!("{server} ACCEPT tcp {remote} {local}"),
            format!("{server} RECV tcp {remote} {local} bytes=7"),
            format!("{server} SEND tcp {remote} {local} bytes=7"),
            format!("{server} RECV tcp {remote} {local} bytes=0 eof"),
            format!("{server} CLOSE tcp {remote} {local} sent=7 received=7 lifetime=*"),
            // Listening before the trace began: its lifetime counts from then.
            format!("{server} CLOSE tcp {remote} * sent=0 received=0 lifetime=* partial"),
        ]
    );
    // Other tests run beside this one: every line is about the port, whoever made it.
    let ours = format!(":{port}");
    assert!(
        lines
            .iter()
            .all(|l| l.local.ends_with(&ours) || l.remote.ends_with(&ours)),
        "{lines:#?}"
    );
    assert!(of(&other).is_empty() && of(&other_client).is_empty());
    out.assert_stderr_ends(&format!(
        "sockwatch: {} events printed, 0 lost",
        lines.len()
    ));
}

/// --all: every process, with every event; here a listener of any name.
#[test]
fn all_traces_every_process() {
    require_root();
    let trace = Trace::start(&["--all", "-e", "listen"]);
    let server = unique_name("s");
    let (w, port) = echo_server(&server, &["tcp", "127.0.0.1:0", "0"]);
    w.finish();
    let out = trace.stop();
    let lines = parse(&out.stdout);
    let keys: Vec<String> = lines
        .iter()
        .filter(|l| l.process == server)
        .map(Line::key)
        .collect();
    assert_eq!(
        keys,
        [format!("{server} LISTEN tcp 127.0.0.1:{port} * backlog=64")]
    );
}
