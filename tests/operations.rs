//! Running sockwatch as an operator does: a reader that stops reading, SIGHUP,
//! log rotation, appending, long exec paths, time namespaces, a memory cgroup.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Runs the echo client `cli` `rounds` times against a fresh echo server.
fn echo_rounds(srv: &str, cli: &str, rounds: u32) {
    let (server, port) = echo_server(srv, &["tcp", "127.0.0.1:0", "1"]);
    let addr = format!("127.0.0.1:{port}");
    run_client(
        "echo_client",
        cli,
        &["tcp", &addr, "1", "--repeat", &rounds.to_string()],
    );
    server.finish();
}

/// sockwatch writes into a pipe whose reader never reads, while a client floods.
/// Returns what it printed, how long it took to end once `stop` was done, and how
/// long it ran from its ready line.
fn stalled_reader(args: &[&str], stop: impl FnOnce(&Trace)) -> (Output, Duration, Duration) {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let (reader, writer) = std::io::pipe().unwrap();
    let mut all = args.to_vec();
    all.push(&cli);
    let trace = Trace::start_with(&all, writer.into());
    let ready = Instant::now();
    // About 200,000 lines: far more than a pipe and the output queue hold.
    echo_rounds(&srv, &cli, 100_000);
    let asked = Instant::now();
    stop(&trace);
    let out = trace.wait(Duration::from_secs(30));
    let (took, ran) = (asked.elapsed(), ready.elapsed());
    drop(reader);
    (out, took, ran)
}

/// The count of lines not written, from the closing line.
fn unwritten(stderr: &str) -> u64 {
    let closing = stderr.lines().last().unwrap();
    let words: Vec<&str> = closing.split([' ', ',']).collect();
    let i = words
        .windows(3)
        .position(|w| w[1].starts_with("line") && w[2] == "not")
        .unwrap_or_else(|| panic!("no count of lines not written in {closing:?}"));
    words[i].parse().unwrap()
}

#[test]
fn sigterm_ends_promptly_while_the_reader_is_stalled() {
    let (out, took, _) = stalled_reader(&[], |t| signal(t.pid(), Signal::SIGTERM));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(unwritten(&out.stderr) > 100_000, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not written (the output is not being read)"),
        "{}",
        out.stderr
    );
}

#[test]
fn duration_ends_on_time_while_the_reader_is_stalled() {
    let (out, _, ran) = stalled_reader(&["-d", "3s"], |_| {});
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // Three seconds, and at most one more for the reader.
    assert!(ran < Duration::from_millis(4500), "ran {ran:?}");
    assert!(unwritten(&out.stderr) > 0, "{}", out.stderr);
}

#[test]
fn sighup_without_output_file_ends_like_sigterm() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&["-C", &cli]);
    echo_rounds(&srv, &cli, 1);
    std::thread::sleep(Duration::from_millis(300));
    signal(trace.pid(), Signal::SIGHUP);
    let out = trace.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    // The summary table follows the events.
    let (events, table) = out.stdout.split_once("\nPROCESS ").unwrap();
    let lines = parse(events);
    assert!(lines.iter().any(|l| l.event == "CLOSE"), "{}", out.stdout);
    assert!(table.contains(&format!("\n{cli} ")), "{table}");
    out.assert_stderr_ends(&format!(
        "sockwatch: {} events printed, 0 lost",
        lines.len()
    ));
}

/// Rotates `log` with logrotate in the given style, telling `pid` with SIGHUP.
fn logrotate(dir: &std::path::Path, log: &std::path::Path, style: &str, pid: u32) {
    let conf = dir.join("logrotate.conf");
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 1\n  {style}\n  postrotate\n    kill -HUP {pid}\n  endscript\n}}\n",
            log.display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(&state)
        .arg(&conf)
        .output()
        .expect("logrotate (scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
}

fn rotation(style: &str) {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let dir = std::env::temp_dir().join(format!("sockwatch-rotate-{}", unique_name("r")));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("trace.log");
    let trace = Trace::start(&["--no-header", "-o", log.to_str().unwrap(), &cli]);
    echo_rounds(&srv, &cli, 1);
    std::thread::sleep(Duration::from_millis(300));
    logrotate(&dir, &log, style, trace.pid());
    std::thread::sleep(Duration::from_millis(300));
    echo_rounds(&srv, &cli, 2);
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let old = std::fs::read(dir.join("trace.log.1")).unwrap();
    let new = std::fs::read(&log).unwrap();
    assert!(!new.contains(&0), "NUL bytes in the new file");
    let count = |bytes: &[u8], event: &str| {
        parse_body(std::str::from_utf8(bytes).unwrap())
            .iter()
            .filter(|l| l.event == event)
            .count()
    };
    // One exchange before the rotation, two after: each in its own file.
    assert_eq!((count(&old, "SEND"), count(&new, "SEND")), (1, 2));
    assert_eq!((count(&old, "CLOSE"), count(&new, "CLOSE")), (1, 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Lines without a header.
fn parse_body(text: &str) -> Vec<Line> {
    let with_header = format!("TIME PID PROCESS EVENT PROTO LOCAL REMOTE DETAILS\n{text}");
    parse(&with_header)
}

#[test]
fn logrotate_create_then_sighup_reopens_the_file() {
    rotation("create");
}

#[test]
fn logrotate_copytruncate_leaves_no_hole() {
    rotation("copytruncate");
}

#[test]
fn output_starts_empty_unless_appending() {
    require_root();
    let dir = std::env::temp_dir().join(format!("sockwatch-append-{}", unique_name("a")));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("trace.log");
    for (args, kept) in [(vec![], false), (vec!["-A"], true)] {
        std::fs::write(&log, "an earlier trace\n").unwrap();
        let mut all = args.clone();
        all.extend(["-o", log.to_str().unwrap(), "-d", "100ms", "no-such-name"]);
        let out = Command::new(SOCKWATCH).args(&all).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.starts_with("an earlier trace\nTIME"), kept, "{text}");
        assert_eq!(text.starts_with("TIME"), !kept, "{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sockwatch's lines for the client named `cli` (its SEND and RECV lines counted),
/// read from `text`.
fn sends_and_receives(text: &str, cli: &str) -> (usize, usize) {
    let lines = parse(text);
    let of = |event: &str| {
        lines
            .iter()
            .filter(|l| l.process == cli && l.event == event)
            .count()
    };
    (of("SEND"), of("RECV"))
}

/// Waits up to `limit` for `path` to hold at least `lines` lines.
fn wait_for_lines(path: &std::path::Path, lines: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let n = std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        if n >= lines {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_tracer_stopped_during_a_flood_writes_every_line_once_continued() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let dir = std::env::temp_dir().join(format!("sockwatch-flood-{cli}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.txt");
    // A buffer that holds the whole flood: one poll could take it all at once.
    let trace = Trace::start(&["--buffer-size", "128M", "-o", file.to_str().unwrap(), &cli]);
    signal(trace.pid(), Signal::SIGSTOP);
    echo_rounds(&srv, &cli, 200_000);
    signal(trace.pid(), Signal::SIGCONT);
    // The header, EXEC, CONNECT, 400,000 SEND and RECV lines, CLOSE and EXIT.
    wait_for_lines(&file, 400_005, Duration::from_secs(60));
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(sends_and_receives(&text, &cli), (200_000, 200_000));
    out.assert_stderr_ends("sockwatch: 400004 events printed, 0 lost");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_json_line_of_a_flood_reaches_jq() {
    require_root();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let dir = std::env::temp_dir().join(format!("sockwatch-jq-{cli}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("out.json");
    // sockwatch --json CLI | jq -c . > FILE, as a shell runs it; the buffer
    // holds what the flood makes while jq reads (this is a debug build).
    let mut jq = Command::new("jq")
        .args(["-c", "."])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&file).unwrap())
        .spawn()
        .expect("jq (scripts/test installs it)");
    let pipe = Stdio::from(jq.stdin.take().unwrap());
    let trace = Trace::start_with(&["--json", "--buffer-size", "128M", &cli], pipe);
    echo_rounds(&srv, &cli, 300_000);
    // jq writes its file in blocks: the last few lines come when it ends.
    wait_for_lines(&file, 599_900, Duration::from_secs(120));
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    assert!(jq.wait().unwrap().success());
    let events = json_lines(&std::fs::read_to_string(&file).unwrap());
    let count = |event: &str| {
        events
            .iter()
            .filter(|e| e["process"] == cli.as_str() && e["event"] == event)
            .count()
    };
    assert_eq!((count("send"), count("recv")), (300_000, 300_000));
    out.assert_stderr_ends("sockwatch: 600004 events printed, 0 lost");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `-o` takes what people point it at: /dev/null, a FIFO, /dev/stdout (a pipe
/// here) and a shell's `>(...)`; only a regular file is emptied first.
#[test]
fn output_goes_to_dev_null_fifos_and_pipes() {
    require_root();
    let name = unique_name("o");
    let dir = std::env::temp_dir().join(format!("sockwatch-outputs-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let piped = dir.join("piped");
    let script = format!(
        "set -e\n\
         {sw} -o /dev/null -e exec -- true\n\
         cat {fifo} > {dir}/from-fifo & reader=$!\n\
         {sw} -o {fifo} -e exec -- true\n\
         wait $reader\n\
         {sw} -o /dev/stdout -e exec -- true | cat > {dir}/from-stdout\n\
         {sw} -o >(cat > {piped}) -e exec -- true\n\
         while [ ! -s {piped} ]; do sleep 0.1; done\n",
        sw = SOCKWATCH,
        fifo = fifo.display(),
        dir = dir.display(),
        piped = piped.display(),
    );
    let out = Command::new("timeout")
        .args(["60", "bash", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["from-fifo", "from-stdout", "piped"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let lines = parse(&text);
        assert!(
            lines
                .iter()
                .any(|l| l.process == "true" && l.event == "EXEC"),
            "{file}: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The EXEC line of `name` run from a directory path of `len` bytes in all.
fn exec_from_path_of(len: usize) -> (String, String) {
    require_root();
    let name = unique_name("e");
    let mut dir = std::env::temp_dir().join(format!("sockwatch-long-{name}"));
    let base = dir.clone();
    // Directories of up to 50 bytes until the full path is `len` bytes long.
    let mut left = len - dir.as_os_str().len() - 1 - name.len();
    while left > 0 {
        let mut k = left.min(51) - 1;
        if left - (k + 1) == 1 {
            k -= 1;
        }
        dir = dir.join("d".repeat(k));
        left -= k + 1;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(&name);
    assert_eq!(path.as_os_str().len(), len);
    std::fs::copy(named_example("echo_client", &name), &path).unwrap();
    let trace = Trace::start(&["-e", "exec", &name]);
    let mut c = Command::new(&path);
    let status = spawn_fresh_copy(c.stdout(Stdio::null()).stderr(Stdio::null()))
        .wait()
        .unwrap();
    assert_eq!(status.code(), Some(2)); // usage: it was only run
    let out = trace.stop();
    std::fs::remove_dir_all(&base).unwrap();
    (
        path.display().to_string(),
        parse(&out.stdout)[0].details.clone(),
    )
}

#[test]
fn an_exec_path_longer_than_sockwatch_reads_is_marked_cut() {
    let (path, details) = exec_from_path_of(300);
    let ppid = details
        .rsplit("ppid=")
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert_eq!(
        details,
        format!("path={} ppid={ppid} path-cut", &path[..255])
    );
    // 255 bytes fit whole.
    let (path, details) = exec_from_path_of(255);
    assert_eq!(details.split(' ').next().unwrap(), format!("path={path}"));
    assert!(!details.contains("path-cut"), "{details}");
}

#[test]
fn times_are_right_inside_a_time_namespace() {
    require_root();
    let name = unique_name("n");
    // The namespace's boot clock is an hour ahead of the kernel's.
    let mut child = Command::new("unshare")
        .args(["--time", "--fork", "--boottime", "3600", SOCKWATCH])
        .args(["--json", "-e", "exec", "-n", "1", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "sockwatch ended early"
        );
        if line.starts_with("sockwatch: tracing") {
            break;
        }
    }
    let mut c = Command::new(named_example("echo_client", &name));
    let _ = spawn_fresh_copy(c.stdout(Stdio::null()).stderr(Stdio::null())).wait();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
    let off = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds();
    assert!(off.abs() < 30, "the event is {off} s off: {text}");
}

/// A new memory cgroup limited to `bytes`: its directory and the file to write
/// the pids into; cgroup v2's memory controller where it is enabled, else v1's.
fn memory_cgroup(bytes: u64) -> String {
    let v2 = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(2) == Some("cgroup2"))
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .filter(|dir| {
            std::fs::read_to_string(format!("{dir}/cgroup.subtree_control"))
                .is_ok_and(|c| c.contains("memory"))
        });
    let (dir, limit_file) = match v2 {
        Some(root) => (format!("{root}/{}", unique_name("m")), "memory.max"),
        None => (
            format!("/sys/fs/cgroup/memory/{}", unique_name("m")),
            "memory.limit_in_bytes",
        ),
    };
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("no memory cgroup at {dir}: {e}"));
    std::fs::write(format!("{dir}/{limit_file}"), bytes.to_string()).unwrap();
    dir
}

/// sockwatch with `args`, run inside the memory cgroup `dir`.
fn run_in_cgroup(dir: &str, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .args([
            "-c",
            &format!("echo $$ > {dir}/cgroup.procs && exec \"$@\""),
        ])
        .arg("sh")
        .arg(SOCKWATCH)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_defaults_load_within_96_mib() {
    require_root();
    // The kernel charges the verifier's work to the loading process's cgroup: its
    // peak was 124-130 MiB, and a 96 MiB limit killed sockwatch while it loaded.
    let dir = memory_cgroup(96 << 20);
    let out = run_in_cgroup(&dir, &["-d", "1s", "no-such-name"]);
    std::fs::remove_dir(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.ends_with("sockwatch: 0 events printed, 0 lost\n"),
        "{stderr}"
    );
}

#[test]
fn a_memory_cgroup_that_refuses_the_maps_is_said_once() {
    require_root();
    let dir = memory_cgroup(100_000_000);
    let out = run_in_cgroup(&dir, &["--buffer-size", "256M", "-d", "1s", "no-such-name"]);
    std::fs::remove_dir(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "sockwatch: error: the kernel could not allocate the event buffer (268435456 bytes) and socket table (65536 sockets) (a memory cgroup's limit counts them): try a smaller --buffer-size or --max-sockets: Cannot allocate memory (os error 12)"
    );
}

#[test]
fn a_connect_to_port_zero_keeps_its_peer() {
    require_root();
    let script = "import socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.2', 0))\nexcept OSError:\n    pass\n";
    let out = Command::new(SOCKWATCH)
        .args([
            "-e",
            "connect",
            // A name lookup may try nscd's unix socket first.
            "--proto",
            "tcp",
            "--forbid",
            "connect peer!=127.0.0.1/32",
            "--",
        ])
        .args(["python3", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    let lines = parse(&stdout);
    assert_eq!(lines[0].event, "CONNECT");
    assert_eq!(lines[0].remote, "127.0.0.2:0");
}

#[test]
fn tracing_pids_ends_when_they_have_exited() {
    require_root();
    let mut sleeper = Command::new("sleep").arg("2").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let trace = Trace::start(&["-p", &pid]);
    // Left a zombie on purpose for a while: it counts as gone.
    std::thread::sleep(Duration::from_millis(2500));
    let out = trace.wait(Duration::from_secs(10));
    sleeper.wait().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    let lines = parse(&out.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].key(), "sleep EXIT - - - exit_code=0");
    out.assert_stderr_ends("sockwatch: 1 event printed, 0 lost; the traced processes exited");
}
