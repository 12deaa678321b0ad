//! Live tests of what trying sockwatch on real servers turned up: sockets handed
//! to forked children, lifetimes of sockets older than the trace, UDP connects and
//! binds, thread ids given as pids, forks, unused sockets, and first-run hints.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A server that hands each connection to a forked child, as socat and sshd do:
/// the CLOSE comes when the child, the last holder, exits, while the parent lives.
#[test]
fn a_connection_served_by_a_forked_child_closes_when_the_child_exits() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[&srv]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "2", "--fork-each"]);
    let addr = format!("127.0.0.1:{port}");
    let first = run_client("echo_client", &unique_name("c"), &["tcp", &addr, "5", "70"]);
    let second = run_client("echo_client", &unique_name("c"), &["tcp", &addr, "9"]);
    let parent = server.pid();
    server.finish();
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let lines = parse(&out.stdout);

    let mut children: Vec<u32> = lines
        .iter()
        .filter(|l| l.event == "FORK")
        .map(|l| l.pid)
        .collect();
    children.dedup();
    assert_eq!(children.len(), 2, "{lines:#?}");
    for (child, local, sizes) in [
        (children[0], &first, &[5, 70][..]),
        (children[1], &second, &[9]),
    ] {
        let total: u64 = sizes.iter().sum();
        let mut expected = vec![format!("{srv} FORK - - - ppid=*")];
        for n in sizes {
            expected.push(format!("{srv} RECV tcp {addr} {local} bytes={n}"));
            expected.push(format!("{srv} SEND tcp {addr} {local} bytes={n}"));
        }
        expected.extend([
            format!("{srv} RECV tcp {addr} {local} bytes=0 eof"),
            format!("{srv} CLOSE tcp {addr} {local} sent={total} received={total} lifetime=*"),
            exit_line(&srv),
        ]);
        assert_lines(&lines, child, &expected);
    }
    // The parent accepted both and closed only its listener, at its own exit.
    let dir = copies_dir();
    assert_lines(
        &lines,
        parent,
        &[
            format!("{srv} EXEC - - - path={} ppid=*", dir.join(&srv).display()),
            format!("{srv} LISTEN tcp {addr} * backlog=64"),
            format!("{srv} ACCEPT tcp {addr} {first}"),
            format!("{srv} ACCEPT tcp {addr} {second}"),
            format!("{srv} CLOSE tcp {addr} * sent=0 received=0 lifetime=*"),
            exit_line(&srv),
        ],
    );
    // Each FORK and EXEC names its parent: the server, and this test.
    for l in lines.iter().filter(|l| l.event == "FORK") {
        assert_eq!(detail(l, "ppid"), Some(parent.to_string().as_str()));
    }
    let exec = lines.iter().find(|l| l.event == "EXEC").unwrap();
    assert_eq!(
        detail(exec, "ppid"),
        Some(std::process::id().to_string().as_str())
    );
}

fn exit_line(name: &str) -> String {
    format!("{name} EXIT - - - exit_code=0")
}

/// A socket open before tracing began counts its lifetime from then.
#[test]
fn partial_lifetimes_count_from_the_start_of_the_trace() {
    require_root();
    let srv = unique_name("s");
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let started = Instant::now();
    let trace = Trace::start(&["--events", "close", &srv]);
    std::thread::sleep(Duration::from_millis(400));
    let addr = format!("127.0.0.1:{port}");
    run_client("echo_client", &unique_name("c"), &["tcp", &addr, "3"]);
    server.finish();
    let traced_for = started.elapsed();
    let lines = parse(&trace.stop().stdout);
    let listener = lines
        .iter()
        .find(|l| l.remote == "*")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(listener.details.ends_with(" partial"), "{listener:?}");
    let lifetime = Duration::from_nanos(duration_ns(detail(listener, "lifetime").unwrap()));
    assert!(
        lifetime >= Duration::from_millis(400) && lifetime <= traced_for,
        "lifetime {lifetime:?}, traced for {traced_for:?}"
    );
}

/// UDP connect names the peer the kernel chose, and a disconnect is no connect.
#[test]
fn udp_connect_to_a_wildcard_and_a_disconnect() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&["--events", "connect,close", &cli]);
    let (server, port) = echo_server(&srv, &["udp", "127.0.0.1:0", "1"]);
    let local = run_client(
        "echo_client",
        &cli,
        &["udp", &format!("0.0.0.0:{port}"), "4", "--disconnect"],
    );
    server.finish();
    let lines = parse(&trace.stop().stdout);
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    assert_eq!(
        keys,
        [
            format!("{cli} CONNECT udp {local} 127.0.0.1:{port} result=ok latency=*"),
            // Disconnected, the socket keeps its bound address but lets go of its
            // peer and of the port the kernel picked.
            format!("{cli} CLOSE udp 127.0.0.1:0 * sent=4 received=4 lifetime=*"),
        ]
    );
}

/// A UDP server binding its port is a LISTEN; a client's ephemeral bind is not.
#[test]
fn a_udp_server_starting_is_a_listen() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&["--events", "listen", &srv, &cli]);
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let (server, _) = echo_server(&srv, &["udp", &addr, "1"]);
    run_client("echo_client", &cli, &["udp-unconnected", &addr, "8"]);
    server.finish();
    let keys: Vec<String> = parse(&trace.stop().stdout).iter().map(Line::key).collect();
    assert_eq!(keys, [format!("{srv} LISTEN udp {addr} *")]);
}

/// A thread id (as `ps -T` shows) traces its process, and says so.
#[test]
fn a_thread_id_traces_its_process() {
    require_root();
    let srv = unique_name("s");
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1", "--threads"]);
    let pid = server.pid();
    let deadline = Instant::now() + Duration::from_secs(10);
    let tid = loop {
        let other = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_str()?.parse::<u32>().ok())
            .find(|&t| t != pid);
        match other {
            Some(t) => break t,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => panic!("echo_server started no thread"),
        }
    };
    let trace = Trace::start(&["--events", "accept", "--pid", &tid.to_string()]);
    assert!(
        trace.early_stderr().contains(&format!(
            "sockwatch: note: {tid} is a thread of process {pid} ({srv}): tracing process {pid}"
        )),
        "{:?}",
        trace.early_stderr()
    );
    assert!(
        trace.ready_line.contains(&format!("tracing pid {pid} ")),
        "{}",
        trace.ready_line
    );
    let addr = format!("127.0.0.1:{port}");
    let local = run_client("echo_client", &unique_name("c"), &["tcp", &addr, "2"]);
    server.finish();
    let lines = parse(&trace.stop().stdout);
    assert_lines(&lines, pid, &[format!("{srv} ACCEPT tcp {addr} {local}")]);
}

/// Sockets that were never bound, connected or listened on, and moved no bytes,
/// print no CLOSE (resolvers open such sockets all the time).
#[test]
fn unused_sockets_print_no_close() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&["--events", "close", &cli]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let addr = format!("127.0.0.1:{port}");
    let local = run_client("echo_client", &cli, &["tcp", &addr, "6", "--idle-socket"]);
    server.finish();
    let keys: Vec<String> = parse(&trace.stop().stdout).iter().map(Line::key).collect();
    assert_eq!(
        keys,
        [format!(
            "{cli} CLOSE tcp {local} {addr} sent=6 received=6 lifetime=*"
        )]
    );
}

/// A name that matches no running process says so, with the likely fix.
#[test]
fn names_that_match_nothing_get_a_hint() {
    require_root();
    let srv = unique_name("hint");
    let (server, _) = echo_server(&srv, &["tcp", "127.0.0.1:0", "0"]);
    let prefix = &srv[..srv.len() - 1];
    let path = format!("/usr/local/bin/{srv}");
    let trace = Trace::start(&["--duration", "100ms", prefix, &path, &srv]);
    let out = trace.wait(Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.stderr);
    let notes: Vec<&str> = out.stderr.lines().filter(|l| l.contains("note:")).collect();
    let short: String = path.chars().take(15).collect();
    assert_eq!(
        notes,
        [
            format!(
                "sockwatch: note: process names are 15 bytes in the kernel: matching \"{path}\" as \"{short}\""
            ),
            format!(
                "sockwatch: note: no running process is named \"{prefix}\" (waiting for one to start); did you mean \"{srv}\"?"
            ),
            format!(
                "sockwatch: note: no running process is named \"{short}\" (waiting for one to start); NAME is a process name, not a path: try \"{srv}\""
            ),
        ]
    );
    drop(server);
}

/// Event names are taken in the case the output prints them, spaces allowed.
#[test]
fn event_names_in_either_case_with_spaces() {
    require_root();
    let trace = Trace::start(&[
        "-e",
        "CONNECT, Accept",
        "--duration",
        "100ms",
        "nothing-here",
    ]);
    assert!(
        trace.ready_line.contains("(events: connect,accept;"),
        "{}",
        trace.ready_line
    );
    assert!(trace.wait(Duration::from_secs(30)).status.success());
}
