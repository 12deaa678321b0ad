//! Command tests: arguments, errors and exit codes. None of them needs privilege
//! to pass; the privilege test drops to `nobody` itself.

use std::process::{Command, Output};

const SOCKWATCH: &str = env!("CARGO_BIN_EXE_sockwatch");

fn sockwatch(args: &[&str]) -> Output {
    Command::new(SOCKWATCH).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A usage error: exit 2 and exactly one line on stderr, no panic, no backtrace.
fn assert_usage_error(args: &[&str], needle: &str) {
    let o = sockwatch(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("sockwatch: error: "), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn help_documents_events_and_exit_codes() {
    let o = sockwatch(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "--events",
        "--json",
        "--count",
        "--timeout",
        "--pid",
        "Exit status",
        "3 --timeout",
    ] {
        assert!(out.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn version() {
    let o = sockwatch(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .starts_with("sockwatch "));
}

#[test]
fn bad_arguments_are_one_line_errors_with_status_2() {
    assert_usage_error(&[], "nothing to trace");
    assert_usage_error(&["--events", "nope", "x"], "invalid value 'nope'");
    assert_usage_error(&["--pid", "abc"], "invalid value 'abc'");
    assert_usage_error(&["--pid", "0"], "invalid value '0'");
    // Above the kernel's PID_MAX_LIMIT (2^22): no process can have it.
    assert_usage_error(&["--pid", "4194305"], "no process has pid 4194305");
    assert_usage_error(&["--count", "0", "x"], "invalid value '0'");
    assert_usage_error(&["--duration", "soon", "x"], "invalid value 'soon'");
    assert_usage_error(&["--duration", "0s", "x"], "longer than zero");
    assert_usage_error(&["--timeout", "5s", "x"], "--count");
    assert_usage_error(&["--bogus", "x"], "unexpected argument '--bogus'");
    assert_usage_error(&[""], "cannot be empty");
    assert_usage_error(&["--buffer-size", "2G", "x"], "larger than the most");
    assert_usage_error(&["--buffer-size", "8X", "x"], "unknown unit");
    assert_usage_error(&["--buffer-size", "0", "x"], "larger than zero");
    assert_usage_error(&["--max-sockets", "0", "x"], "invalid value '0'");
    assert_usage_error(&["--max-sockets", "99999999", "x"], "1..=16777216");
    assert_usage_error(&["a", "b", "c", "d", "e", "f", "g", "h", "i"], "at most 8");
}

#[test]
fn without_privileges_a_clear_error_and_status_1() {
    if !nix::unistd::geteuid().is_root() {
        // Already unprivileged: run it directly.
        let o = sockwatch(&["x"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("run as root"), "{}", stderr(&o));
        return;
    }
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(SOCKWATCH)
        .arg("x")
        .output()
        .expect("setpriv (util-linux) drops privileges for this test");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "sockwatch: error: permission denied: missing CAP_BPF and CAP_PERFMON (run as root, \
         or grant CAP_BPF and CAP_PERFMON (and CAP_DAC_READ_SEARCH for the tracepoint mode))\n"
    );
}
