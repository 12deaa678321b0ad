//! --deny, --allow and --audit: connects and datagram sends refused inside COMMAND's
//! tree and nowhere else. The refused destinations are in a network namespace each
//! test makes (198.18.0.0/15, reserved for benchmarks), reached over a veth pair.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A network namespace with a veth pair: the host at .1, the namespace at .2.
struct Netns {
    name: String,
    host_if: String,
    /// The namespace's address.
    addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id() % 10000;
        let name = format!("swdeny{id}-{n}");
        let (host_if, ns_if) = (format!("swh{id}x{n}"), format!("swn{id}x{n}"));
        // A /30 of 198.18.0.0/15 per namespace.
        let block = (id as usize * 8 + n) % 16384;
        let (b2, b3) = (18 + (block >> 14) as u8, ((block >> 6) & 0xff) as u8);
        let base = (block & 0x3f) * 4;
        let host = format!("198.{b2}.{b3}.{}", base + 1);
        let addr = format!("198.{b2}.{b3}.{}", base + 2);
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            addr,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", ns.addr), "dev", &ns_if]);
        inside(&["link", "set", &ns_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        ns
    }

    /// An echo server in the namespace; returns it and its port.
    fn serve(&self, name: &str, proto: &str, port: &str, connections: &str) -> (Workload, u16) {
        let server = named_example("echo_server", name);
        let bind = format!("{}:{port}", self.addr);
        let w = Workload::spawn(
            std::path::Path::new("ip"),
            &[
                "netns",
                "exec",
                &self.name,
                server.to_str().unwrap(),
                proto,
                &bind,
                connections,
            ],
        );
        let port = w.value().parse().unwrap();
        (w, port)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn wait_for(path: &std::path::Path) {
    let deadline = Instant::now() + LIMIT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_allow_list_refuses_the_rest_in_the_tree_and_nowhere_else() {
    require_root();
    let ns = Netns::new();
    let (far, far_port) = ns.serve(&unique_name("f"), "tcp", "0", "1");
    let (udp, udp_port) = ns.serve(&unique_name("u"), "udp", "0", "1");
    let (near, near_port) = echo_server(&unique_name("n"), &["tcp", "127.0.0.1:0", "1"]);
    let cli = unique_name("c");
    let client = named_example("echo_client", &cli);
    let dir = std::env::temp_dir().join(format!("sockwatch-deny-{cli}"));
    std::fs::create_dir_all(&dir).unwrap();
    let far_addr = format!("{}:{far_port}", ns.addr);
    let python = dir.join("client.py");
    std::fs::write(
        &python,
        format!(
            r#"import socket
try:
    socket.create_connection(("{a}", {far_port}), timeout=5)
except OSError as e:
    print(e.errno)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("{a}", {udp_port}))
except OSError as e:
    print(e.errno)
"#,
            a = ns.addr
        ),
    )
    .unwrap();
    // The shell connects to loopback, its child shell's children beyond it: a
    // Rust client, and a grandchild in Python that also sends a datagram.
    let script = format!(
        "{c} tcp 127.0.0.1:{near_port} 1 > /dev/null
         sh -c '{c} tcp {far_addr} 1 2> {d}/rust; python3 {py} > {d}/python'
         touch {d}/done; sleep 1",
        c = client.display(),
        d = dir.display(),
        py = python.display(),
    );
    let trace = Trace::start(&[
        "-e",
        "connect,deny",
        "--allow",
        "connect peer=127.0.0.0/8",
        "--allow",
        "connect peer=::1",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let sockwatch = trace.pid();
    // While the tree is refused, a process outside it reaches the same server.
    wait_for(&dir.join("done"));
    let mut outside = TcpStream::connect(&far_addr).expect("the connect outside the tree");
    std::io::Write::write_all(&mut outside, b"hello").unwrap();
    let mut back = [0u8; 5];
    std::io::Read::read_exact(&mut outside, &mut back).unwrap();
    drop(outside);
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .send_to(b"y", (ns.addr.as_str(), udp_port))
        .expect("the datagram outside the tree");
    let out = trace.wait(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    far.finish();
    udp.finish();
    near.finish();

    let rust = std::fs::read_to_string(dir.join("rust")).unwrap();
    assert!(
        rust.contains("Os { code: 1, kind: PermissionDenied"),
        "{rust}"
    );
    let python = std::fs::read_to_string(dir.join("python")).unwrap();
    assert_eq!(python, "1\n1\n", "the Python client's errnos");
    let keys: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    let udp_to = format!("{}:{udp_port}", ns.addr);
    let expected = [
        format!("{cli} DENY tcp 0.0.0.0:0 {far_addr} call=connect by=allow"),
        format!("{cli} CONNECT tcp 0.0.0.0:0 {far_addr} result=EPERM latency=*"),
        format!("python3 DENY tcp 0.0.0.0:0 {far_addr} call=connect by=allow"),
        format!("python3 CONNECT tcp 0.0.0.0:0 {far_addr} result=EPERM latency=*"),
        format!("python3 DENY udp 0.0.0.0:0 {udp_to} call=sendmsg by=allow"),
    ];
    for line in &expected {
        assert!(keys.contains(line), "missing {line}: {keys:#?}");
    }
    assert_eq!(keys.iter().filter(|k| k.contains(" DENY ")).count(), 3);
    let ok = format!("{cli} CONNECT tcp ");
    assert!(keys
        .iter()
        .any(|k| k.starts_with(&ok) && k.contains(&format!(" 127.0.0.1:{near_port} result=ok"))));
    let closing = out.stderr.lines().last().unwrap();
    assert!(
        closing.ends_with(", 3 calls denied; COMMAND exited with status 0"),
        "{closing}"
    );
    // The cgroup is gone once the tree is.
    let cgroup = own_cgroup_dir().join(format!("sockwatch-{sockwatch}"));
    assert!(!cgroup.exists(), "{} is left", cgroup.display());
}

#[test]
fn a_deny_refuses_what_it_matches_and_forbid_deny_fails_the_run() {
    require_root();
    let (a, a_port) = echo_server(&unique_name("a"), &["tcp", "127.0.0.1:0", "1"]);
    let (_b, b_port) = echo_server(&unique_name("b"), &["tcp", "127.0.0.1:0", "1"]);
    let cli = unique_name("c");
    let client = named_example("echo_client", &cli);
    let script = format!(
        "{c} tcp 127.0.0.1:{a_port} 1 > /dev/null; {c} tcp 127.0.0.1:{b_port} 1 2> /dev/null; exit 3",
        c = client.display()
    );
    let deny = format!("connect rport={b_port}");
    // A denial alone leaves the status to COMMAND.
    let out = Trace::start(&["-e", "deny", "--deny", &deny, "--", "sh", "-c", &script]).wait(LIMIT);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    a.finish();
    let keys: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    assert_eq!(
        keys,
        [format!(
            "{cli} DENY tcp 0.0.0.0:0 127.0.0.1:{b_port} call=connect by=deny#1"
        )]
    );
    // In JSON, who was refused: its uid, parent and cgroup, as its EXEC says.
    let (a, a_port) = echo_server(&unique_name("a"), &["tcp", "127.0.0.1:0", "1"]);
    let script = format!(
        "{c} tcp 127.0.0.1:{a_port} 1 > /dev/null; {c} tcp 127.0.0.1:{b_port} 1 2> /dev/null; true",
        c = client.display()
    );
    let out = Trace::start(&[
        "--json",
        "-e",
        "exec,deny",
        "--deny",
        &deny,
        "--",
        "sh",
        "-c",
        &script,
    ])
    .wait(LIMIT);
    assert!(out.status.success(), "{}", out.stderr);
    a.finish();
    let events = json_lines(&out.stdout);
    let denied: Vec<_> = events.iter().filter(|e| e["event"] == "deny").collect();
    let execs: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "exec" && e["process"] == cli.as_str())
        .collect();
    assert_eq!((denied.len(), execs.len()), (1, 2), "{}", out.stdout);
    let who = |e: &serde_json::Value| (e["uid"].clone(), e["ppid"].clone(), e["cgroup"].clone());
    assert_eq!(who(denied[0]), who(execs[1]), "{}", out.stdout);
    assert_eq!(denied[0]["uid"], 0);
    assert!(denied[0]["cgroup"].is_string(), "{}", denied[0]);

    // --forbid deny: the first denial fails the run, and the tree is stopped.
    let (_a, a_port) = echo_server(&unique_name("a"), &["tcp", "127.0.0.1:0", "1"]);
    let script = format!(
        "{c} tcp 127.0.0.1:{a_port} 1 > /dev/null; {c} tcp 127.0.0.1:{b_port} 1 2> /dev/null; sleep 30",
        c = client.display()
    );
    let started = Instant::now();
    let out = Trace::start(&[
        "-e", "deny", "--deny", &deny, "--forbid", "deny", "--", "sh", "-c", &script,
    ])
    .wait(LIMIT);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(20));
    let verdict = out.stderr.lines().last().unwrap();
    assert!(
        verdict.starts_with(&format!(
            "sockwatch: forbidden event seen: DENY by {cli} (pid "
        )) && verdict.ends_with(&format!(" with 127.0.0.1:{b_port} matched --forbid 'deny'")),
        "{verdict}"
    );
}

#[test]
fn a_deny_by_process_name_holds_in_its_renamed_threads() {
    require_root();
    let (_server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "1"]);
    let script = format!(
        r#"import ctypes, socket, sys, threading
def run():
    ctypes.CDLL(None).prctl(15, b"worker-x", 0, 0, 0)
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=5)
    except OSError as e:
        print("errno", e.errno, file=sys.stderr)
t = threading.Thread(target=run)
t.start()
t.join()
"#
    );
    let deny = format!("connect process=python3 rport={port}");
    let out = Trace::start(&[
        "-e", "deny", "--deny", &deny, "--", "python3", "-c", &script,
    ])
    .wait(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let keys: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    assert_eq!(
        keys,
        [format!(
            "python3 DENY tcp 0.0.0.0:0 127.0.0.1:{port} call=connect by=deny#1"
        )]
    );
}

#[test]
fn a_killed_sockwatch_leaves_the_tree_refused_and_the_next_run_cleans_up() {
    require_root();
    let (_server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "1"]);
    let dir = std::env::temp_dir().join(format!("sockwatch-killed-{}", unique_name("k")));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    // COMMAND waits (boundedly) for the go, then connects where --deny refuses.
    let script = format!(
        "touch {d}/started
         for i in $(seq 600); do [ -e {d}/go ] && break; sleep 0.05; done
         python3 -c 'import socket
try:
    socket.create_connection((\"127.0.0.1\", {port}), timeout=5)
    print(\"connected\")
except OSError as e:
    print(\"errno\", e.errno)' > {d}/result
         touch {d}/done"
    );
    let deny = format!("connect rport={port}");
    let trace = Trace::start(&["--deny", &deny, "--", "sh", "-c", &script]);
    let killed = trace.pid();
    wait_for(&dir.join("started"));
    signal(killed, nix::sys::signal::Signal::SIGKILL);
    let left = own_cgroup_dir().join(format!("sockwatch-{killed}"));
    drop(trace);
    // Still there: the tree is in it (so no other run can remove it yet).
    assert!(left.is_dir(), "{} is gone", left.display());
    std::fs::write(dir.join("go"), "").unwrap();
    wait_for(&dir.join("done"));
    // The hooks stayed with the cgroup: the connect after the kill was refused.
    assert_eq!(
        std::fs::read_to_string(dir.join("result")).unwrap(),
        "errno 1\n"
    );
    // The next run removes what the killed one left, once its tree has exited.
    let deadline = Instant::now() + LIMIT;
    while std::fs::read_to_string(left.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the killed run's tree never exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Trace::start(&["--deny", &deny, "--", "true"]).wait(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(!left.exists(), "{} is still there", left.display());
}

#[test]
fn the_audit_lists_what_the_tree_reached_and_its_allow_list_lets_it_run() {
    require_root();
    let ns = Netns::new();
    let cli = unique_name("c");
    let client = named_example("echo_client", &cli);
    // Fixed ports: the namespace is the test's own, and the list must fit the next run.
    let run = |policy: &[&str]| {
        let (far, _) = ns.serve(&unique_name("f"), "tcp", "7001", "1");
        let (udp, _) = ns.serve(&unique_name("u"), "udp", "7002", "1");
        let script = format!(
            "{c} tcp {a}:7001 1 > /dev/null; {c} udp-unconnected {a}:7002 1 > /dev/null 2>&1; true",
            c = client.display(),
            a = ns.addr
        );
        let mut args = vec!["-e", "deny", "--audit"];
        args.extend(policy);
        args.extend(["--", "sh", "-c", &script]);
        let out = Trace::start(&args).wait(LIMIT);
        far.finish();
        drop(udp);
        out
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let audit: Vec<String> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("sockwatch: audit: --allow '"))
        .filter_map(|l| l.strip_suffix('\''))
        .map(String::from)
        .collect();
    assert_eq!(
        audit,
        [
            format!("connect proto=tcp peer={} rport=7001", ns.addr),
            format!("send proto=udp peer={} rport=7002", ns.addr),
        ]
    );
    // The audit's list lets the same run through; without its second line the
    // datagram is refused.
    let out = run(&["--allow", &audit[0], "--allow", &audit[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().filter(|l| l.contains(" DENY ")).count(),
        0,
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains(", 0 calls denied; COMMAND exited with status 0"),
        "{}",
        out.stderr
    );
    let out = run(&["--allow", &audit[0]]);
    let keys: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    assert_eq!(
        keys,
        [format!(
            "{cli} DENY udp 0.0.0.0:0 {}:7002 call=sendmsg by=allow",
            ns.addr
        )]
    );
}

#[test]
fn a_full_audit_table_says_its_list_is_incomplete() {
    require_root();
    // 4100 destinations (ports of an address on the loopback of a network
    // namespace of the test's own), for a table of 4096.
    let script =
        "unshare -n sh -c 'ip link set lo up && ip addr add 192.0.2.1/24 dev lo && python3 -c \"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in range(20000, 24100):
    s.sendto(b\\\"x\\\", (\\\"192.0.2.7\\\", port))
\"'";
    let out = Trace::start(&["-e", "deny", "--audit", "--", "sh", "-c", script]).wait(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let allows = out
        .stderr
        .lines()
        .filter(|l| {
            l.starts_with("sockwatch: audit: --allow 'send proto=udp peer=192.0.2.7 rport=")
        })
        .count();
    assert_eq!(allows, 4096);
    out.assert_stderr_ends(
        "sockwatch: audit: 4 more not recorded (its table was full): the list is incomplete",
    );
}

#[test]
fn without_cgroup_v2_deny_is_refused_in_one_line() {
    require_root();
    let out = with_private_mounts(
        r#"for m in $(awk '$3 == "cgroup2" { print $2 }' /proc/self/mounts); do umount -l "$m"; done
           "$SOCKWATCH" --deny 'connect peer=10.0.0.0/8' -- true"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        ["sockwatch: error: --deny, --allow and --audit need cgroup v2, and no cgroup2 file system is mounted"]
    );
}
