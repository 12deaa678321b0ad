//! Real clients and servers from Debian's packages under sockwatch: redis-server
//! with redis-cli, curl against python3's http.server, and memcached over UDP.
//! scripts/test installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(program: &str) -> std::path::PathBuf {
    let path = std::path::Path::new("/usr/bin").join(program);
    assert!(
        path.exists(),
        "{program} is missing: scripts/test installs it"
    );
    path
}

#[test]
fn redis_cli_and_redis_server() {
    require_root();
    let (server_bin, cli_bin) = (installed("redis-server"), installed("redis-cli"));
    let port = free_port().to_string();
    let trace = Trace::start(&["redis-server", "redis-cli"]);
    let mut server = start_redis(&port);
    let cli = |args: &[&str]| {
        let o = Command::new(&cli_bin)
            .args(["-p", &port])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(cli(&["SET", "sockwatch", "12345"]), "OK\n");
    assert_eq!(cli(&["GET", "sockwatch"]), "12345\n");
    signal(server.id(), nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait().unwrap().success());
    let lines = parse(&trace.stop().stdout);

    let srv = format!("127.0.0.1:{port}");
    let clients: Vec<&Line> = lines.iter().filter(|l| l.event == "CONNECT").collect();
    assert_eq!(clients.len(), 2, "{lines:#?}");
    let (set, get) = (&clients[0].local, &clients[1].local);
    // RESP: *3 $3 SET $9 sockwatch $5 12345 is 39 bytes, +OK 5; *2 $3 GET $9 sockwatch 28, $5 12345 11.
    assert_lines(
        &lines,
        clients[0].pid,
        &[
            "redis-cli EXEC - - - path=/usr/bin/redis-cli ppid=*".into(),
            format!("redis-cli CONNECT tcp {set} {srv} result=ok latency=*"),
            format!("redis-cli SEND tcp {set} {srv} bytes=39"),
            format!("redis-cli RECV tcp {set} {srv} bytes=5"),
            format!("redis-cli CLOSE tcp {set} {srv} sent=39 received=5 lifetime=*"),
            "redis-cli EXIT - - - exit_code=0".into(),
        ],
    );
    assert_lines(
        &lines,
        clients[1].pid,
        &[
            "redis-cli EXEC - - - path=/usr/bin/redis-cli ppid=*".into(),
            format!("redis-cli CONNECT tcp {get} {srv} result=ok latency=*"),
            format!("redis-cli SEND tcp {get} {srv} bytes=28"),
            format!("redis-cli RECV tcp {get} {srv} bytes=11"),
            format!("redis-cli CLOSE tcp {get} {srv} sent=28 received=11 lifetime=*"),
            "redis-cli EXIT - - - exit_code=0".into(),
        ],
    );
    let r = |rest: String| format!("redis-server {rest}");
    assert_lines(
        &lines,
        server.id(),
        &[
            r(format!("EXEC - - - path={} ppid=*", server_bin.display())),
            r(format!("LISTEN tcp {srv} * backlog=511")),
            r(format!("ACCEPT tcp {srv} {set}")),
            r(format!("RECV tcp {srv} {set} bytes=39")),
            r(format!("SEND tcp {srv} {set} bytes=5")),
            r(format!("RECV tcp {srv} {set} bytes=0 eof")),
            r(format!(
                "CLOSE tcp {srv} {set} sent=5 received=39 lifetime=*"
            )),
            r(format!("ACCEPT tcp {srv} {get}")),
            r(format!("RECV tcp {srv} {get} bytes=28")),
            r(format!("SEND tcp {srv} {get} bytes=11")),
            r(format!("RECV tcp {srv} {get} bytes=0 eof")),
            r(format!(
                "CLOSE tcp {srv} {get} sent=11 received=28 lifetime=*"
            )),
            r(format!("CLOSE tcp {srv} * sent=0 received=0 lifetime=*")),
            r("EXIT - - - exit_code=0".into()),
        ],
    );
}

fn total(lines: &[Line], pid: u32, event: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l.pid == pid && l.event == event)
        .map(|l| {
            l.details
                .strip_prefix("bytes=")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

#[test]
fn curl_against_python_http_server() {
    require_root();
    let (python, curl) = (installed("python3"), installed("curl"));
    let dir = std::env::temp_dir().join(format!("sockwatch-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("blob"), vec![7u8; 12345]).unwrap();
    let port = free_port().to_string();
    // TCP: curl's name lookups also try nscd's unix-domain socket.
    let trace = Trace::start(&["--proto", "tcp", "curl", "python3"]);
    let mut server = Command::new(&python)
        .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "-d"])
        .arg(&dir)
        .arg(&port)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    assert!(banner.starts_with("Serving HTTP"), "{banner}");
    let url = format!("http://127.0.0.1:{port}/blob");
    let o = Command::new(&curl)
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_request} %{size_header} %{size_download}",
            &url,
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let sizes: Vec<u64> = String::from_utf8(o.stdout)
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    let (request, header, body) = (sizes[0], sizes[1], sizes[2]);
    assert_eq!(body, 12345);
    server.kill().unwrap();
    server.wait().unwrap();
    let lines = parse(&trace.stop().stdout);

    let curl_pid = pid_of(&lines, "curl");
    let keys = keys_of(&lines, curl_pid);
    let connect = lines
        .iter()
        .find(|l| l.pid == curl_pid && l.event == "CONNECT")
        .unwrap();
    let (local, srv) = (&connect.local, format!("127.0.0.1:{port}"));
    assert_eq!(
        keys.first().unwrap(),
        &format!("curl EXEC - - - path={} ppid=*", curl.display())
    );
    assert_eq!(
        keys[1],
        format!("curl CONNECT tcp {local} {srv} result=ok latency=*")
    );
    // Every byte curl says it moved, sockwatch saw: on both ends.
    assert_eq!(total(&lines, curl_pid, "SEND"), request);
    assert_eq!(total(&lines, curl_pid, "RECV"), header + body);
    let close = format!(
        "curl CLOSE tcp {local} {srv} sent={request} received={} lifetime=*",
        header + body
    );
    assert!(keys.contains(&close), "{keys:#?}");
    assert_eq!(keys.last().unwrap(), "curl EXIT - - - exit_code=0");

    let py = server.id();
    assert_eq!(total(&lines, py, "RECV"), request);
    assert_eq!(total(&lines, py, "SEND"), header + body);
    let py_keys = keys_of(&lines, py);
    assert!(
        py_keys.contains(&format!("python3 LISTEN tcp {srv} * backlog=5")),
        "{py_keys:#?}"
    );
    assert!(
        py_keys.contains(&format!("python3 ACCEPT tcp {srv} {local}")),
        "{py_keys:#?}"
    );
    assert!(
        py_keys.contains(&format!(
            "python3 CLOSE tcp {srv} {local} sent={} received={request} lifetime=*",
            header + body
        )),
        "{py_keys:#?}"
    );
    // Killed by SIGKILL: its listener closes at exit.
    assert_eq!(py_keys.last().unwrap(), "python3 EXIT - - - signal=SIGKILL");
}

/// memcached -U dups its UDP socket's descriptor: the dup still holds it when the
/// process exits, and its CLOSE comes then (the tracepoint mode once missed it).
#[test]
fn memcached_udp_socket_held_twice_closes_at_exit() {
    require_root();
    let bin = installed("memcached");
    let port = free_port().to_string();
    let trace = Trace::start(&["memcached"]);
    let mut server = Command::new(&bin)
        .args(["-u", "nobody", "-l", "127.0.0.1", "-p", &port, "-U", &port])
        .spawn()
        .unwrap();
    // Served: a UDP request (an 8-byte frame header, then the command) is answered.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut reply = [0u8; 64];
    let mut answered = false;
    for _ in 0..50 {
        udp.send_to(
            b"\x00\x01\x00\x00\x00\x01\x00\x00version\r\n",
            format!("127.0.0.1:{port}"),
        )
        .unwrap();
        if udp.recv(&mut reply).is_ok() {
            answered = true;
            break;
        }
    }
    assert!(answered, "memcached never answered over UDP");
    signal(server.id(), nix::sys::signal::Signal::SIGTERM);
    server.wait().unwrap();
    let lines = parse(&trace.stop().stdout);
    let keys = keys_of(&lines, server.id());
    let srv = format!("127.0.0.1:{port}");
    let close = keys
        .iter()
        .find(|k| k.starts_with(&format!("memcached CLOSE udp {srv} * ")))
        .unwrap_or_else(|| panic!("no CLOSE of the UDP socket: {keys:#?}"));
    let (sent, received) = (detail_of(close, "sent"), detail_of(close, "received"));
    assert!(sent > 0 && received > 0, "{close}");
    assert!(keys.contains(&format!(
        "memcached CLOSE tcp {srv} * sent=0 received=0 lifetime=*"
    )));
    assert_eq!(keys.last().unwrap(), "memcached EXIT - - - exit_code=0");
}

fn detail_of(key: &str, name: &str) -> u64 {
    key.split(' ')
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap()
        .parse()
        .unwrap()
}

/// redis-cli learns a connect's outcome with a second connect(): each of its two
/// attempts at a closed port is one CONNECT line, and one CONN-FAIL in the table.
#[test]
fn redis_cli_at_a_closed_port_one_line_per_attempt() {
    require_root();
    installed("redis-cli");
    let port = free_port().to_string();
    let trace = Trace::start(&[
        "-C",
        "-e",
        "connect",
        "--",
        "redis-cli",
        "-p",
        &port,
        "ping",
    ]);
    let out = trace.wait(std::time::Duration::from_secs(30));
    let (events, table) = out.stdout.split_once("\nPROCESS ").unwrap();
    let lines = parse(events);
    let srv = format!("127.0.0.1:{port}");
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    assert_eq!(lines.len(), 2, "{keys:#?}");
    for l in &lines {
        assert_eq!(
            l.key(),
            format!(
                "redis-cli CONNECT tcp {} {srv} result=ECONNREFUSED latency=*",
                l.local
            )
        );
        assert!(l.local.starts_with("127.0.0.1:"), "{keys:#?}");
    }
    assert_ne!(lines[0].local, lines[1].local);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row, ["redis-cli", &srv, "0", "2", "-", "-", "-", "-"]);
}
