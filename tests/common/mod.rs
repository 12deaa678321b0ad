//! Helpers for the live tests: run sockwatch as root against real workloads.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const SOCKWATCH: &str = env!("CARGO_BIN_EXE_sockwatch");

/// Live tests need root; CI runs as root, so a missing privilege is a failure, not a skip.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "live tests load BPF programs and need root: run `cargo test` as root"
    );
}

/// A process name no other test uses, at most 15 bytes.
pub fn unique_name(role: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}{}{}", role, std::process::id() % 10000, n);
    assert!(name.len() <= 15, "{name}");
    name
}

fn examples_dir() -> PathBuf {
    Path::new(SOCKWATCH).parent().unwrap().join("examples")
}

/// Where a test process keeps its copies of binaries: this, then its pid.
const COPIES: &str = "sockwatch-tests-";

/// Removes the copies of test processes that have ended: a whole suite's would
/// leave over a gigabyte in the temporary directory.
fn remove_dead_runs_copies() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(COPIES)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// This test process's directory for copies of binaries under names of their own;
/// the first call also removes those of test processes that have ended.
pub fn copies_dir() -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_dead_runs_copies);
    let dir = std::env::temp_dir().join(format!("{COPIES}{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies an example binary to a fresh path whose file name becomes the process name.
pub fn named_example(example: &str, name: &str) -> PathBuf {
    let dir = copies_dir();
    let path = dir.join(name);
    std::fs::copy(examples_dir().join(example), &path)
        .unwrap_or_else(|e| panic!("copying example {example}: {e} (build it with cargo test)"));
    path
}

/// A running sockwatch whose ready line has been seen.
pub struct Trace {
    child: Child,
    stdout: Option<thread::JoinHandle<String>>,
    stderr: mpsc::Receiver<String>,
    /// stderr up to and including the ready line.
    early_stderr: Vec<String>,
    pub ready_line: String,
}

/// What a stopped sockwatch printed.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts that stderr ends with `text` (its last lines).
    pub fn assert_stderr_ends(&self, text: &str) {
        assert!(self.stderr.ends_with(text), "{}", self.stderr);
    }
}

impl Trace {
    pub fn start<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S]) -> Trace {
        Trace::start_with(args, Stdio::piped())
    }

    pub fn start_with<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], stdout: Stdio) -> Trace {
        Trace::start_as(&[], args, stdout)
    }

    /// Starts sockwatch through a wrapper that execs it (`setpriv ... sockwatch ARGS`).
    pub fn start_as<S: AsRef<OsStr> + std::fmt::Debug>(
        wrapper: &[&str],
        args: &[S],
        stdout: Stdio,
    ) -> Trace {
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(SOCKWATCH);
                c
            }
            None => Command::new(SOCKWATCH),
        };
        let mut child = command
            .args(args)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning sockwatch");
        let stdout = child.stdout.take().map(|mut out| {
            thread::spawn(move || {
                let mut s = String::new();
                out.read_to_string(&mut s).unwrap();
                s
            })
        });
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready_line = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("sockwatch: tracing") => {
                    seen.push(line.clone());
                    break line;
                }
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("sockwatch {args:?} never became ready; stderr: {seen:?}");
                }
            }
        };
        Trace {
            child,
            stdout,
            stderr: rx,
            early_stderr: seen,
            ready_line,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// stderr up to and including the ready line.
    pub fn early_stderr(&self) -> &[String] {
        &self.early_stderr
    }

    /// Sends SIGTERM and collects everything printed.
    pub fn stop(self) -> Output {
        signal(self.child.id(), nix::sys::signal::Signal::SIGTERM);
        self.wait(Duration::from_secs(30))
    }

    /// Waits for sockwatch to exit by itself.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("sockwatch did not exit within {limit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let stdout = self
            .stdout
            .take()
            .map_or_else(String::new, |t| t.join().unwrap());
        let mut stderr = std::mem::take(&mut self.early_stderr);
        stderr.extend(self.stderr.iter());
        let stderr = stderr.join("\n");
        if reports_skips(&stderr) {
            SKIPS_REPORTED.set(true);
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

thread_local! {
    /// Whether a sockwatch this test thread ran said the kernel skipped hook runs.
    static SKIPS_REPORTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether sockwatch's stderr says the kernel skipped some of its hook runs.
pub fn reports_skips(stderr: &str) -> bool {
    stderr.contains(" hook run skipped") || stderr.contains(" hook runs skipped")
}

/// Runs `test`, and again (three tries in all) when it failed after a sockwatch it
/// ran reported hook runs the kernel skipped. The kernel skips a program already
/// running on that CPU, which bursts of syscalls on a busy machine now and then
/// meet: sockwatch then says that events may be missing, so that run cannot show
/// whether its lines are exact. A failure with no skip reported is final.
pub fn rerun_if_skipped(test: impl Fn()) {
    const TRIES: u32 = 3;
    for attempt in 1..=TRIES {
        SKIPS_REPORTED.set(false);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&test));
        match result {
            Ok(()) => return,
            Err(_) if SKIPS_REPORTED.get() && attempt < TRIES => {
                eprintln!("try {attempt} failed after sockwatch reported skipped hook runs: again");
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

/// A workload process whose first stdout line has been read.
pub struct Workload {
    pub child: Child,
    pub first_line: String,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    pub fn spawn<S: AsRef<OsStr>>(path: &Path, args: &[S]) -> Workload {
        let mut command = Command::new(path);
        command.args(args).stdout(Stdio::piped());
        let mut child = spawn_fresh_copy(&mut command);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).unwrap();
        assert!(!first_line.is_empty(), "{} printed nothing", path.display());
        Workload {
            child,
            first_line: first_line.trim_end().to_string(),
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value after the first word of the first line: `ready 4000` -> "4000".
    pub fn value(&self) -> &str {
        self.first_line.split_once(' ').unwrap().1
    }

    /// The workload's next stdout line (it must print one).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the workload ended its output early");
        line.trim_end().to_string()
    }

    pub fn finish(mut self) -> Vec<String> {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "workload failed: {status}");
        (&mut self.stdout).lines().map(Result::unwrap).collect()
    }
}

/// A failed test must not leave its workload running.
impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns a binary that was just copied. Another test thread's fork can hold the
/// copy's write descriptor until that child execs, and exec then fails with
/// ETXTBSY: wait a moment and try again.
pub fn spawn_fresh_copy(command: &mut Command) -> Child {
    for _ in 0..100 {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                thread::sleep(Duration::from_millis(10))
            }
            result => return result.unwrap_or_else(|e| panic!("spawning {command:?}: {e}")),
        }
    }
    panic!("{command:?} stayed busy (ETXTBSY) for a second");
}

/// An echo server from examples/, started under `name`; returns it and its port.
pub fn echo_server(name: &str, args: &[&str]) -> (Workload, u16) {
    let w = Workload::spawn(&named_example("echo_server", name), args);
    let port = w.value().parse().unwrap();
    (w, port)
}

/// Runs an example client to completion; returns its `local` address.
pub fn run_client<S: AsRef<OsStr>>(example: &str, name: &str, args: &[S]) -> String {
    let w = Workload::spawn(&named_example(example, name), args);
    let local = w.value().to_string();
    w.finish();
    local
}

/// One text line of sockwatch output, split into its columns.
#[derive(Debug, Clone)]
pub struct Line {
    pub time: String,
    pub pid: u32,
    pub process: String,
    pub event: String,
    pub proto: String,
    pub local: String,
    pub remote: String,
    pub details: String,
}

impl Line {
    /// The line without time and pid, with durations and parent pids checked and
    /// replaced by `*`.
    pub fn key(&self) -> String {
        let details: Vec<String> = self
            .details
            .split(' ')
            .filter(|d| !d.is_empty())
            .filter_map(|d| match d.split_once('=') {
                Some((k @ ("latency" | "lifetime"), v)) => {
                    assert!(is_duration(v), "bad duration {v:?} in {self:?}");
                    Some(format!("{k}=*"))
                }
                Some(("ppid", v)) => {
                    assert!(v.parse::<u32>().is_ok(), "bad ppid {v:?} in {self:?}");
                    Some("ppid=*".to_string())
                }
                // TCP health: checked for form here, for value by Line::health.
                Some((k @ ("rtt" | "retrans" | "end"), v)) => {
                    assert!(
                        self.event == "CLOSE" && self.proto.starts_with("tcp"),
                        "{k}= on {self:?}"
                    );
                    let good = match k {
                        "rtt" => is_duration(v),
                        "retrans" => v.parse::<u32>().is_ok(),
                        _ => TCP_ENDS.contains(&v),
                    };
                    assert!(good, "bad {k}={v:?} in {self:?}");
                    None
                }
                _ => Some(d.to_string()),
            })
            .collect();
        let mut key = format!(
            "{} {} {} {} {}",
            self.process, self.event, self.proto, self.local, self.remote
        );
        if !details.is_empty() {
            key += " ";
            key += &details.join(" ");
        }
        key
    }
}

/// A printed duration (`1.500s`, `81.234us`) in nanoseconds, to the precision printed.
pub fn duration_ns(v: &str) -> u64 {
    assert!(is_duration(v), "not a duration: {v:?}");
    let unit = v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let scale = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        _ => 1e9,
    };
    (v[..v.len() - unit.len()].parse::<f64>().unwrap() * scale) as u64
}

/// The lines' keys with each local address written `LOCAL` (an ephemeral port).
pub fn keys_local_hidden(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l.key().replace(&l.local, "LOCAL"))
        .collect()
}

/// The ways a TCP CLOSE can say its connection ended.
pub const TCP_ENDS: [&str; 5] = ["local-fin", "peer-fin", "local-rst", "peer-rst", "timeout"];

/// A TCP CLOSE's health words.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub end: String,
    pub retrans: u32,
    pub rtt_us: f64,
}

impl Line {
    /// `end=`, `retrans=` and `rtt=` of a TCP CLOSE (all or none).
    pub fn health(&self) -> Option<Health> {
        let end = detail(self, "end")?.to_string();
        let retrans = detail(self, "retrans").unwrap().parse().unwrap();
        let rtt = detail(self, "rtt").unwrap();
        let unit = rtt.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
        let n: f64 = rtt[..rtt.len() - unit.len()].parse().unwrap();
        let scale = match unit {
            "ns" => 0.001,
            "us" => 1.0,
            "ms" => 1_000.0,
            _ => 1_000_000.0,
        };
        Some(Health {
            end,
            retrans,
            rtt_us: n * scale,
        })
    }
}

/// Whether a TCP connection's RETRANS lines agree with its CLOSE and DONE lines:
/// those before CLOSE add up to CLOSE's `retrans=`, and all of them to DONE's
/// where the kernel finished with the connection while sockwatch traced (a lost
/// FIN sent again after CLOSE). Err says what did not add up.
pub fn retransmits_add_up(lines: &[Line], local: &str, remote: &str) -> Result<(), String> {
    let mine = |l: &&Line| l.local == local && l.remote == remote;
    let close = lines
        .iter()
        .position(|l| l.event == "CLOSE" && mine(&l))
        .ok_or_else(|| format!("no CLOSE of {local}"))?;
    let segs = |upto: usize| -> u32 {
        lines[..upto]
            .iter()
            .filter(|l| l.event == "RETRANS" && mine(l))
            .map(|l| detail(l, "segs").unwrap().parse::<u32>().unwrap())
            .sum()
    };
    let at_close = lines[close].health().map_or(0, |h| h.retrans);
    if segs(close) != at_close {
        return Err(format!(
            "{local}: RETRANS lines before CLOSE add up to {}, CLOSE says {at_close}",
            segs(close)
        ));
    }
    if let Some(done) = lines.iter().find(|l| l.event == "DONE" && mine(l)) {
        let last: u32 = detail(done, "retrans").unwrap().parse().unwrap();
        if segs(lines.len()) != last {
            return Err(format!(
                "{local}: RETRANS lines add up to {}, DONE says {last}",
                segs(lines.len())
            ));
        }
    }
    Ok(())
}

/// The value of `key=` in a line's details.
pub fn detail<'a>(line: &'a Line, key: &str) -> Option<&'a str> {
    line.details
        .split(' ')
        .find_map(|d| d.strip_prefix(key)?.strip_prefix('='))
}

fn is_duration(v: &str) -> bool {
    let unit = v.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    let number = &v[..v.len() - unit.len()];
    ["ns", "us", "ms", "s"].contains(&unit) && !number.is_empty() && number.parse::<f64>().is_ok()
}

/// Parses text output (header first).
pub fn parse(stdout: &str) -> Vec<Line> {
    let mut lines = stdout.lines();
    let header = lines.next().expect("no header line");
    assert!(header.starts_with("TIME "), "header: {header}");
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 7, "short line {l:?}");
            Line {
                time: f[0].to_string(),
                pid: f[1].parse().unwrap_or_else(|_| panic!("pid in {l:?}")),
                process: f[2].to_string(),
                event: f[3].to_string(),
                proto: f[4].to_string(),
                local: f[5].to_string(),
                remote: f[6].to_string(),
                details: f[7..].join(" "),
            }
        })
        .collect()
}

/// The pid of the first line from a process of this name.
pub fn pid_of(lines: &[Line], process: &str) -> u32 {
    lines
        .iter()
        .find(|l| l.process == process)
        .unwrap_or_else(|| panic!("no lines from {process}: {lines:#?}"))
        .pid
}

/// The keys of one process's lines, in order.
pub fn keys_of(lines: &[Line], pid: u32) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.pid == pid)
        .map(Line::key)
        .collect()
}

/// Asserts one process's lines, with a readable diff on failure.
pub fn assert_lines(lines: &[Line], pid: u32, expected: &[String]) {
    let got = keys_of(lines, pid);
    assert_eq!(
        got,
        expected,
        "\nlines of pid {pid}:\n  got:\n    {}\n  expected:\n    {}\n",
        got.join("\n    "),
        expected.join("\n    ")
    );
}

/// Debian's redis-server on 127.0.0.1:`port`, without persistence, once it is ready.
pub fn start_redis(port: &str) -> Child {
    start_redis_on(&["--port", port, "--bind", "127.0.0.1"])
}

/// Debian's redis-server listening where `listen` says (`--port 0 --unixsocket
/// PATH`: a unix socket only), once it is ready.
pub fn start_redis_on(listen: &[&str]) -> Child {
    let mut server = Command::new("/usr/bin/redis-server")
        .args(listen)
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-server is missing: scripts/test and scripts/bench install it");
    let log = BufReader::new(server.stdout.take().unwrap());
    for line in log.lines() {
        // "Ready to accept connections tcp", "... unix"; older: "ready to accept connections"
        if line.unwrap().contains("eady to accept connections") {
            return server;
        }
    }
    let status = server.wait().unwrap();
    panic!("redis-server exited before it was ready: {status}");
}

/// Each line's whitespace-separated fields (a `--no-header` table's rows).
pub fn fields(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `setpriv` prefix that runs a command as `nobody` with exactly these
/// capabilities (e.g. "+bpf,+perfmon"), inherited and ambient so they survive exec.
pub fn as_nobody_with(caps: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]
    .map(String::from)
    .to_vec();
    if caps.is_empty() {
        v.push("--inh-caps=-all".into());
    } else {
        v.push(format!("--inh-caps=-all,{caps}"));
        v.push(format!("--ambient-caps=-all,{caps}"));
    }
    v
}

/// A flood the traced client `cli` makes while sockwatch (`trace`) is stopped:
/// `rounds` 1-byte echoes with a server named `srv`. Returns what sockwatch
/// printed and the events the flood generated (EXEC, CONNECT, a SEND and a RECV
/// per round, CLOSE, EXIT).
pub fn stalled_flood(trace: Trace, srv: &str, cli: &str, rounds: u64) -> (Output, u64) {
    signal(trace.pid(), nix::sys::signal::Signal::SIGSTOP);
    let (server, port) = echo_server(srv, &["tcp", "127.0.0.1:0", "1"]);
    let addr = format!("127.0.0.1:{port}");
    let repeat = rounds.to_string();
    run_client(
        "echo_client",
        cli,
        &["tcp", &addr, "1", "--repeat", &repeat],
    );
    server.finish();
    signal(trace.pid(), nix::sys::signal::Signal::SIGCONT);
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    (out, 2 * rounds + 4)
}

/// Whether a live process has this name: zombies do not count (a container's
/// init may never reap an orphan that was killed).
pub fn process_alive(name: &str) -> bool {
    let out = Command::new("pgrep").args(["-x", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            state.is_some_and(|s| !s.starts_with('Z'))
        })
    })
}

/// Output of a COMMAND whose echo clients share sockwatch's stdout: the `local ADDR`
/// lines they printed, and the event lines (header first) without them.
pub fn split_client_output(stdout: &str) -> (Vec<String>, String) {
    let locals = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("local "))
        .map(String::from)
        .collect();
    let events = stdout
        .lines()
        .filter(|l| !l.starts_with("local "))
        .map(|l| format!("{l}\n"))
        .collect();
    (locals, events)
}

/// Runs a shell script in a private mount namespace, so it can hide kernel files;
/// $SOCKWATCH is sockwatch.
pub fn with_private_mounts(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env("SOCKWATCH", SOCKWATCH)
        .output()
        .expect("unshare (util-linux)")
}

/// A dbus-daemon configuration for a private bus at the socket `path`, open to the
/// user who runs it: the unix-domain test's and the services benchmark's.
pub fn bus_config(path: &str) -> String {
    format!(
        "<busconfig><type>session</type><listen>unix:path={path}</listen>\
         <auth>EXTERNAL</auth><policy context=\"default\">\
         <allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/>\
         <allow own=\"*\"/></policy></busconfig>"
    )
}

/// A path as the LOCAL and REMOTE columns print it (the escapes examples/unix_sockets needs).
pub fn shown(path: &Path) -> String {
    path.to_str()
        .unwrap()
        .replace(' ', "\\x20")
        .replace('\n', "\\x0a")
}

/// The socket lines examples/unix_sockets makes sockwatch print, by process: its
/// own (`pid`, named `name`, run in `dir`), then its four children's.
pub fn unix_example_lines(
    name: &str,
    dir: &Path,
    pid: u32,
    children: &[u32],
) -> Vec<(u32, Vec<String>)> {
    let [c1, c2, c3, c4] = children[..] else {
        panic!("four children: {children:?}")
    };
    let srv = shown(&dir.join("srv sock\n1"));
    let seq = shown(&dir.join("seq.sock"));
    let client = shown(&dir.join("c.sock"));
    let abs = format!("@sockwatch-{pid}");
    let missing = shown(&dir.join("missing"));
    let dead = shown(&dir.join("dead.sock"));
    let n = |rest: String| format!("{name} {rest}");
    let parent = vec![
        n(format!("LISTEN unix/stream {srv} * backlog=4096")),
        n(format!(
            "ACCEPT unix/stream {srv} (unnamed) peer_pid={c1} peer={name}"
        )),
        n(format!("RECV unix/stream {srv} (unnamed) bytes=11")),
        n(format!("SEND unix/stream {srv} (unnamed) bytes=11")),
        n(format!("RECV unix/stream {srv} (unnamed) bytes=0 eof")),
        n(format!(
            "CLOSE unix/stream {srv} (unnamed) sent=11 received=11 lifetime=*"
        )),
        n(format!(
            "CLOSE unix/stream {srv} * sent=0 received=0 lifetime=*"
        )),
        n(format!("LISTEN unix/seqpacket {seq} * backlog=8")),
        n(format!(
            "ACCEPT unix/seqpacket {seq} (unnamed) peer_pid={c2} peer={name}"
        )),
        n(format!("RECV unix/seqpacket {seq} (unnamed) bytes=100")),
        n(format!("RECV unix/seqpacket {seq} (unnamed) bytes=100")),
        n(format!("RECV unix/seqpacket {seq} (unnamed) bytes=100")),
        n(format!(
            "CLOSE unix/seqpacket {seq} (unnamed) sent=0 received=300 lifetime=*"
        )),
        n(format!(
            "CLOSE unix/seqpacket {seq} * sent=0 received=0 lifetime=*"
        )),
        // The socketpair: both ends unnamed.
        n("SEND unix/stream (unnamed) (unnamed) bytes=5".into()),
        n("RECV unix/stream (unnamed) (unnamed) bytes=7".into()),
        n("CLOSE unix/stream (unnamed) (unnamed) sent=5 received=7 lifetime=*".into()),
        // Datagrams: to an abstract name from an unbound socket, then from a bound one.
        n(format!("LISTEN unix/dgram {abs} *")),
        n(format!("SEND unix/dgram (unnamed) {abs} bytes=9")),
        n(format!("RECV unix/dgram {abs} (unnamed) bytes=9")),
        n(format!("LISTEN unix/dgram {client} *")),
        n(format!(
            "CONNECT unix/dgram {client} {abs} result=ok latency=*"
        )),
        n(format!("SEND unix/dgram {client} {abs} bytes=4")),
        n(format!("RECV unix/dgram {abs} {client} bytes=4")),
        n(format!(
            "CLOSE unix/dgram {client} {abs} sent=4 received=0 lifetime=*"
        )),
        n("CLOSE unix/dgram (unnamed) * sent=9 received=0 lifetime=*".into()),
        n(format!(
            "CLOSE unix/dgram {abs} * sent=0 received=13 lifetime=*"
        )),
        // Failures: the path as the process named it, the kernel's errno.
        n(format!(
            "CONNECT unix/stream (unnamed) {missing} result=ENOENT latency=*"
        )),
        n("CLOSE unix/stream (unnamed) * sent=0 received=0 lifetime=*".into()),
        n(format!("LISTEN unix/stream {dead} * backlog=4096")),
        n(format!(
            "CLOSE unix/stream {dead} * sent=0 received=0 lifetime=*"
        )),
        n(format!(
            "CONNECT unix/stream (unnamed) {dead} result=ECONNREFUSED latency=*"
        )),
        n("CLOSE unix/stream (unnamed) * sent=0 received=0 lifetime=*".into()),
        // A socket received with SCM_RIGHTS: its totals go on with this process.
        n("RECV unix/stream (unnamed) (unnamed) bytes=1 fds=1".into()),
        n("RECV unix/stream (unnamed) (unnamed) bytes=1".into()),
        n("SEND unix/stream (unnamed) (unnamed) bytes=6".into()),
        n("CLOSE unix/stream (unnamed) (unnamed) sent=6 received=0 lifetime=*".into()),
        n("CLOSE unix/stream (unnamed) (unnamed) sent=0 received=2 lifetime=*".into()),
    ];
    let stream_client = vec![
        n(format!(
            "CONNECT unix/stream (unnamed) {srv} result=ok latency=* peer_pid={pid} peer={name}"
        )),
        n(format!("SEND unix/stream (unnamed) {srv} bytes=11")),
        n(format!("RECV unix/stream (unnamed) {srv} bytes=11")),
        n(format!(
            "CLOSE unix/stream (unnamed) {srv} sent=11 received=11 lifetime=*"
        )),
    ];
    let seq_client = vec![
        n(format!(
            "CONNECT unix/seqpacket (unnamed) {seq} result=ok latency=* peer_pid={pid} peer={name}"
        )),
        n(format!("SEND unix/seqpacket (unnamed) {seq} bytes=100")),
        n(format!("SEND unix/seqpacket (unnamed) {seq} bytes=100")),
        n(format!("SEND unix/seqpacket (unnamed) {seq} bytes=100")),
        n(format!(
            "CLOSE unix/seqpacket (unnamed) {seq} sent=300 received=0 lifetime=*"
        )),
    ];
    let pair_child = vec![
        n("RECV unix/stream (unnamed) (unnamed) bytes=5".into()),
        n("SEND unix/stream (unnamed) (unnamed) bytes=7".into()),
        n("CLOSE unix/stream (unnamed) (unnamed) sent=7 received=5 lifetime=*".into()),
    ];
    let passer = vec![
        n("SEND unix/stream (unnamed) (unnamed) bytes=1 fds=1".into()),
        n("SEND unix/stream (unnamed) (unnamed) bytes=1".into()),
        n("RECV unix/stream (unnamed) (unnamed) bytes=6".into()),
        // Its end of the new pair when it is done with it, the channel at exit.
        n("CLOSE unix/stream (unnamed) (unnamed) sent=0 received=6 lifetime=*".into()),
        n("CLOSE unix/stream (unnamed) (unnamed) sent=2 received=0 lifetime=*".into()),
    ];
    vec![
        (pid, parent),
        (c1, stream_client),
        (c2, seq_client),
        (c3, pair_child),
        (c4, passer),
    ]
}

/// The keys of one process's socket lines, in order.
pub fn socket_keys_of(lines: &[Line], pid: u32) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.pid == pid && l.proto != "-")
        .map(Line::key)
        .collect()
}

/// Receives one descriptor passed over `conn` (SCM_RIGHTS), with its byte.
pub fn receive_descriptor(conn: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let fds: Vec<std::os::fd::RawFd> = msg
        .cmsgs()
        .unwrap()
        .flat_map(|c| match c {
            nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds,
            _ => vec![],
        })
        .collect();
    assert_eq!(fds.len(), 1);
    // SAFETY: the kernel just installed this descriptor for this process.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) }
}

/// This process's cgroup v2 directory (sockwatch's own is the same: where COMMAND's
/// is made).
pub fn own_cgroup_dir() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[2] == "cgroup2").then(|| f[1].to_string())
        })
        .unwrap();
    PathBuf::from(root).join(own.trim_start_matches('/'))
}

/// NDJSON output, one value per line (a line that is not JSON fails the test).
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
