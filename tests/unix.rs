//! Unix-domain sockets: stream, seqpacket and datagram sockets, socketpairs,
//! abstract and unnamed addresses, peers, filters and assertions, with
//! examples/unix_sockets and real programs from Debian's packages (socat, redis,
//! PostgreSQL, nginx, dbus-daemon).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A directory of the test's own beside the copied examples (removed by the OS's tmp).
fn scratch(name: &str) -> PathBuf {
    let dir = named_example("unix_sockets", name).with_extension("d");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A program from Debian's packages copied under a name of the test's own into
/// its scratch directory: (name, directory, the copy).
fn program_copy(program: &str, role: &str) -> (String, PathBuf, PathBuf) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing: scripts/test installs it"
    );
    let name = unique_name(role);
    let dir = scratch(&name);
    let bin = dir.join(&name);
    std::fs::copy(program, &bin).unwrap();
    (name, dir, bin)
}

/// Until a server has made its socket at `path` (10 s at most).
fn wait_for_socket(path: &Path, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{server} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs examples/unix_sockets under `name` in `dir`; returns its pid and its
/// children's, in the order it started them.
fn run_example(name: &str, dir: &Path) -> (u32, Vec<u32>) {
    let w = Workload::spawn(&named_example("unix_sockets", name), &[dir]);
    let pid: u32 = w.value().parse().unwrap();
    let rest = w.finish();
    assert_eq!(rest.last().map(String::as_str), Some("done"), "{rest:?}");
    let children = rest
        .iter()
        .filter_map(|l| l.strip_prefix("child "))
        .map(|p| p.parse().unwrap())
        .collect();
    (pid, children)
}

#[test]
fn every_kind_of_unix_socket_with_its_paths_peers_and_bytes() {
    require_root();
    let name = unique_name("ux");
    let dir = scratch(&name);
    let trace = Trace::start(&[&name]);
    let (pid, children) = run_example(&name, &dir);
    let out = trace.stop();
    let lines = parse(&out.stdout);
    for (who, expected) in unix_example_lines(&name, &dir, pid, &children) {
        assert_eq!(
            socket_keys_of(&lines, who),
            expected,
            "{:#?}",
            keys_of(&lines, who)
        );
    }
    // And the processes around the sockets.
    let processes = |who: u32| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.pid == who && l.proto == "-")
            .map(Line::key)
            .collect()
    };
    let path = format!("{}/{name}", dir.parent().unwrap().display());
    assert_eq!(
        processes(pid),
        [
            format!("{name} EXEC - - - path={path} ppid=*"),
            format!("{name} EXIT - - - exit_code=0")
        ]
    );
    for child in children {
        assert_eq!(
            processes(child),
            [
                format!("{name} FORK - - - ppid=*"),
                format!("{name} EXIT - - - exit_code=0")
            ]
        );
    }
    out.assert_stderr_ends(&format!(
        "sockwatch: {} events printed, 0 lost",
        lines.len()
    ));
}

#[test]
fn json_names_paths_abstract_names_and_peers() {
    require_root();
    let name = unique_name("uj");
    let dir = scratch(&name);
    let trace = Trace::start(&["--json", "-e", "connect,accept,recv", &name]);
    let (pid, children) = run_example(&name, &dir);
    let out = trace.stop();
    let events = json_lines(&out.stdout);
    let srv = dir.join("srv sock\n1").to_str().unwrap().to_string();
    let accept = events.iter().find(|e| e["event"] == "accept").unwrap();
    assert_eq!(accept["protocol"], "unix");
    assert_eq!(accept["socket_type"], "stream");
    assert_eq!(accept["local_path"], srv.as_str());
    assert_eq!(accept["remote_path"], "");
    assert_eq!(accept["peer_pid"], children[0]);
    assert_eq!(accept["peer_process"], name.as_str());
    assert!(accept.get("local_port").is_none() && accept.get("remote_addr").is_none());
    let failed = events
        .iter()
        .find(|e| e["event"] == "connect" && e["result"] == "ENOENT")
        .unwrap();
    assert_eq!(failed["local_path"], "");
    assert_eq!(failed["remote_path"], dir.join("missing").to_str().unwrap());
    let datagram = events
        .iter()
        .find(|e| e["event"] == "recv" && e["socket_type"] == "dgram")
        .unwrap();
    assert_eq!(datagram["local_path"], format!("@sockwatch-{pid}"));
    assert_eq!(datagram["local_abstract"], true);
    assert_eq!(datagram["remote_path"], "");
    assert_eq!(datagram["bytes"], 9);
    assert!(datagram.get("remote_abstract").is_none());
}

#[test]
fn filters_and_assertions_about_paths_and_protocols() {
    require_root();
    let name = unique_name("uf");
    let dir = scratch(&name);
    let seq = dir.join("seq.sock");
    let missing = dir.join("missing");
    // Only the seqpacket socket's path; an exact --path and a prefix.
    let trace = Trace::start(&[
        "--path",
        seq.to_str().unwrap(),
        "--path",
        &format!("{}/", dir.join("nothing-here").display()),
        "-e",
        "listen,close",
        &name,
    ]);
    run_example(&name, &dir);
    let lines = parse(&trace.stop().stdout);
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    let seq_shown = shown(&seq);
    assert_eq!(
        keys,
        [
            format!("{name} LISTEN unix/seqpacket {seq_shown} * backlog=8"),
            format!(
                "{name} CLOSE unix/seqpacket (unnamed) {seq_shown} sent=300 received=0 lifetime=*"
            ),
            format!(
                "{name} CLOSE unix/seqpacket {seq_shown} (unnamed) sent=0 received=300 lifetime=*"
            ),
            format!("{name} CLOSE unix/seqpacket {seq_shown} * sent=0 received=0 lifetime=*"),
        ],
        "{keys:#?}"
    );

    // A directory prefix and an abstract name; --proto tcp shows none of them.
    let trace = Trace::start(&[
        "--proto",
        "unix",
        "--path",
        &format!("{}/", dir.display()),
        "-e",
        "listen",
        &name,
    ]);
    let (pid, _) = run_example(&name, &dir);
    let lines = parse(&trace.stop().stdout);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let trace = Trace::start(&["--path", &format!("@sockwatch-{}", pid + 1000000), &name]);
    let tcp = Trace::start(&["--proto", "tcp", &name]);
    run_example(&name, &dir);
    let none = parse(&trace.stop().stdout);
    assert!(none.iter().all(|l| l.proto == "-"), "{none:#?}");
    // Left out, unix-domain sockets are not tracked either: none is reported missing.
    let out = tcp.stop();
    let none = parse(&out.stdout);
    assert!(none.iter().all(|l| l.proto == "-"), "{none:#?}");
    out.assert_stderr_ends(&format!("sockwatch: {} events printed, 0 lost", none.len()));

    // Assertions: the failed connect to a path, and a forbidden one.
    let trace = Trace::start(&[
        "-e",
        "exec",
        "--expect",
        &format!("connect path={} result=ENOENT", missing.display()),
        "--expect",
        "connect proto=unix result=ECONNREFUSED",
        "--expect",
        "recv path=@sockwatch-0",
        &name,
    ]);
    run_example(&name, &dir);
    let out = trace.stop();
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(
        out.stderr.ends_with(
            "sockwatch: expectation not met: no event matched --expect 'recv path=@sockwatch-0'"
        ),
        "{}",
        out.stderr
    );
    let dead = dir.join("dead.sock");
    let out = Command::new(SOCKWATCH)
        .args(["-e", "connect", "--forbid"])
        .arg(format!("connect path={}", dead.display()))
        .arg("--")
        .arg(named_example("unix_sockets", &name))
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("forbidden event seen: CONNECT by {name} (pid "))
            && stderr.contains(&format!(
                "with {} matched --forbid 'connect path={}'",
                dead.display(),
                dead.display()
            )),
        "{stderr}"
    );
}

#[test]
fn the_summary_has_a_row_per_path() {
    require_root();
    rerun_if_skipped(|| {
        let name = unique_name("us");
        let dir = scratch(&name);
        let trace = Trace::start(&["-c", &name]);
        let (pid, _) = run_example(&name, &dir);
        let out = trace.stop();
        let table = out.stdout.split_once("PROCESS ").unwrap().1;
        let rows: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let row = |remote: &str| -> Vec<&str> {
            rows.iter()
                .find(|r| r[1] == remote)
                .unwrap_or_else(|| panic!("no row for {remote}: {rows:#?}"))[2..]
                .to_vec()
        };
        // A row per path: the peer's when named, else the socket's own.
        // CONN-OK CONN-FAIL ACCEPTS SENT RECEIVED CLOSED
        assert_eq!(
            row(&shown(&dir.join("srv sock\n1"))),
            ["1", "0", "1", "22", "22", "3"]
        );
        assert_eq!(
            row(&shown(&dir.join("seq.sock"))),
            ["1", "0", "1", "300", "300", "3"]
        );
        assert_eq!(
            row(&format!("@sockwatch-{pid}")),
            ["1", "0", "0", "13", "9", "2"]
        );
        // The abstract name's receive from the bound client is about the client's path.
        assert_eq!(
            row(&shown(&dir.join("c.sock"))),
            ["0", "0", "0", "0", "4", "0"]
        );
        // Socketpairs: the two ends of step 3, of step 6's channel, and the one passed.
        assert_eq!(row("(unnamed)"), ["0", "0", "0", "20", "20", "6"]);
        assert_eq!(
            row(&shown(&dir.join("missing"))),
            ["0", "1", "0", "0", "0", "0"]
        );
        assert_eq!(
            row(&shown(&dir.join("dead.sock"))),
            ["0", "1", "0", "0", "0", "1"]
        );
        // Closed with no peer and no name: the unbound sender, the failed connects'.
        assert_eq!(row("*"), ["0", "0", "0", "0", "0", "3"]);
        assert_eq!(rows.len(), 8, "{rows:#?}");
    });
}

/// socat relays a file over a unix-domain socket: the bytes are the file's.
#[test]
fn socat_over_a_unix_socket() {
    require_root();
    let (name, dir, bin) = program_copy("/usr/bin/socat", "so");
    let path = dir.join("relay.sock");
    let data = dir.join("data");
    std::fs::write(&data, vec![b'z'; 100_000]).unwrap();
    let received = dir.join("received");
    let trace = Trace::start(&["-e", "listen,connect,accept,close", &name]);
    let mut server = spawn_fresh_copy(
        Command::new(&bin)
            .arg("-u")
            .arg(format!("UNIX-LISTEN:{}", path.display()))
            .arg(format!("CREATE:{}", received.display())),
    );
    wait_for_socket(&path, "socat");
    let status = Command::new(&bin)
        .arg("-u")
        .arg(format!("OPEN:{}", data.display()))
        .arg(format!("UNIX-CONNECT:{}", path.display()))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.wait().unwrap().success());
    assert_eq!(std::fs::read(&received).unwrap().len(), 100_000);
    let lines = parse(&trace.stop().stdout);
    let at = shown(&path);
    let connects: Vec<&Line> = lines.iter().filter(|l| l.event == "CONNECT").collect();
    assert_eq!(connects.len(), 1, "{lines:#?}");
    let client = connects[0].pid;
    let server_pid = server.id();
    let closes = |pid: u32| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.pid == pid && l.event == "CLOSE" && l.proto == "unix/stream")
            .map(Line::key)
            .collect()
    };
    assert_eq!(
        closes(client),
        [format!(
            "{name} CLOSE unix/stream (unnamed) {at} sent=100000 received=0 lifetime=*"
        )]
    );
    // socat lets the listener go before the connection.
    assert_eq!(
        closes(server_pid),
        [
            format!("{name} CLOSE unix/stream {at} * sent=0 received=0 lifetime=*"),
            format!("{name} CLOSE unix/stream {at} (unnamed) sent=0 received=100000 lifetime=*"),
        ]
    );
}

/// Debian's dbus-daemon answering examples/dbus_calls on its bus socket: the
/// daemon's CLOSE for the connection carries the bytes the client counted it read
/// and wrote, the authentication included.
#[test]
fn dbus_daemon_totals_match_what_its_client_counted() {
    require_root();
    rerun_if_skipped(|| {
        let (name, dir, bin) = program_copy("/usr/bin/dbus-daemon", "db");
        let bus = dir.join("bus");
        let conf = dir.join("bus.conf");
        std::fs::write(&conf, bus_config(bus.to_str().unwrap())).unwrap();
        let trace = Trace::start(&["-e", "accept,close", &name]);
        let mut server = spawn_fresh_copy(
            Command::new(&bin)
                .arg(format!("--config-file={}", conf.display()))
                .arg("--nofork")
                .stderr(Stdio::null()),
        );
        wait_for_socket(&bus, "dbus-daemon");
        let client = Command::new(named_example("dbus_calls", &unique_name("dc")))
            .arg(&bus)
            .arg("1000")
            .output()
            .unwrap();
        assert!(client.status.success(), "{client:?}");
        let report = String::from_utf8(client.stdout).unwrap();
        let counted: Vec<&str> = report.lines().next().unwrap().split(' ').collect();
        let ["calls", "1000", "sent", sent, "received", received] = counted[..] else {
            panic!("{report}");
        };
        // The daemon lets the connection go once the client has; then it is stopped.
        std::thread::sleep(Duration::from_millis(300));
        signal(server.id(), nix::sys::signal::Signal::SIGTERM);
        server.wait().unwrap();
        let lines = parse(&trace.stop().stdout);
        let at = shown(&bus);
        let connection: Vec<String> = lines
            .iter()
            .filter(|l| {
                l.pid == server.id() && l.event == "CLOSE" && l.local == at && l.remote != "*"
            })
            .map(Line::key)
            .collect();
        assert_eq!(
            connection,
            [format!(
                "{name} CLOSE unix/stream {at} (unnamed) sent={received} received={sent} lifetime=*"
            )],
            "{lines:#?}"
        );
    });
}

/// A redis stats field from INFO's text.
fn info_field(info: &str, key: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

/// redis-benchmark against redis-server's unix socket: sockwatch's totals for
/// the server equal what redis counts itself (INFO's total_net_*_bytes).
#[test]
fn redis_benchmark_over_a_unix_socket_matches_redis_own_counts() {
    require_root();
    rerun_if_skipped(|| {
        let dir = scratch(&unique_name("rb"));
        let path = dir.join("redis.sock");
        let trace = Trace::start(&["-c", "redis-server", "redis-benchmark"]);
        let mut server = start_redis_on(&["--port", "0", "--unixsocket", path.to_str().unwrap()]);
        let bench = Command::new("/usr/bin/redis-benchmark")
            .arg("-s")
            .arg(&path)
            .args(["-n", "2000", "-c", "4", "-t", "ping,set,get", "-q"])
            .output()
            .expect("redis-benchmark is missing: scripts/test installs it");
        assert!(bench.status.success());
        // INFO from this test (untraced): its request is in redis's input count, its
        // reply is written after the counts in it were taken.
        let request = b"INFO stats\r\n";
        let mut conn = UnixStream::connect(&path).unwrap();
        conn.write_all(request).unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "redis closed the connection");
            reply.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&reply);
            if let Some((head, body)) = text.split_once("\r\n") {
                let len: usize = head[1..].parse().unwrap();
                if body.len() >= len + 2 {
                    break;
                }
            }
        }
        drop(conn);
        let info = String::from_utf8_lossy(&reply).into_owned();
        signal(server.id(), nix::sys::signal::Signal::SIGTERM);
        assert!(server.wait().unwrap().success());
        let out = trace.stop();
        let at = shown(&path);
        let table = out.stdout.split_once("PROCESS ").unwrap().1;
        let row = |process: &str| -> Vec<u64> {
            let line = table
                .lines()
                .find(|l| l.starts_with(&format!("{process} ")))
                .unwrap_or_else(|| panic!("no {process} row: {}", out.stdout));
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells[1], at, "{line}");
            cells[2..].iter().map(|c| c.parse().unwrap()).collect()
        };
        // CONN-OK CONN-FAIL ACCEPTS SENT RECEIVED CLOSED
        let (srv, bench) = (row("redis-server"), row("redis-benchmark"));
        let input = info_field(&info, "total_net_input_bytes");
        let output = info_field(&info, "total_net_output_bytes");
        assert_eq!(srv[4], input, "{info}");
        assert_eq!(srv[3], output + reply.len() as u64, "{info}");
        assert_eq!(bench[3], input - request.len() as u64);
        assert_eq!(bench[4], output);
        assert_eq!(
            srv[2],
            bench[0] + 1,
            "the accepts: the benchmark's and the test's"
        );
        assert_eq!(bench[1], 0);
        assert!(out.stderr.ends_with(" 0 lost"), "{}", out.stderr);
    });
}

/// PostgreSQL's psql over the server's local socket: the client's totals are the
/// server's the other way round, and each side names the other's process.
#[test]
fn psql_over_postgresql_local_socket() {
    require_root();
    let bin = Path::new("/usr/lib/postgresql/15/bin");
    assert!(
        bin.join("postgres").exists(),
        "PostgreSQL 15 is missing: scripts/test installs it"
    );
    let dir = scratch(&unique_name("pg"));
    let data = dir.join("data");
    let user = nix::unistd::User::from_name("postgres")
        .unwrap()
        .expect("the postgres user (PostgreSQL's package makes it)");
    let as_postgres = |program: &str| {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(bin.join(program));
        c.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        c
    };
    std::fs::create_dir_all(&data).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(chown.success());
    let init = as_postgres("initdb")
        .args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let trace = Trace::start(&["postgres", "psql"]);
    let mut server = as_postgres("postgres")
        .arg("-D")
        .arg(&data)
        .args(["-c", "listen_addresses=", "-c"])
        .arg(format!("unix_socket_directories={}", dir.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.join(".s.PGSQL.5432");
    let deadline = Instant::now() + Duration::from_secs(30);
    let query = || {
        Command::new("psql")
            .arg("-h")
            .arg(&dir)
            .args(["-U", "postgres", "-At", "-c", "select 40 + 2"])
            .output()
            .unwrap()
    };
    while !socket.exists() || !query().status.success() {
        assert!(Instant::now() < deadline, "postgres did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = query();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    signal(server.id(), nix::sys::signal::Signal::SIGTERM);
    assert!(server.wait().unwrap().success());
    let lines = parse(&trace.stop().stdout);
    let at = shown(&socket);
    // The last psql run, and the backend that served it.
    let connect = lines
        .iter()
        .rfind(|l| l.process == "psql" && l.event == "CONNECT")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    let client = connect.pid;
    let server_pid = server.id();
    let key = connect.key();
    assert!(
        key.starts_with(&format!(
            "psql CONNECT unix/stream (unnamed) {at} result=ok latency=* peer_pid={server_pid} peer=postgres"
        )),
        "{key}"
    );
    let accept = lines
        .iter()
        .find(|l| l.event == "ACCEPT" && detail(l, "peer_pid") == Some(&client.to_string()))
        .unwrap_or_else(|| panic!("no ACCEPT of psql {client}: {lines:#?}"));
    assert_eq!(accept.pid, server_pid);
    assert_eq!(
        accept.key(),
        format!("postgres ACCEPT unix/stream {at} (unnamed) peer_pid={client} peer=psql")
    );
    let sum = |pid: u32, event: &str| -> u64 {
        lines
            .iter()
            .filter(|l| l.pid == pid && l.event == event && l.proto == "unix/stream")
            .map(|l| detail(l, "bytes").unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let close = |pid: u32, remote: &str| -> (u64, u64) {
        let l = lines
            .iter()
            .find(|l| l.pid == pid && l.event == "CLOSE" && l.remote == remote)
            .unwrap_or_else(|| panic!("no CLOSE of {pid} with {remote}: {lines:#?}"));
        (
            detail(l, "sent").unwrap().parse().unwrap(),
            detail(l, "received").unwrap().parse().unwrap(),
        )
    };
    let (sent, received) = close(client, &at);
    assert_eq!((sent, received), (sum(client, "SEND"), sum(client, "RECV")));
    assert!(sent > 0 && received > 0);
    // The backend is a child of the server, forked for the connection.
    let backend = lines
        .iter()
        .find(|l| {
            l.event == "CLOSE"
                && l.local == at
                && l.remote == "(unnamed)"
                && detail(l, "received") == Some(&sent.to_string())
        })
        .unwrap_or_else(|| panic!("no backend CLOSE with received={sent}: {lines:#?}"));
    assert_eq!(backend.process, "postgres");
    assert_eq!(detail(backend, "sent"), Some(received.to_string().as_str()));
    assert_eq!(sum(backend.pid, "RECV"), sent);
    assert_eq!(sum(backend.pid, "SEND"), received);
}

/// A unix-domain socket passed to a process sockwatch does not trace, which lets
/// it go: the tracepoint mode has no hook there, so its CLOSE is missing, and the
/// run says so rather than end as if nothing were.
#[test]
fn a_unix_socket_let_go_by_an_untraced_process_is_reported_missing() {
    require_root();
    let name = unique_name("up");
    let dir = scratch(&name);
    let path = dir.join("handoff");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let trace = Trace::start(&["-e", "send,close", &name]);
    let mut w = Workload::spawn(
        &named_example("pass_socket", &name),
        &["pair", path.to_str().unwrap()],
    );
    let (conn, _) = listener.accept().unwrap();
    let passed = receive_descriptor(&conn);
    assert_eq!(w.next_line(), "passed");
    // This process, untraced, is the last holder.
    drop(passed);
    std::thread::sleep(Duration::from_millis(200));
    drop(conn);
    w.finish();
    let out = trace.stop();
    let lines = parse(&out.stdout);
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    let at = shown(&path);
    assert!(
        keys.contains(&format!(
            "{name} SEND unix/stream (unnamed) (unnamed) bytes=3"
        )) && keys.contains(&format!(
            "{name} SEND unix/stream (unnamed) {at} bytes=1 fds=1"
        )),
        "{keys:#?}"
    );
    // The passed end never closes in sight; its peer and the hand-off connection do.
    assert!(
        !keys.contains(&format!(
            "{name} CLOSE unix/stream (unnamed) (unnamed) sent=3 received=0 lifetime=*"
        )),
        "{keys:#?}"
    );
    assert!(
        keys.contains(&format!(
            "{name} CLOSE unix/stream (unnamed) (unnamed) sent=0 received=3 lifetime=*"
        )),
        "{keys:#?}"
    );
    out.assert_stderr_ends(&format!(
        "sockwatch: {} events printed, 0 lost, 1 CLOSE line missed",
        lines.len()
    ));
}

/// nginx proxying to an upstream on a unix-domain socket (its own second server):
/// the proxied connection's totals, both ends, are what nginx logs for the
/// upstream request ($request_length, $bytes_sent).
#[test]
fn nginx_proxy_to_a_unix_socket_upstream() {
    require_root();
    let nginx = Path::new("/usr/sbin/nginx");
    assert!(nginx.exists(), "nginx is missing: scripts/test installs it");
    let dir = scratch(&unique_name("ng"));
    let port = free_port();
    let up = dir.join("up.sock");
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  log_format sizes '$request_length $bytes_sent';
  server {{
    listen unix:{d}/up.sock;
    access_log {d}/upstream.log sizes;
    location / {{ return 200 'from the upstream'; }}
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://unix:{d}/up.sock:/; }}
  }}
}}
"
        ),
    )
    .unwrap();
    let trace = Trace::start(&["-e", "connect,accept,close", "nginx"]);
    let mut server = Command::new(nginx).arg("-c").arg(&conf).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the upstream");
    std::thread::sleep(Duration::from_millis(300));
    signal(server.id(), nix::sys::signal::Signal::SIGQUIT);
    assert!(server.wait().unwrap().success());
    let lines = parse(&trace.stop().stdout);
    let log = std::fs::read_to_string(dir.join("upstream.log")).unwrap();
    let logged: Vec<u64> = log.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let [request_length, bytes_sent] = logged[..] else {
        panic!("one upstream request: {log:?}")
    };
    let at = shown(&up);
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    let has = |key: String| {
        assert!(keys.contains(&key), "{key}\n{keys:#?}");
    };
    // The proxy's end, and the upstream's, of the one connection.
    has(format!(
        "nginx CLOSE unix/stream (unnamed) {at} sent={request_length} received={bytes_sent} lifetime=*"
    ));
    has(format!(
        "nginx CLOSE unix/stream {at} (unnamed) sent={bytes_sent} received={request_length} lifetime=*"
    ));
    let connect = lines
        .iter()
        .find(|l| l.event == "CONNECT" && l.remote == at)
        .unwrap_or_else(|| panic!("{keys:#?}"));
    assert!(
        connect.key().starts_with(&format!(
            "nginx CONNECT unix/stream (unnamed) {at} result=ok latency=* peer_pid="
        )),
        "{}",
        connect.key()
    );
}

/// CONNECT's real result where the kernel refuses: EAGAIN from a listener whose
/// backlog is full (non-blocking), EACCES for a process that may not write the
/// socket file (root's, mode 755, after setuid to nobody).
#[test]
fn a_full_backlog_and_a_forbidden_path_are_connect_results() {
    require_root();
    let dir = scratch(&unique_name("ux"));
    let path = dir.join("full.sock");
    let script = "import os, socket, sys\n\
        p = sys.argv[1]\n\
        srv = socket.socket(socket.AF_UNIX)\n\
        srv.bind(p)\n\
        srv.listen(0)\n\
        os.chmod(p, 0o755)\n\
        a = socket.socket(socket.AF_UNIX)\n\
        a.setblocking(False)\n\
        a.connect(p)\n\
        b = socket.socket(socket.AF_UNIX)\n\
        b.setblocking(False)\n\
        try:\n    b.connect(p)\nexcept BlockingIOError:\n    pass\nelse:\n    sys.exit(1)\n\
        os.setuid(65534)\n\
        c = socket.socket(socket.AF_UNIX)\n\
        try:\n    c.connect(p)\nexcept PermissionError:\n    pass\nelse:\n    sys.exit(1)\n";
    let p = path.to_str().unwrap();
    // The directory only: python may first ask nscd's socket who it is.
    let under = format!("{}/", dir.display());
    let out = Trace::start(&[
        "-e",
        "connect",
        "--path",
        &under,
        "--expect",
        &format!("connect path={p} result=EAGAIN"),
        "--expect",
        &format!("connect path={p} result=EACCES"),
        "--",
        "python3",
        "-c",
        script,
        p,
    ])
    .wait(Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}{}", out.stdout, out.stderr);
    let lines = parse(&out.stdout);
    let pid = lines[0].pid;
    let p = shown(&path);
    assert_eq!(
        socket_keys_of(&lines, pid),
        [
            format!("python3 CONNECT unix/stream (unnamed) {p} result=ok latency=* peer_pid={pid} peer=python3"),
            format!("python3 CONNECT unix/stream (unnamed) {p} result=EAGAIN latency=*"),
            format!("python3 CONNECT unix/stream (unnamed) {p} result=EACCES latency=*"),
        ]
    );
}

/// -c adds a unix-domain stream's bytes up in the kernel: 200000 sends and
/// receives while sockwatch is stopped, with a one-page buffer, lose nothing; the
/// same events crossing one by one (-C) cannot all wait in that page.
#[test]
fn a_unix_summary_is_added_up_in_the_kernel() {
    require_root();
    rerun_if_skipped(|| {
        let name = unique_name("ul");
        let program = named_example("send_recv_loop", &name);
        let paused_run = |mode: &str| {
            let trace = Trace::start(&[
                mode,
                "--no-header",
                "-e",
                "send,recv",
                "--buffer-size",
                "4096",
                &name,
            ]);
            signal(trace.pid(), nix::sys::signal::Signal::SIGSTOP);
            let status = Command::new(&program)
                .args(["100000", "unix"])
                .output()
                .unwrap()
                .status;
            assert!(status.success());
            signal(trace.pid(), nix::sys::signal::Signal::SIGCONT);
            trace.stop()
        };
        let out = paused_run("-c");
        assert_eq!(
            fields(&out.stdout),
            [vec![
                name.as_str(),
                "(unnamed)",
                "-",
                "-",
                "-",
                "6400000",
                "6400000",
                "-"
            ]],
            "{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("200000 events counted, 0 lost"),
            "{}",
            out.stderr
        );
        let out = paused_run("-C");
        assert!(
            out.stderr.contains(" lost") && !out.stderr.contains(" 0 lost"),
            "{}",
            out.stderr
        );
    });
}

/// 5000 paths, a connection each, fill -c's tables in the kernel (4096 rows, 4096
/// addresses): what does not fit goes as events, and every row is still exact.
#[test]
fn a_full_unix_summary_table_loses_no_byte() {
    require_root();
    let name = unique_name("up");
    let dir = scratch(&name);
    let program = named_example("unix_paths", &name);
    let script = format!(
        "exec {} 5000 {} > /dev/null",
        program.display(),
        dir.display()
    );
    let out = Trace::start(&[
        "-c",
        "--no-header",
        "-e",
        "send,recv",
        "--",
        "sh",
        "-c",
        &script,
    ])
    .wait(Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let rows = fields(&out.stdout);
    assert_eq!(rows.len(), 5000, "a row per path");
    let mut paths: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 5000);
    for r in &rows {
        assert_eq!(r[0], name);
        assert!(r[1].starts_with(dir.to_str().unwrap()) && r[1].ends_with(".sock"));
        // The client's byte sent, the server's received, in the path's row.
        assert_eq!(r[2..], ["-", "-", "-", "1", "1", "-"], "{r:?}");
    }
    assert!(
        out.stderr.contains("10000 events counted, 0 lost;"),
        "{}",
        out.stderr
    );
}
