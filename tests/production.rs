//! Live tests of running sockwatch in production: as a non-root user with exactly
//! the documented capabilities, and with the limits an operator sets.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// What a non-root user needs in the tracepoint mode (README, "Running without root").
const CAPS: &str = "+bpf,+perfmon,+dac_read_search";

fn wrapper(caps: &str) -> Vec<String> {
    as_nobody_with(caps)
}

#[test]
fn a_non_root_user_with_the_documented_capabilities_traces() {
    require_root();
    let srv = unique_name("s");
    let w = wrapper(CAPS);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let trace = Trace::start_as(&w, &[&srv], Stdio::piped());
    let (server, port) = echo_server(&srv, &["tcp", "127.0.0.1:0", "1"]);
    let listen = format!("127.0.0.1:{port}");
    let client = run_client(
        "echo_client",
        &unique_name("c"),
        &["tcp", &listen, "5", "70"],
    );
    let pid = server.pid();
    server.finish();
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let lines = parse(&out.stdout);
    let dir = copies_dir();
    assert_lines(
        &lines,
        pid,
        &[
            format!("{srv} EXEC - - - path={} ppid=*", dir.join(&srv).display()),
            format!("{srv} LISTEN tcp {listen} * backlog=64"),
            format!("{srv} ACCEPT tcp {listen} {client}"),
            format!("{srv} RECV tcp {listen} {client} bytes=5"),
            format!("{srv} SEND tcp {listen} {client} bytes=5"),
            format!("{srv} RECV tcp {listen} {client} bytes=70"),
            format!("{srv} SEND tcp {listen} {client} bytes=70"),
            format!("{srv} RECV tcp {listen} {client} bytes=0 eof"),
            format!("{srv} CLOSE tcp {listen} {client} sent=75 received=75 lifetime=*"),
            format!("{srv} CLOSE tcp {listen} * sent=0 received=0 lifetime=*"),
            format!("{srv} EXIT - - - exit_code=0"),
        ],
    );
}

/// sockwatch's stderr and status as `nobody` with `caps` in the tracepoint mode
/// (this machine's), in a private mount namespace after `prelude` (a shell command)
/// ran there as root.
fn as_nobody(caps: &str, prelude: &str) -> (Option<i32>, String) {
    require_root();
    let script = format!(
        r#"{prelude}
exec "$@" --probe tracepoint --duration 100ms nothing-here"#
    );
    let o = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(wrapper(caps))
        .arg(SOCKWATCH)
        .output()
        .expect("unshare and setpriv (util-linux)");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn each_missing_capability_is_named() {
    let hint = "(run as root, or grant CAP_BPF and CAP_PERFMON (and CAP_DAC_READ_SEARCH for \
                the tracepoint mode))";
    for (caps, missing) in [
        ("", "permission denied: missing CAP_BPF and CAP_PERFMON"),
        (
            "+perfmon,+dac_read_search",
            "permission denied: missing CAP_BPF",
        ),
        (
            "+bpf,+dac_read_search",
            "permission denied: missing CAP_PERFMON",
        ),
        (
            "+bpf,+perfmon",
            "permission denied reading /sys/kernel/tracing: missing CAP_DAC_READ_SEARCH",
        ),
    ] {
        let (status, err) = as_nobody(caps, "");
        assert_eq!(status, Some(1), "{caps}: {err}");
        assert_eq!(
            err,
            format!("sockwatch: error: {missing} {hint}\n"),
            "{caps}"
        );
    }
    let (status, err) = as_nobody(CAPS, "");
    assert_eq!(status, Some(0), "{err}");
}

#[test]
fn an_unmounted_tracefs_needs_root_once() {
    let (status, err) = as_nobody(
        CAPS,
        "while umount /sys/kernel/tracing 2>/dev/null; do :; done",
    );
    assert_eq!(status, Some(1), "{err}");
    assert_eq!(
        err,
        "sockwatch: error: tracefs is not mounted, and mounting it needs CAP_SYS_ADMIN: as \
         root, run `mount -t tracefs nodev /sys/kernel/tracing` once\n"
    );
}

/// The CLOSE lines of one process, as keys.
fn closes(lines: &[Line], pid: u32) -> Vec<String> {
    keys_of(lines, pid)
        .into_iter()
        .filter(|k| k.split(' ').nth(1) == Some("CLOSE"))
        .collect()
}

/// Runs socket_batch under `name`; returns its pid, receiver address and sender ends.
fn socket_batch(name: &str, count: usize) -> (u32, String, Vec<String>) {
    let w = Workload::spawn(&named_example("socket_batch", name), &[count.to_string()]);
    let receiver = w.value().to_string();
    let pid = w.pid();
    let rest = w.finish();
    let senders = rest[0]
        .strip_prefix("senders ")
        .unwrap()
        .split(' ')
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    (pid, receiver, senders)
}

#[test]
fn a_full_socket_table_is_reported_and_tracing_recovers() {
    require_root();
    rerun_if_skipped(|| {
        let name = unique_name("b");
        let trace = Trace::start(&["--max-sockets", "4", &name]);
        // 11 sockets at once: the receiver and the first three senders fit.
        let (pid, receiver, senders) = socket_batch(&name, 10);
        // Then 3 at once, after those closed: all fit again.
        let (pid2, receiver2, senders2) = socket_batch(&name, 2);
        std::thread::sleep(Duration::from_millis(1200));
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);

        // A batch's CLOSE lines: each sender sent 1 byte, the receiver got them all.
        let batch_closes = |senders: &[String], receiver: &str, received: usize| {
            let mut lines: Vec<String> = senders
                .iter()
                .map(|s| format!("{name} CLOSE udp {s} {receiver} sent=1 received=0 lifetime=*"))
                .collect();
            lines.push(format!(
                "{name} CLOSE udp {receiver} * sent=0 received={received} lifetime=*"
            ));
            lines
        };
        assert_eq!(
            closes(&lines, pid),
            batch_closes(&senders[..3], &receiver, 10)
        );
        // Sends and receives of untracked sockets are still printed.
        let count = |pid: u32, event: &str| {
            lines
                .iter()
                .filter(|l| l.pid == pid && l.event == event)
                .count()
        };
        assert_eq!((count(pid, "SEND"), count(pid, "RECV")), (10, 10));
        assert_eq!(closes(&lines, pid2), batch_closes(&senders2, &receiver2, 2));

        assert!(
            out.stderr.contains(
                "sockwatch: 7 sockets untracked (the socket table was full): their CLOSE lines will be missing"
            ),
            "{}",
            out.stderr
        );
        out.assert_stderr_ends(&format!(
            "sockwatch: {} events printed, 0 lost, 7 sockets untracked",
            lines.len()
        ));
    });
}

#[test]
fn a_small_event_buffer_fills_sooner_and_says_so() {
    require_root();
    rerun_if_skipped(|| {
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        // 10K is not a power of two: the kernel gets 16K, about 140 events.
        let trace = Trace::start(&["--buffer-size", "10K", &cli]);
        assert!(
            trace.early_stderr().iter().any(|l| l
                == "sockwatch: note: the event buffer must be a power of two: using 16384 bytes"),
            "{:?}",
            trace.early_stderr()
        );
        let (out, generated) = stalled_flood(trace, &srv, &cli, 1000);
        let printed = parse(&out.stdout).len() as u64;
        let lost = generated - printed;
        assert!((100..200).contains(&printed), "{printed} printed");
        assert_eq!(
            out.stderr.lines().last().unwrap(),
            format!("sockwatch: {printed} events printed, {lost} lost")
        );
    });
}
