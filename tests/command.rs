//! Live tests of `-- COMMAND`, `--follow`, `--expect`/`--forbid`, `-c`/`-C`, `-o`
//! and `-u`: sockwatch (as root) runs real workloads and the exact lines, numbers
//! and exit statuses are checked.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(60);

/// Runs sockwatch with these arguments to its end.
fn run(args: &[&str]) -> Output {
    Trace::start(args).wait(LIMIT)
}

fn client_path(name: &str) -> String {
    named_example("echo_client", name)
        .to_str()
        .unwrap()
        .to_string()
}

fn client_echo(name: &str, local: &str, server: &str, sizes: &[u64]) -> Vec<String> {
    let mut v = vec![
        format!("{name} EXEC - - - path={} ppid=*", client_path(name)),
        format!("{name} CONNECT tcp {local} {server} result=ok latency=*"),
    ];
    for n in sizes {
        v.push(format!("{name} SEND tcp {local} {server} bytes={n}"));
        v.push(format!("{name} RECV tcp {local} {server} bytes={n}"));
    }
    let total: u64 = sizes.iter().sum();
    v.push(format!(
        "{name} CLOSE tcp {local} {server} sent={total} received={total} lifetime=*"
    ));
    v.push(format!("{name} EXIT - - - exit_code=0"));
    v
}

#[test]
fn command_is_traced_from_its_first_connect_with_its_exit_status() {
    require_root();
    rerun_if_skipped(|| {
        let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "1"]);
        let cli = unique_name("c");
        let addr = format!("127.0.0.1:{port}");
        let out = run(&["--", &client_path(&cli), "tcp", &addr, "5", "300"]);
        server.finish();
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        // The client's stdout is sockwatch's: its `local` line comes among the events.
        let (locals, events) = split_client_output(&out.stdout);
        let lines = parse(&events);
        assert_lines(
            &lines,
            pid_of(&lines, &cli),
            &client_echo(&cli, &locals[0], &addr, &[5, 300]),
        );
        assert_eq!(lines.len(), 8, "only COMMAND is traced: {lines:#?}");
        assert!(
            out.stderr.contains("sockwatch: tracing command "),
            "{}",
            out.stderr
        );
        out.assert_stderr_ends("sockwatch: 8 events printed, 0 lost; COMMAND exited with status 0");
    });
}

#[test]
fn a_grandchild_with_another_name_is_traced_and_the_status_passes_through() {
    require_root();
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "1"]);
    let cli = unique_name("g");
    let script = format!(
        "sh -c '{} tcp 127.0.0.1:{port} 7 > /dev/null'; exit 7",
        client_path(&cli)
    );
    let out = run(&[
        "--no-header",
        "-e",
        "connect,close,exit",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    server.finish();
    assert_eq!(out.status.code(), Some(7), "{}", out.stderr);
    let lines = parse(&format!("TIME \n{}", out.stdout));
    let got: Vec<String> = lines.iter().map(Line::key).collect();
    let connect = &lines[0];
    assert_eq!(
        got,
        [
            format!(
                "{cli} CONNECT tcp {} 127.0.0.1:{port} result=ok latency=*",
                connect.local
            ),
            format!(
                "{cli} CLOSE tcp {} 127.0.0.1:{port} sent=7 received=7 lifetime=*",
                connect.local
            ),
            format!("{cli} EXIT - - - exit_code=0"),
            "sh EXIT - - - exit_code=0".to_string(),
            "sh EXIT - - - exit_code=7".to_string(),
        ]
    );
}

#[test]
fn a_command_killed_by_a_signal_exits_128_plus_the_signal() {
    require_root();
    let out = run(&["-e", "exit", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", out.stderr);
    let lines = parse(&out.stdout);
    assert_eq!(
        lines.iter().map(Line::key).collect::<Vec<_>>(),
        ["sh EXIT - - - signal=SIGKILL"]
    );
    assert!(
        out.stderr.contains("COMMAND exited with status 137"),
        "{}",
        out.stderr
    );
}

#[test]
fn sigint_and_sigterm_are_passed_on_to_the_command() {
    require_root();
    for (sig, status, name) in [
        (Signal::SIGTERM, 143, "SIGTERM"),
        (Signal::SIGINT, 130, "SIGINT"),
    ] {
        let trace = Trace::start(&["-e", "exit", "--", "sleep", "60"]);
        std::thread::sleep(Duration::from_millis(200));
        signal(trace.pid(), sig);
        let out = trace.wait(LIMIT);
        assert_eq!(out.status.code(), Some(status), "{}", out.stderr);
        let lines = parse(&out.stdout);
        assert_eq!(
            lines.iter().map(Line::key).collect::<Vec<_>>(),
            [format!("sleep EXIT - - - signal={name}")]
        );
    }
}

/// At a terminal, Ctrl-C reaches COMMAND from the terminal itself (it is in the
/// foreground process group with sockwatch): sockwatch must not send it again.
#[test]
fn ctrl_c_at_a_terminal_reaches_the_command_once() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::process::CommandExt as _;
    require_root();
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let script = "n=0; trap 'n=$((n+1))' INT; i=0; \
        while [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; echo \"ints $n\"";
    let mut command = Command::new(SOCKWATCH);
    command
        .args(["-e", "exit", "--", "sh", "-c", script])
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: setsid and the ioctl are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            // Make the terminal this session's, so that ^C signals its foreground group.
            if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut sockwatch = command.spawn().unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut reader = master.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + LIMIT;
    while !String::from_utf8_lossy(&seen).contains("sockwatch: tracing") {
        assert!(
            Instant::now() < deadline,
            "never ready: {}",
            String::from_utf8_lossy(&seen)
        );
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.extend(chunk);
        }
    }
    // Time for the shell to set its trap, then ^C as a user would type it.
    std::thread::sleep(Duration::from_millis(500));
    master.write_all(&[0x03]).unwrap();
    let status = sockwatch.wait().unwrap();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(500)) {
        seen.extend(chunk);
    }
    let text = String::from_utf8_lossy(&seen);
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(text.contains("ints 1"), "{text}");
}

#[test]
fn user_runs_the_command_as_that_user_and_output_goes_to_a_file() {
    require_root();
    let file = std::env::temp_dir().join(format!("sockwatch-o-{}.txt", std::process::id()));
    let out = run(&[
        "-u",
        "nobody",
        "-o",
        file.to_str().unwrap(),
        "-e",
        "exec,exit",
        "--",
        "id",
        "-u",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // stdout is COMMAND's alone; the events are in the file.
    assert_eq!(out.stdout, "65534\n");
    let written = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    let lines = parse(&written);
    assert_eq!(
        lines.iter().map(Line::key).collect::<Vec<_>>(),
        [
            "id EXEC - - - path=/usr/bin/id ppid=*",
            "id EXIT - - - exit_code=0"
        ]
    );
}

#[test]
fn the_command_reads_sockwatchs_stdin() {
    require_root();
    let mut sockwatch = Command::new(SOCKWATCH)
        .args([
            "-e",
            "exit",
            "--no-header",
            "--",
            "sh",
            "-c",
            "read line; echo \"got $line\"",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    writeln!(sockwatch.stdin.take().unwrap(), "hello").unwrap();
    let out = sockwatch.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (first, events) = stdout.split_once('\n').unwrap();
    assert_eq!(first, "got hello");
    let lines = parse(&format!("TIME \n{events}"));
    assert_eq!(
        lines.iter().map(Line::key).collect::<Vec<_>>(),
        ["sh EXIT - - - exit_code=0"]
    );
}

/// sockwatch writing its lines into a TCP socket while tracing its own name: were
/// it traced, each line would be a SEND that makes another line, without end.
#[test]
fn sockwatch_never_traces_itself() {
    require_root();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut received, _) = listener.accept().unwrap();
    let status = Command::new(SOCKWATCH)
        .args(["-e", "send", "-d", "2s", "sockwatch"])
        .stdout(std::os::fd::OwnedFd::from(out))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut text = String::new();
    use std::io::Read as _;
    received.read_to_string(&mut text).unwrap();
    assert_eq!(parse(&text).len(), 0, "{text}");
}

#[test]
fn forbid_stops_a_long_running_command_at_the_first_match() {
    require_root();
    let cli = unique_name("f");
    // A closed port: the connect is refused at once. The script would then sleep
    // for a minute under a name of its own, which must not survive.
    let sleeper = named_copy("/usr/bin/sleep", &unique_name("z"));
    let script = format!(
        "{} tcp 127.0.0.1:{} 1 2>/dev/null; {} 60",
        client_path(&cli),
        closed_port(),
        sleeper.display()
    );
    let start = Instant::now();
    let out = run(&[
        "--no-header",
        "-e",
        "exec",
        "--forbid",
        "connect result!=ok",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let lines = parse(&format!("TIME \n{}", out.stdout));
    let last = lines.last().unwrap();
    assert_eq!(last.process, cli);
    assert_eq!(last.event, "CONNECT");
    assert_eq!(detail(last, "result"), Some("ECONNREFUSED"));
    let verdict = out.stderr.lines().last().unwrap();
    assert_eq!(
        verdict,
        format!(
            "sockwatch: forbidden event seen: CONNECT by {cli} (pid {}) with {} matched --forbid 'connect result!=ok'",
            last.pid, last.remote
        )
    );
    let name = sleeper.file_name().unwrap().to_str().unwrap();
    assert!(
        !process_alive(name),
        "{name} outlived the forbidden connect"
    );
}

#[test]
fn expect_passes_when_met_and_fails_with_4_when_not() {
    require_root();
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "2"]);
    let cli = client_path(&unique_name("e"));
    let addr = format!("127.0.0.1:{port}");
    let met = format!("connect rport={port} result=ok");
    let out = run(&[
        "-e", "connect", "--expect", &met, "--", &cli, "tcp", &addr, "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    out.assert_stderr_ends("sockwatch: assertions passed: 1 expectation met");
    // Met or not, the expectation is checked on events --events does not print.
    let out = run(&[
        "-e", "exec", "--expect", &met, "--expect", "accept", "--", &cli, "tcp", &addr, "1",
    ]);
    server.finish();
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    out.assert_stderr_ends("sockwatch: expectation not met: no event matched --expect 'accept'");
}

/// Runs COMMAND's flood of loopback round trips, then a connect to port 1 (refused),
/// under sockwatch stopped while it all happens: a 16K buffer loses most events.
fn flood_then_connect_unread(assertion: &[&str]) -> (Output, String) {
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let started = std::env::temp_dir().join(format!("sockwatch-started-{cli}"));
    let client = client_path(&cli);
    let script = format!(
        "touch {}; sleep 0.5; {client} tcp 127.0.0.1:{port} 1 --repeat 5000 > /dev/null; {client} tcp 127.0.0.1:1 1 2> /dev/null; true",
        started.display(),
    );
    let mut args = vec!["--buffer-size", "16K"];
    args.extend(assertion);
    args.extend(["--", "sh", "-c", &script]);
    let trace = Trace::start(&args);
    // Stopped once COMMAND runs: stopped before it is released, nothing would come.
    let deadline = Instant::now() + LIMIT;
    while !started.exists() {
        assert!(Instant::now() < deadline, "COMMAND never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&started).unwrap();
    signal(trace.pid(), Signal::SIGSTOP);
    server.finish();
    // Until the refused connect is over: the shell exits right after it.
    let deadline = Instant::now() + LIMIT;
    while process_alive(&cli) {
        assert!(Instant::now() < deadline, "COMMAND's client never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    signal(trace.pid(), Signal::SIGCONT);
    (trace.wait(LIMIT), cli)
}

/// The events lost, from the closing line.
fn lost(out: &Output) -> u64 {
    let closing = out
        .stderr
        .lines()
        .find(|l| l.contains(" printed, "))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    let (_, after) = closing.split_once(" printed, ").unwrap();
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_forbidden_event_the_buffer_lost_still_fails_the_run() {
    require_root();
    let (out, cli) = flood_then_connect_unread(&["--forbid", "connect rport=1"]);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    assert!(lost(&out) > 1000, "{}", out.stderr);
    // The evidence comes from the kernel's record of the first match.
    let lines = parse(&out.stdout);
    let refused: Vec<_> = lines.iter().filter(|l| l.remote == "127.0.0.1:1").collect();
    assert_eq!(refused.len(), 1, "{}", out.stdout);
    assert_eq!(refused[0].process, cli);
    assert!(refused[0]
        .details
        .starts_with("result=ECONNREFUSED latency="));
    let verdict = out.stderr.lines().last().unwrap();
    assert_eq!(
        verdict,
        format!(
            "sockwatch: forbidden event seen: CONNECT by {cli} (pid {}) with 127.0.0.1:1 matched --forbid 'connect rport=1'",
            refused[0].pid
        )
    );
}

#[test]
fn an_expectation_the_buffer_lost_is_still_met() {
    require_root();
    let (out, _) = flood_then_connect_unread(&[
        "--expect",
        "connect rport=1 result=ECONNREFUSED",
        "--forbid",
        "connect peer!=127.0.0.0/8",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(lost(&out) > 1000, "{}", out.stderr);
    out.assert_stderr_ends(
        "sockwatch: assertions passed: 1 expectation met, no forbidden event (matched in the kernel: what went missing could not change it)",
    );
}

#[test]
fn follow_traces_the_children_of_a_named_process() {
    require_root();
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "2"]);
    let shell = named_copy("/usr/bin/dash", &unique_name("r"));
    let cli = unique_name("k");
    let script = format!("{} tcp 127.0.0.1:{port} 3 > /dev/null", client_path(&cli));
    let mut seen = Vec::new();
    for follow in [false, true] {
        let mut args = vec!["-e", "connect"];
        if follow {
            args.push("-f");
        }
        let name = shell.file_name().unwrap().to_str().unwrap();
        args.push(name);
        let trace = Trace::start(&args);
        let status = Command::new(&shell).args(["-c", &script]).status().unwrap();
        assert!(status.success());
        let out = trace.stop();
        let lines = parse(&out.stdout);
        seen.push(lines.iter().filter(|l| l.process == cli).count());
    }
    server.finish();
    assert_eq!(seen, [0, 1], "connects of the child without and with -f");
}

#[test]
fn summary_bytes_are_what_curl_reports_about_itself() {
    require_root();
    let site = std::env::temp_dir().join(format!("sockwatch-site-{}", std::process::id()));
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "x".repeat(12345)).unwrap();
    let port = free_port();
    let mut httpd = Command::new("busybox")
        .args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h"])
        .arg(&site)
        .spawn()
        .expect("busybox (busybox-static) serves the page");
    wait_for_port(port);
    let file = site.join("summary.json");
    let url = format!("http://127.0.0.1:{port}/index.html");
    // TCP only: the C library's unix-domain lookups (nscd) have rows of their own.
    let out = run(&[
        "-c",
        "--json",
        "--proto",
        "tcp",
        "-o",
        file.to_str().unwrap(),
        "--",
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{size_request} %{size_header} %{size_download}",
        &url,
    ]);
    httpd.kill().unwrap();
    httpd.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let reported: Vec<u64> = out
        .stdout
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [request, header, body] = reported[..] else {
        panic!("curl printed {:?}", out.stdout);
    };
    assert_eq!(body, 12345);
    let mut rows = json_lines(&std::fs::read_to_string(&file).unwrap());
    std::fs::remove_dir_all(&site).unwrap();
    // Who curl was: this test's uid and cgroup (and what the cgroup names, which
    // depends on where the tests run).
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    for row in &mut rows {
        let row = row.as_object_mut().unwrap();
        assert_eq!(row.remove("uid"), Some(0.into()));
        assert_eq!(row.remove("cgroup"), Some(own.into()));
        for key in ["container_id", "container_runtime", "pod", "unit"] {
            row.remove(key);
        }
    }
    assert_eq!(
        rows,
        [serde_json::json!({"summary": true, "process": "curl",
            "remote": format!("127.0.0.1:{port}"), "connects_ok": 1, "connects_failed": 0,
            "accepts": 0, "sent": request, "received": header + body, "closed": 1})]
    );
}

#[test]
fn summary_after_the_lines_counts_what_they_show() {
    require_root();
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "2"]);
    let cli = unique_name("t");
    let addr = format!("127.0.0.1:{port}");
    let refused = closed_port();
    let script = format!(
        "{c} tcp {addr} 10 20 >/dev/null; {c} tcp {addr} 30 >/dev/null; {c} tcp 127.0.0.1:{refused} 1 2>/dev/null; true",
        c = client_path(&cli)
    );
    let out = run(&["-C", "-e", "connect", "--", "sh", "-c", &script]);
    server.finish();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let (lines, table) = out
        .stdout
        .split_once("\nPROCESS ")
        .expect("a summary table after the lines");
    assert_eq!(parse(lines).len(), 3, "{lines}");
    let mut rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    rows.sort_by_key(|r| r[1] != addr);
    let refused = format!("127.0.0.1:{refused}");
    assert_eq!(
        rows,
        [
            // -e connect: the table counts connects only.
            vec![cli.as_str(), &addr, "2", "0", "-", "-", "-", "-"],
            vec![cli.as_str(), &refused, "0", "1", "-", "-", "-", "-"],
        ]
    );

    // Every event, and the table without its header.
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "2"]);
    let addr = format!("127.0.0.1:{port}");
    let script = format!(
        "{c} tcp {addr} 10 20 >/dev/null; {c} tcp {addr} 30 >/dev/null",
        c = client_path(&cli)
    );
    let out = run(&["-c", "--no-header", "--", "sh", "-c", &script]);
    server.finish();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let rows = fields(&out.stdout);
    assert_eq!(
        rows,
        [vec![cli.as_str(), &addr, "2", "0", "0", "60", "60", "2"]]
    );
}

/// -c's totals are the events' sums however the kernel adds them up: in the
/// socket's entry while its owner (bash) sends, event by event for another process
/// (head), and moved to their row when the owner lets go and head takes over. The
/// same table comes from the events themselves (-C).
#[test]
fn summary_totals_follow_a_socket_from_owner_to_owner() {
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "127.0.0.1:0", "2"]);
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port}; (sleep 0.3; head -c 8 > /dev/null) <&3 & \
         printf hello >&3; printf abc >&3; exec 3>&-; wait"
    );
    let remote = format!("127.0.0.1:{port}");
    for mode in ["-c", "-C"] {
        let out = run(&[
            mode,
            "--no-header",
            "-e",
            "connect,send,recv",
            // bash asks nscd who it is when SHELL is unset: a unix socket.
            "--proto",
            "tcp",
            "--",
            "bash",
            "-c",
            &script,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        let mut rows = fields(&out.stdout);
        rows.retain(|r| matches!(r.first(), Some(&"bash" | &"head")));
        assert_eq!(
            rows,
            [
                vec!["bash", &remote, "1", "0", "-", "8", "0", "-"],
                vec!["head", &remote, "0", "0", "-", "0", "8", "-"],
            ],
            "{mode}: {}",
            out.stdout
        );
    }
    server.finish();
}

/// -c adds sends and receives up in the kernel, in a table of 4096 rows: datagrams
/// from 5000 senders, each a row of its own, fill it, and what does not fit goes
/// through the buffer instead. Every byte and every event is still counted.
#[test]
fn a_full_summary_table_in_the_kernel_loses_no_byte() {
    rerun_if_skipped(|| {
        let name = unique_name("batch");
        let script = format!(
            "ulimit -n 16384 && {} 5000 --recv-from >/dev/null",
            named_example("socket_batch", &name).display()
        );
        let out = run(&[
            "-c",
            "--no-header",
            "-e",
            "send,recv",
            "--",
            "sh",
            "-c",
            &script,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
        let rows = fields(&out.stdout);
        let column = |i: usize| rows.iter().map(move |r| r[i].parse::<u64>().unwrap());
        assert_eq!(rows.len(), 5001, "one row per sender, and the receiver's");
        assert!(rows
            .iter()
            .all(|r| r[0] == name && r[2..5] == ["-", "-", "-"]));
        assert_eq!(column(5).sum::<u64>(), 5000);
        assert_eq!(column(6).sum::<u64>(), 5000);
        assert_eq!(column(6).filter(|&n| n == 1).count(), 5000);
        assert_eq!(column(5).filter(|&n| n == 5000).count(), 1);
        assert!(
            out.stderr.contains("10000 events counted, 0 lost;"),
            "{}",
            out.stderr
        );
    });
}

/// A copy of a program under a name of its own.
fn named_copy(program: &str, name: &str) -> std::path::PathBuf {
    let dir = copies_dir();
    let path = dir.join(name);
    std::fs::copy(program, &path).unwrap();
    path
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_process_command_left_in_the_background_is_still_traced() {
    require_root();
    // COMMAND exits at once; what it started connects a second later, beyond
    // localhost (from a namespace with no route: nothing leaves the machine).
    let script = "(sleep 1; unshare -n curl -s --max-time 5 http://192.0.2.10/) > /dev/null 2>&1 &";
    let forbid = "connect peer!=127.0.0.0/8 peer!=::1";
    // The C library's unix-domain lookups (nscd) are not what this is about.
    let out = run(&[
        "-e", "connect", "--proto", "tcp", "--forbid", forbid, "--", "sh", "-c", script,
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", out.stderr);
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert_eq!(lines[0].remote, "192.0.2.10:80");

    // --leave-tree ends at COMMAND's exit: what it left running is said, and the
    // assertions cannot pass.
    let out = run(&["--leave-tree", "--forbid", forbid, "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(5), "{}", out.stderr);
    // The subshell, and the sleep once it has forked it.
    let closing = out.stderr.lines().rev().nth(1).unwrap();
    assert!(
        closing.ends_with(" left running untraced; COMMAND exited with status 0"),
        "{}",
        out.stderr
    );
    let verdict = out.stderr.lines().last().unwrap();
    assert!(
        verdict.starts_with("sockwatch: assertions undecided: ")
            && verdict
                .ends_with(" left running untraced (among the events seen: no forbidden event)"),
        "{}",
        out.stderr
    );
}

#[test]
fn signals_reach_the_whole_tree_and_a_second_one_kills_it() {
    require_root();
    // SIGTERM: the shell and the sleep it waits for both end.
    let sleeper = unique_name("z");
    let path = named_copy("/usr/bin/sleep", &sleeper);
    let script = format!("{} 31 & wait", path.display());
    let trace = Trace::start(&["-e", "exit", "--", "sh", "-c", &script]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(&sleeper));
    signal(trace.pid(), Signal::SIGTERM);
    let out = trace.wait(LIMIT);
    assert_eq!(out.status.code(), Some(143), "{}", out.stderr);
    assert!(
        !process_alive(&sleeper),
        "the background sleep outlived the run"
    );
    let exits: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    assert!(
        exits.contains(&format!("{sleeper} EXIT - - - signal=SIGTERM")),
        "{exits:#?}"
    );

    // A tree that ignores SIGINT: the second one kills it.
    let sleeper = unique_name("z");
    let path = named_copy("/usr/bin/sleep", &sleeper);
    let script = format!("trap '' INT; {} 30", path.display());
    let trace = Trace::start(&["-e", "exit", "--", "sh", "-c", &script]);
    std::thread::sleep(Duration::from_millis(300));
    signal(trace.pid(), Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(process_alive(&sleeper), "SIGINT was to be ignored");
    signal(trace.pid(), Signal::SIGINT);
    let out = trace.wait(LIMIT);
    assert_eq!(out.status.code(), Some(137), "{}", out.stderr);
    assert!(!process_alive(&sleeper));
}

#[test]
fn a_daemonizing_command_is_traced_until_the_daemon_exits() {
    require_root();
    let port = free_port().to_string();
    let expect = format!("listen lport={port}");
    let trace = Trace::start(&[
        "-e",
        "listen,exit",
        "--expect",
        &expect,
        "--",
        "redis-server",
        "--port",
        &port,
        "--daemonize",
        "yes",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        "/tmp",
    ]);
    wait_for_port(port.parse().unwrap());
    // The first redis-server exited once the daemon was started; the run goes on.
    std::thread::sleep(Duration::from_millis(500));
    signal(trace.pid(), Signal::SIGTERM);
    let out = trace.wait(LIMIT);
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    out.assert_stderr_ends("sockwatch: assertions passed: 1 expectation met");
    let keys: Vec<String> = parse(&out.stdout).iter().map(Line::key).collect();
    assert!(
        keys.iter().any(
            |k| k.starts_with(&format!("redis-server LISTEN tcp 127.0.0.1:{port} "))
                || k.starts_with(&format!("redis-server LISTEN tcp 0.0.0.0:{port} "))
        ),
        "{keys:#?}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err());
}

/// A fork-per-connection server (socat, sshd): each child serves a connection its
/// parent accepted. The summary follows the socket: one row per client host.
#[test]
fn summary_rows_follow_accepted_sockets_into_forked_children() {
    require_root();
    let srv = unique_name("s");
    let trace = Trace::start(&["-c", &srv]);
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "3", "--fork-each"]);
    let addr = format!("127.0.0.1:{port}");
    for size in ["10", "20", "30"] {
        run_client("echo_client", &unique_name("c"), &["tcp", &addr, size]);
    }
    server.finish();
    let out = trace.stop();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    // The listener's row (no peer), and every connection under the client host.
    assert_eq!(
        rows,
        [
            vec![srv.as_str(), "*", "0", "0", "0", "0", "0", "1"],
            vec![srv.as_str(), "127.0.0.1:*", "0", "0", "3", "60", "60", "3"],
        ]
    );
}

/// -r: ELAPSED after TIME, from the start of the trace by the kernel's clock: the
/// exit comes the sleep's length after the exec, and JSON has the same in ns.
#[test]
fn relative_times_count_from_the_start_of_the_trace() {
    let started = std::time::Instant::now();
    let out = run(&["-r", "-e", "exec,exit", "--", "sh", "-c", "sleep 0.4"]);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["TIME", "ELAPSED", "PID"], "{}", out.stdout);
    let events: Vec<(&str, f64)> = rows[1..]
        .iter()
        .map(|r| (r[4], r[1].parse().unwrap()))
        .collect();
    let at =
        |kind: &str| -> Vec<f64> { events.iter().filter(|e| e.0 == kind).map(|e| e.1).collect() };
    let exec = at("EXEC").into_iter().fold(f64::MAX, f64::min);
    let exit = at("EXIT").into_iter().fold(0.0, f64::max);
    assert!(
        exec >= 0.0 && exit - exec >= 0.4 && exit < took,
        "{}",
        out.stdout
    );

    let out = run(&["-r", "--json", "-e", "exit", "--", "sh", "-c", "sleep 0.2"]);
    let exits: Vec<u64> = json_lines(&out.stdout)
        .iter()
        .map(|e| e["elapsed_ns"].as_u64().unwrap())
        .collect();
    assert!(exits.iter().all(|ns| *ns >= 200_000_000), "{}", out.stdout);
}
