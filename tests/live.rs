//! Live tests: sockwatch (as root) against the workloads in examples/, asserting
//! the exact lines and numbers. Each test traces process names of its own, so
//! the tests can run side by side.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn exec_line(name: &str) -> String {
    let dir = copies_dir();
    format!("{name} EXEC - - - path={} ppid=*", dir.join(name).display())
}

fn exit_line(name: &str) -> String {
    format!("{name} EXIT - - - exit_code=0")
}

/// One side of an echo exchange: the server receives each message and sends it
/// back; the client sends it and receives it back.
fn echo_lines(
    name: &str,
    proto: &str,
    ends: (&str, &str),
    sizes: &[u64],
    server: bool,
) -> Vec<String> {
    let (local, remote) = ends;
    sizes
        .iter()
        .flat_map(|n| {
            let recv = format!("{name} RECV {proto} {local} {remote} bytes={n}");
            let send = format!("{name} SEND {proto} {local} {remote} bytes={n}");
            if server {
                [recv, send]
            } else {
                [send, recv]
            }
        })
        .collect()
}

/// A one-connection TCP echo on 127.0.0.1: a server named `srv`, and a client
/// under a name of its own that sends `bytes` bytes. Returns the server's pid.
fn one_echo(srv: &str, bytes: &str) -> u32 {
    let (server, port) = echo_server(srv, &["tcp", "127.0.0.1:0", "1"]);
    run_client(
        "echo_client",
        &unique_name("c"),
        &["tcp", &format!("127.0.0.1:{port}"), bytes],
    );
    let pid = server.pid();
    server.finish();
    pid
}

/// A TCP echo exchange traced on both sides, every line and number checked.
fn tcp_echo(addr: &str, client_flags: &[&str]) {
    require_root();
    rerun_if_skipped(|| {
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&srv, &cli]);
        let (server, port) = echo_server(&srv, &["tcp", addr, "1"]);
        let listen = format!("{}:{port}", addr.rsplit_once(':').unwrap().0);
        let mut args = vec!["tcp", &listen, "5", "1000", "3000"];
        args.extend(client_flags);
        let local = run_client("echo_client", &cli, &args);
        let server_pid = server.pid();
        server.finish();
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        let sizes = [5, 1000, 3000];

        let mut expected = vec![
            exec_line(&srv),
            format!("{srv} LISTEN tcp {listen} * backlog=64"),
            format!("{srv} ACCEPT tcp {listen} {local}"),
        ];
        expected.extend(echo_lines(&srv, "tcp", (&listen, &local), &sizes, true));
        expected.extend([
            format!("{srv} RECV tcp {listen} {local} bytes=0 eof"),
            format!("{srv} CLOSE tcp {listen} {local} sent=4005 received=4005 lifetime=*"),
            format!("{srv} CLOSE tcp {listen} * sent=0 received=0 lifetime=*"),
            exit_line(&srv),
        ]);
        assert_lines(&lines, server_pid, &expected);

        let client_pid = pid_of(&lines, &cli);
        let mut expected = vec![
            exec_line(&cli),
            format!("{cli} CONNECT tcp {local} {listen} result=ok latency=*"),
        ];
        expected.extend(echo_lines(&cli, "tcp", (&local, &listen), &sizes, false));
        expected.extend([
            format!("{cli} CLOSE tcp {local} {listen} sent=4005 received=4005 lifetime=*"),
            exit_line(&cli),
        ]);
        assert_lines(&lines, client_pid, &expected);
        assert!(
            out.stderr
                .contains(&format!("{} events printed, 0 lost", lines.len())),
            "{}",
            out.stderr
        );

        // The client closes first; the server closes after its FIN; a listener has no health.
        let closes: Vec<(u32, &str, Option<Health>)> = lines
            .iter()
            .filter(|l| l.event == "CLOSE")
            .map(|l| (l.pid, l.remote.as_str(), l.health()))
            .collect();
        assert_eq!(closes.len(), 3, "{closes:?}");
        for (pid, remote, health) in closes {
            let Some(h) = health else {
                assert_eq!((pid, remote), (server_pid, "*"), "no health");
                continue;
            };
            let end = if pid == client_pid {
                "local-fin"
            } else {
                "peer-fin"
            };
            assert_eq!((h.end.as_str(), h.retrans), (end, 0), "{pid}");
            assert!(h.rtt_us > 0.0 && h.rtt_us < 1_000_000.0, "{h:?}");
        }
    });
}

#[test]
fn tcp_v4_echo() {
    tcp_echo("127.0.0.1:0", &[]);
}

#[test]
fn tcp_v6_echo() {
    tcp_echo("[::1]:0", &[]);
}

#[test]
fn sendfile_is_a_send() {
    tcp_echo("127.0.0.1:0", &["--sendfile"]);
}

#[test]
fn writev_and_readv_count_and_a_peek_is_not_a_receive() {
    tcp_echo("127.0.0.1:0", &["--vectored", "--peek"]);
}

/// UDP echo: unconnected (sendto/recvfrom name the peer) or connected.
fn udp_echo(addr: &str, mode: &str) {
    require_root();
    rerun_if_skipped(|| {
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&srv, &cli]);
        let (server, port) = echo_server(&srv, &["udp", addr, "2"]);
        let bound = format!("{}:{port}", addr.rsplit_once(':').unwrap().0);
        let local = run_client("echo_client", &cli, &[mode, &bound, "5", "700"]);
        let server_pid = server.pid();
        server.finish();
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        let sizes = [5, 700];

        let mut expected = vec![exec_line(&srv)];
        expected.extend(echo_lines(&srv, "udp", (&bound, &local), &sizes, true));
        expected.extend([
            format!("{srv} CLOSE udp {bound} * sent=705 received=705 lifetime=*"),
            exit_line(&srv),
        ]);
        assert_lines(&lines, server_pid, &expected);

        let client_pid = pid_of(&lines, &cli);
        let connected = mode == "udp";
        let mut expected = vec![exec_line(&cli)];
        if connected {
            expected.push(format!(
                "{cli} CONNECT udp {local} {bound} result=ok latency=*"
            ));
        }
        expected.extend(echo_lines(&cli, "udp", (&local, &bound), &sizes, false));
        let peer = if connected { bound.as_str() } else { "*" };
        expected.extend([
            format!("{cli} CLOSE udp {local} {peer} sent=705 received=705 lifetime=*"),
            exit_line(&cli),
        ]);
        assert_lines(&lines, client_pid, &expected);
    });
}

#[test]
fn udp_v4_unconnected_names_each_peer() {
    udp_echo("127.0.0.1:0", "udp-unconnected");
}

#[test]
fn udp_v6_unconnected_names_each_peer() {
    udp_echo("[::1]:0", "udp-unconnected");
}

#[test]
fn udp_sendmsg_and_recvmsg_name_each_peer() {
    udp_echo("127.0.0.1:0", "udp-msg");
    udp_echo("[::1]:0", "udp-msg");
}

#[test]
fn udp_v4_connected() {
    udp_echo("127.0.0.1:0", "udp");
}

#[test]
fn udp_v6_connected() {
    udp_echo("[::1]:0", "udp");
}

#[test]
fn worker_threads_belong_to_their_process() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&["--json", &srv]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "2", "--threads"]);
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..2 {
        run_client("echo_client", &unique_name("c"), &["tcp", &addr, "11"]);
    }
    let server_pid = server.pid();
    server.finish();
    let out = trace.stop();
    let events = json_lines(&out.stdout);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // Accepts run in "acceptor", echoes in "worker-N": all under the process's name and pid.
    for (kind, n) in [("accept", 2), ("recv", 4), ("send", 2), ("close", 3)] {
        assert_eq!(
            kinds.iter().filter(|k| **k == kind).count(),
            n,
            "{kind}: {kinds:?}"
        );
    }
    for e in &events {
        assert_eq!(e["pid"], server_pid, "{e}");
        assert_eq!(e["process"], srv.as_str(), "{e}");
    }
    let tids: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "accept" || e["event"] == "send")
        .map(|e| e["tid"].as_u64().unwrap())
        .collect();
    assert!(
        tids.iter().all(|&t| t != server_pid as u64),
        "worker tids {tids:?}"
    );
    let sent: u64 = events
        .iter()
        .filter(|e| e["event"] == "close")
        .map(|e| e["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 22);
}

/// Runs examples/nb_connect under a traced name; returns its lines' keys, its local
/// address and the result it printed.
fn connect_outcome(target: &str, flags: &[&str]) -> (Vec<String>, String, String) {
    let name = unique_name("n");
    let trace = Trace::start(&[&name]);
    let mut args = vec![target];
    args.extend(flags);
    let w = Workload::spawn(&named_example("nb_connect", &name), &args);
    let pid = w.pid();
    let local = w.value().to_string();
    let result = w.finish().join(" ");
    let keys = keys_of(&parse(&trace.stop().stdout), pid);
    assert_eq!(keys.first(), Some(&exec_line(&name)), "{keys:#?}");
    assert_eq!(keys.last(), Some(&exit_line(&name)), "{keys:#?}");
    let body = keys[1..keys.len() - 1]
        .iter()
        .map(|k| k.strip_prefix(&format!("{name} ")).unwrap().to_string())
        .collect();
    (body, local, result)
}

/// A port nobody listens on: bound for a moment, then released.
fn closed_port(ip: &str) -> String {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn nonblocking_connect_reports_its_real_outcome() {
    require_root();
    for ip in ["127.0.0.1", "[::1]"] {
        let target = closed_port(ip);
        let (lines, local, result) = connect_outcome(&target, &[]);
        assert_eq!(result, "result ECONNREFUSED");
        assert_eq!(
            lines,
            [
                format!("CONNECT tcp {local} {target} result=ECONNREFUSED latency=*"),
                format!("CLOSE tcp {local} {target} sent=0 received=0 lifetime=*"),
            ]
        );
    }
}

#[test]
fn a_second_connect_that_collects_the_outcome_is_no_second_connect() {
    require_root();
    // hiredis and redis-cli learn a non-blocking connect's outcome by calling
    // connect() again: one attempt, one CONNECT line, whatever the outcome.
    for ip in ["127.0.0.1", "[::1]"] {
        let target = closed_port(ip);
        let (lines, local, result) = connect_outcome(&target, &["--reconnect"]);
        assert_eq!(result, "result ECONNREFUSED");
        assert_eq!(
            lines,
            [
                format!("CONNECT tcp {local} {target} result=ECONNREFUSED latency=*"),
                format!("CLOSE tcp {local} {target} sent=0 received=0 lifetime=*"),
            ]
        );
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (lines, local, result) = connect_outcome(&target, &["--reconnect"]);
    assert_eq!(result, "result ok");
    assert_eq!(
        lines,
        [
            format!("CONNECT tcp {local} {target} result=ok latency=*"),
            format!("CLOSE tcp {local} {target} sent=0 received=0 lifetime=*"),
        ]
    );
}

#[test]
fn blocking_connect_is_reported_once_with_its_ends() {
    require_root();
    let target = closed_port("127.0.0.1");
    let (lines, local, result) = connect_outcome(&target, &["--blocking"]);
    assert_eq!(result, "result ECONNREFUSED");
    // After a failed blocking connect the kernel resets the socket's addresses
    // (getsockname shows 0.0.0.0); CLOSE still names the connection's ends.
    let port = local.rsplit_once(':').unwrap().1;
    assert_eq!(local, format!("0.0.0.0:{port}"));
    let local = format!("127.0.0.1:{port}");
    assert_eq!(
        lines,
        [
            format!("CONNECT tcp {local} {target} result=ECONNREFUSED latency=*"),
            format!("CLOSE tcp {local} {target} sent=0 received=0 lifetime=*"),
        ]
    );
}

#[test]
fn connect_that_fails_before_a_handshake() {
    require_root();
    // An IPv6-only socket cannot reach a v4-mapped address: connect() fails at once.
    let (lines, local, result) = connect_outcome("[::ffff:127.0.0.1]:9", &["--v6only"]);
    assert_eq!(result, "result ENETUNREACH");
    assert_eq!(local, "[::]:0");
    assert_eq!(
        lines,
        [
            "CONNECT tcp [::]:0 127.0.0.1:9 result=ENETUNREACH latency=*".to_string(),
            "CLOSE tcp [::]:0 * sent=0 received=0 lifetime=*".to_string(),
        ]
    );
}

#[test]
fn unanswered_connect_times_out() {
    require_root();
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType};
    // A listener that never accepts, with its queue already full, drops new SYNs.
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &nix::sys::socket::SockaddrStorage::from(any),
    )
    .unwrap();
    listen(&fd, Backlog::new(0).unwrap()).unwrap();
    let listener = std::net::TcpListener::from(fd);
    let target = listener.local_addr().unwrap().to_string();
    let _queued = std::net::TcpStream::connect(&target).unwrap();
    // One SYN retransmit: the kernel gives up after about 1 + 2 seconds.
    let (lines, local, result) = connect_outcome(&target, &["--syncnt", "1"]);
    assert_eq!(result, "result ETIMEDOUT");
    assert_eq!(
        lines,
        [
            format!("CONNECT tcp {local} {target} result=ETIMEDOUT latency=*"),
            format!("CLOSE tcp {local} {target} sent=0 received=0 lifetime=*"),
        ]
    );
}

#[test]
fn dual_stack_listener_shows_v4_peers_as_v4() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[&srv]);
    let (server, port) = echo_server(&srv, &["tcp", "[::]:0", "1"]);
    let local = run_client(
        "echo_client",
        &unique_name("c"),
        &["tcp", &format!("127.0.0.1:{port}"), "6"],
    );
    let pid = server.pid();
    server.finish();
    let keys = keys_of(&parse(&trace.stop().stdout), pid);
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(
        keys[1],
        format!("{srv} LISTEN tcp [::]:{port} * backlog=64")
    );
    assert_eq!(keys[2], format!("{srv} ACCEPT tcp {addr} {local}"));
    assert_eq!(keys[3], format!("{srv} RECV tcp {addr} {local} bytes=6"));
}

#[test]
fn untraced_processes_print_nothing() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[&srv]);
    // The client runs under a name of its own, not traced.
    let server_pid = one_echo(&srv, "5");
    let lines = parse(&trace.stop().stdout);
    assert_eq!(lines.len(), 9, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| l.pid == server_pid && l.process == srv),
        "{lines:#?}"
    );
}

#[test]
fn pid_filter_and_sockets_opened_before_tracing() {
    require_root();
    let srv = unique_name("s");
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let pid = server.pid().to_string();
    let trace = Trace::start(&["--pid", &pid]);
    assert!(
        trace.ready_line.contains(&format!("pid {pid}")),
        "{}",
        trace.ready_line
    );
    let addr = format!("127.0.0.1:{port}");
    let local = run_client("echo_client", &unique_name("c"), &["tcp", &addr, "8"]);
    server.finish();
    let lines = parse(&trace.stop().stdout);
    assert_lines(
        &lines,
        pid.parse().unwrap(),
        &[
            format!("{srv} ACCEPT tcp {addr} {local}"),
            format!("{srv} RECV tcp {addr} {local} bytes=8"),
            format!("{srv} SEND tcp {addr} {local} bytes=8"),
            format!("{srv} RECV tcp {addr} {local} bytes=0 eof"),
            format!("{srv} CLOSE tcp {addr} {local} sent=8 received=8 lifetime=*"),
            // The listener predates the trace: its lifetime counts from first sight.
            format!("{srv} CLOSE tcp {addr} * sent=0 received=0 lifetime=* partial"),
            exit_line(&srv),
        ],
    );
}

#[test]
fn close_totals_without_send_and_recv_lines() {
    require_root();
    rerun_if_skipped(|| {
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&["--events", "close", &srv, &cli]);
        let (server, port) = echo_server(&srv, &["tcp", "[::1]:0", "1"]);
        let addr = format!("[::1]:{port}");
        let local = run_client("echo_client", &cli, &["tcp", &addr, "100", "20000", "7"]);
        server.finish();
        let lines = parse(&trace.stop().stdout);
        let keys: Vec<String> = lines.iter().map(Line::key).collect();
        assert_eq!(
            keys,
            [
                format!("{cli} CLOSE tcp {local} {addr} sent=20107 received=20107 lifetime=*"),
                format!("{srv} CLOSE tcp {addr} {local} sent=20107 received=20107 lifetime=*"),
                format!("{srv} CLOSE tcp {addr} * sent=0 received=0 lifetime=*"),
            ],
            "{keys:#?}"
        );
    });
}

#[test]
fn json_lines_have_the_documented_keys() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&["--json", &srv, &cli]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let local = run_client(
        "echo_client",
        &cli,
        &["tcp", &format!("127.0.0.1:{port}"), "42"],
    );
    let (local_ip, local_port) = local.rsplit_once(':').unwrap();
    let server_pid = server.pid();
    server.finish();
    let out = trace.stop();
    assert!(!out.stdout.starts_with("TIME"), "no header in JSON mode");
    let events = json_lines(&out.stdout);
    let accept = events.iter().find(|e| e["event"] == "accept").unwrap();
    assert_eq!(accept["pid"], server_pid);
    assert_eq!(accept["process"], srv.as_str());
    assert_eq!(accept["protocol"], "tcp");
    assert_eq!(accept["local_addr"], "127.0.0.1");
    assert_eq!(accept["local_port"], port);
    assert_eq!(accept["remote_addr"], local_ip);
    assert_eq!(accept["remote_port"], local_port.parse::<u16>().unwrap());
    let connect = events.iter().find(|e| e["event"] == "connect").unwrap();
    assert_eq!(connect["result"], "ok");
    assert!(connect["latency_ns"].as_u64().unwrap() > 0);
    let eof = events
        .iter()
        .find(|e| e["event"] == "recv" && e["eof"] == true)
        .unwrap();
    assert_eq!(eof["bytes"], 0);
    let closes: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "close").collect();
    assert_eq!(closes.len(), 3);
    assert!(
        closes
            .iter()
            .filter(|c| c["sent"] == 42 && c["received"] == 42)
            .count()
            == 2
    );
    let exits: Vec<&serde_json::Value> = events.iter().filter(|e| e["event"] == "exit").collect();
    assert!(exits.iter().all(|e| e["exit_code"] == 0) && exits.len() == 2);
    for e in &events {
        assert!(e["time"].as_str().unwrap().len() >= 26, "{e}");
    }
}

#[test]
fn count_ends_a_smoke_check_with_success() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[
        "--events",
        "accept",
        "--count",
        "1",
        "--timeout",
        "60s",
        &srv,
    ]);
    one_echo(&srv, "1");
    let out = trace.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].event, "ACCEPT");
    assert!(
        out.stderr.contains("sockwatch: 1 event printed, 0 lost"),
        "{}",
        out.stderr
    );
}

#[test]
fn timeout_without_the_count_exits_3() {
    require_root();
    let start = Instant::now();
    let trace = Trace::start(&["--count", "1", "--timeout", "1s", &unique_name("n")]);
    let out = trace.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("sockwatch: 0 events printed, 0 lost; timed out before 1 event"),
        "{}",
        out.stderr
    );
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn duration_ends_with_success() {
    require_root();
    let trace = Trace::start(&["--duration", "500ms", &unique_name("n")]);
    let out = trace.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.ends_with("sockwatch: 0 events printed, 0 lost"),
        "{}",
        out.stderr
    );
}

#[test]
fn sigint_and_sigterm_end_cleanly_with_a_summary() {
    require_root();
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let srv = unique_name("s");
        let trace = Trace::start(&[&srv]);
        one_echo(&srv, "1");
        signal(trace.pid(), sig);
        let out = trace.wait(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{sig}: {}", out.stderr);
        // The events before the signal are all printed: detach, drain, flush.
        assert_eq!(parse(&out.stdout).len(), 9, "{sig}: {}", out.stdout);
        assert!(
            out.stderr.ends_with("sockwatch: 9 events printed, 0 lost"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn closed_pipe_ends_quietly_and_promptly() {
    require_root();
    let srv = unique_name("s");
    let (mut reader, writer) = std::io::pipe().unwrap();
    let trace = Trace::start_with(&["--no-header", &srv], writer.into());
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    // Like `| head -1`: read one line, then close the pipe.
    let mut first = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(&mut reader)
            .read_line(&mut first)
            .unwrap();
    }
    assert!(first.contains(" EXEC "), "{first}");
    drop(reader);
    let closed = Instant::now();
    let out = trace.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "took {:?}",
        closed.elapsed()
    );
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
    assert!(!out.stderr.contains("events printed"), "{}", out.stderr);
    run_client(
        "echo_client",
        &unique_name("c"),
        &["tcp", &format!("127.0.0.1:{port}"), "1"],
    );
    server.finish();
}

#[test]
fn killed_process_closes_its_sockets_at_exit() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[&srv]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let addr = format!("127.0.0.1:{port}");
    // Hold a connection open, then kill the server under it.
    let client = std::net::TcpStream::connect(&addr).unwrap();
    let local = client.local_addr().unwrap().to_string();
    {
        use std::io::{Read, Write};
        (&client).write_all(b"abc").unwrap();
        let mut back = [0u8; 3];
        (&client).read_exact(&mut back).unwrap();
    }
    let pid = server.pid();
    signal(pid, Signal::SIGKILL);
    let mut server = server;
    server.child.wait().unwrap();
    let lines = parse(&trace.stop().stdout);
    let mut keys = keys_of(&lines, pid);
    // The sockets a dying process still holds close in no particular order.
    keys[5..7].sort();
    assert_eq!(
        keys[2..],
        [
            format!("{srv} ACCEPT tcp {addr} {local}"),
            format!("{srv} RECV tcp {addr} {local} bytes=3"),
            format!("{srv} SEND tcp {addr} {local} bytes=3"),
            format!("{srv} CLOSE tcp {addr} * sent=0 received=0 lifetime=*"),
            format!("{srv} CLOSE tcp {addr} {local} sent=3 received=3 lifetime=*"),
            format!("{srv} EXIT - - - signal=SIGKILL"),
        ][..],
        "{keys:#?}"
    );
}

#[test]
fn hostile_names_are_escaped_in_text_and_valid_in_json() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    require_root();
    // A newline, a space, quotes, a tab, a backslash and a byte that is not UTF-8.
    let hostile = OsStr::from_bytes(b"ev\nFAKE \"q\"\t\\\xff");
    for json in [false, true] {
        let srv = unique_name("s");
        let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
        let mut args = vec![hostile];
        if json {
            args.push(OsStr::new("--json"));
        }
        let trace = Trace::start(&args);
        let addr = format!("127.0.0.1:{port}");
        let client_args = [
            OsStr::new("tcp"),
            OsStr::new(&addr),
            OsStr::new("4"),
            OsStr::new("--name"),
            hostile,
        ];
        run_client("echo_client", &unique_name("c"), &client_args);
        server.finish();
        let out = trace.stop();
        if json {
            let events = json_lines(&out.stdout);
            assert_eq!(events.len(), 5, "{}", out.stdout);
            for e in &events {
                assert_eq!(e["process"], "ev\nFAKE \"q\"\t\\\u{fffd}", "{e}");
            }
        } else {
            let lines = parse(&out.stdout);
            assert_eq!(lines.len(), 5, "{}", out.stdout);
            for l in &lines {
                assert_eq!(l.process, r#"ev\x0aFAKE\x20"q"\x09\\\xff"#, "{l:?}");
            }
            assert_eq!(
                lines.iter().map(|l| l.event.as_str()).collect::<Vec<_>>(),
                ["CONNECT", "SEND", "RECV", "CLOSE", "EXIT"]
            );
        }
    }
}

#[test]
fn long_names_match_the_kernels_truncation() {
    require_root();
    let long = format!("{}-and-more-words", unique_name("s"));
    let short = &long[..15];
    let trace = Trace::start(&[&long]);
    one_echo(&long, "1");
    let out = trace.stop();
    assert!(
        out.stderr
            .contains(&format!("matching \"{long}\" as \"{short}\"")),
        "{}",
        out.stderr
    );
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 9, "{}", out.stdout);
    assert!(lines.iter().all(|l| l.process == short));
}

#[test]
fn events_the_buffer_cannot_take_are_counted_not_dropped() {
    require_root();
    rerun_if_skipped(|| {
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&cli]);
        // Stall the reader so the 8 MiB buffer (about 75,000 events) overflows.
        let (out, generated) = stalled_flood(trace, &srv, &cli, 40_000);
        let printed = parse(&out.stdout).len() as u64;
        let summary = out.stderr.lines().last().unwrap();
        let lost = generated - printed;
        assert!(lost > 0, "nothing was lost: {summary}");
        assert_eq!(
            summary,
            format!("sockwatch: {printed} events printed, {lost} lost")
        );
        assert!(
            out.stderr.contains(&format!(
                "sockwatch: {lost} events lost (the event buffer was full); {lost} in all"
            )),
            "{}",
            out.stderr
        );
    });
}

#[test]
fn mounts_tracefs_when_it_is_not_mounted() {
    require_root();
    let o = with_private_mounts(
        r#"while umount /sys/kernel/tracing 2>/dev/null; do :; done
           [ -d /sys/kernel/tracing/events ] && { echo "still mounted" >&2; exit 99; }
           "$SOCKWATCH" --duration 200ms nothing-here; rc=$?
           [ -d /sys/kernel/tracing/events ] || exit 98
           exit $rc"#,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("sockwatch: tracing process nothing-here"),
        "{err}"
    );
}

#[test]
fn kernel_without_btf_is_a_clear_error() {
    require_root();
    let o = with_private_mounts(r#"mount -t tmpfs none /sys/kernel/btf && exec "$SOCKWATCH" x"#);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "sockwatch: error: this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): \
         sockwatch needs CONFIG_DEBUG_INFO_BTF=y\n"
    );
}

#[test]
fn missing_tracepoint_is_named() {
    require_root();
    let o = with_private_mounts(
        r#"mount -t tmpfs none /sys/kernel/tracing && mkdir /sys/kernel/tracing/events &&
           exec "$SOCKWATCH" --probe tracepoint --events send x"#,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "sockwatch: error: this kernel lacks the tracepoint sock:sock_send_length \
         (added in Linux 6.3; --probe fentry or kprobe hook the socket functions instead)\n"
    );
}

#[test]
fn a_daemons_listener_belongs_to_the_child_after_the_parent_exits() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&[&srv]);
    let mut parent = spawn_fresh_copy(
        std::process::Command::new(named_example("echo_server", &srv))
            .args(["tcp", "127.0.0.1:0", "1", "--fork"])
            .stdout(std::process::Stdio::piped()),
    );
    let parent_pid = parent.id();
    let mut ready = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(parent.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
    }
    assert!(parent.wait().unwrap().success());
    let port = ready.trim().strip_prefix("ready ").unwrap();
    let addr = format!("127.0.0.1:{port}");
    let local = run_client("echo_client", &unique_name("c"), &["tcp", &addr, "3"]);
    // The child exits once its one client is served.
    let deadline = Instant::now() + Duration::from_secs(20);
    let lines = loop {
        std::thread::sleep(Duration::from_millis(50));
        let done = std::fs::read_dir("/proc").unwrap().all(|e| {
            std::fs::read_to_string(e.unwrap().path().join("comm"))
                .map_or(true, |c| c.trim() != srv)
        });
        if done || Instant::now() > deadline {
            break parse(&trace.stop().stdout);
        }
    };
    // The parent's exit does not close the listener its child still holds.
    assert_lines(
        &lines,
        parent_pid,
        &[
            exec_line(&srv),
            format!("{srv} LISTEN tcp {addr} * backlog=64"),
            exit_line(&srv),
        ],
    );
    let child = lines
        .iter()
        .find(|l| l.pid != parent_pid)
        .expect("child lines")
        .pid;
    // The child's first line links it to its parent.
    let fork = lines.iter().find(|l| l.pid == child).unwrap();
    assert_eq!(fork.details, format!("ppid={parent_pid}"));
    assert_lines(
        &lines,
        child,
        &[
            format!("{srv} FORK - - - ppid=*"),
            format!("{srv} ACCEPT tcp {addr} {local}"),
            format!("{srv} RECV tcp {addr} {local} bytes=3"),
            format!("{srv} SEND tcp {addr} {local} bytes=3"),
            format!("{srv} RECV tcp {addr} {local} bytes=0 eof"),
            format!("{srv} CLOSE tcp {addr} {local} sent=3 received=3 lifetime=*"),
            format!("{srv} CLOSE tcp {addr} * sent=0 received=0 lifetime=*"),
            exit_line(&srv),
        ],
    );
}

/// exec releases close-on-exec sockets without a close(): CLOSE comes from the exec.
fn exec_releases(program: Option<&str>) -> (String, String, u32, Vec<String>) {
    require_root();
    let (srv, name) = (unique_name("s"), unique_name("x"));
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let trace = Trace::start(&[&name]);
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![addr.as_str(), "9"];
    args.extend(program);
    let w = Workload::spawn(&named_example("exec_with_sock", &name), &args);
    let (pid, local) = (w.pid(), w.value().to_string());
    w.finish();
    server.finish();
    let keys = keys_of(&parse(&trace.stop().stdout), pid);
    (name, local, pid, keys)
}

#[test]
fn exec_releases_close_on_exec_sockets() {
    let (name, local, _, keys) = exec_releases(None);
    let dir = copies_dir();
    let path = dir.join(&name).display().to_string();
    let peer = keys[1].split(' ').nth(4).unwrap().to_string();
    assert_eq!(
        keys,
        [
            format!("{name} EXEC - - - path={path} ppid=*"),
            format!("{name} CONNECT tcp {local} {peer} result=ok latency=*"),
            format!("{name} SEND tcp {local} {peer} bytes=9"),
            format!("{name} RECV tcp {local} {peer} bytes=9"),
            format!("{name} CLOSE tcp {local} {peer} sent=9 received=9 lifetime=*"),
            format!("{name} EXEC - - - path={path} ppid=*"),
            exit_line(&name),
        ]
    );
}

#[test]
fn exec_into_another_name_still_reports_the_close() {
    // After exec the process is named `true`: it leaves the trace, but the socket
    // it held was traced, so its CLOSE is reported, under the new name.
    let (name, local, _, keys) = exec_releases(Some("/bin/true"));
    let peer = keys[1].split(' ').nth(4).unwrap().to_string();
    assert_eq!(keys.len(), 5, "{keys:#?}");
    assert_eq!(keys[3], format!("{name} RECV tcp {local} {peer} bytes=9"));
    assert_eq!(
        keys[4],
        format!("true CLOSE tcp {local} {peer} sent=9 received=9 lifetime=*")
    );
}
