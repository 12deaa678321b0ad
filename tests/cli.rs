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
        "[-- COMMAND [ARG]...]",
        "--expect <EXPR>",
        "--forbid <EXPR>",
        "--summary-only",
        "4 an assertion failed",
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
    assert_usage_error(&["--proto", "udp"], "or --all");
    assert_usage_error(&["--all", "x"], "cannot be used with");
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
    assert_usage_error(&["--port", "0", "x"], "invalid value '0'");
    assert_usage_error(&["--port", "http", "x"], "invalid value 'http'");
    assert_usage_error(&["--peer", "10.0.0.0/33", "x"], "prefix length");
    assert_usage_error(
        &["--peer", "example.org", "x"],
        "not an IPv4 or IPv6 address",
    );
    assert_usage_error(&["--proto", "sctp", "x"], "invalid value 'sctp'");
    assert_usage_error(&["--cgroup", "/no/such/cgroup"], "no such directory");
    assert_usage_error(&["--cgroup", "/tmp"], "not a cgroup v2 directory");
    assert_usage_error(&["-u", "nobody", "x"], "<COMMAND>");
    assert_usage_error(&["-c", "-C", "x"], "cannot be used with");
}

#[test]
fn a_malformed_expression_names_the_bad_term() {
    assert_usage_error(
        &["--expect", "connect rport=abc", "x"],
        "invalid value 'connect rport=abc' for '--expect <EXPR>': bad term \"rport=abc\": not a port (1-65535)",
    );
    assert_usage_error(
        &["--forbid", "connect peer!=10.0.0.0/40", "x"],
        "bad term \"peer!=10.0.0.0/40\": prefix length \"40\" is not 0 to 32",
    );
    assert_usage_error(&["--forbid", "conect", "x"], "\"conect\" is not an event");
    assert_usage_error(
        &["--expect", "connect color=red", "x"],
        "unknown key (keys: port, lport",
    );
    assert_usage_error(&["--expect", "", "x"], "empty expression");
    // The kernel's rule table: 16 expressions of 8 terms.
    assert_usage_error(
        &[
            "--expect",
            "connect port=1 port=2 port=3 port=4 port=5 port=6 port=7 port=8 port=9",
            "x",
        ],
        "more than 8 terms",
    );
    let mut args = Vec::new();
    for _ in 0..9 {
        args.extend(["--expect", "connect", "--forbid", "accept"]);
    }
    args.push("x");
    assert_usage_error(
        &args,
        "at most 16 --expect and --forbid expressions can be given",
    );
}

#[test]
fn deny_allow_and_audit_need_a_command_and_decidable_terms() {
    assert_usage_error(
        &["--deny", "connect peer=10.0.0.0/8", "curl"],
        "--deny, --allow and --audit need -- COMMAND: they act in its own cgroup",
    );
    assert_usage_error(&["--audit", "curl"], "need -- COMMAND");
    assert_usage_error(
        &["--allow", "accept", "--", "true"],
        "--deny and --allow are about connect or send (or any of the two)",
    );
    assert_usage_error(
        &["--deny", "connect lport=80", "--", "true"],
        "port is not known when a call is decided (peer, rport, proto and process are)",
    );
    assert_usage_error(
        &["--leave-tree", "--deny", "connect", "--", "true"],
        "--leave-tree cannot be used with --deny",
    );
}

#[test]
fn a_command_that_cannot_run_exits_127_or_126() {
    let plain = std::env::temp_dir().join(format!("sockwatch-plain-{}", std::process::id()));
    std::fs::write(&plain, "not a program").unwrap();
    let plain = plain.to_str().unwrap();
    for (command, status, needle) in [
        (
            "no-such-command-here",
            127,
            "no-such-command-here: command not found".to_string(),
        ),
        (
            "/no/such/path",
            127,
            "/no/such/path: command not found".to_string(),
        ),
        (plain, 126, format!("{plain}: not an executable file")),
    ] {
        let o = sockwatch(&["--", command]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(status), "{err}");
        assert_eq!(err, format!("sockwatch: error: {needle}\n"));
    }
    let _ = std::fs::remove_file(plain);
    let o = sockwatch(&["-u", "no-such-user-here", "--", "true"]);
    assert_eq!(o.status.code(), Some(126));
    assert_eq!(
        stderr(&o),
        "sockwatch: error: --user no-such-user-here: no such user\n"
    );
}

/// Every status `--help` documents has its row in the README's table, and back.
#[test]
fn readme_and_help_agree_on_exit_statuses() {
    let help = String::from_utf8(sockwatch(&["--help"]).stdout).unwrap();
    let section = help
        .split("Exit status:")
        .nth(1)
        .expect("an exit status section");
    let from_help: Vec<String> = section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u8>().is_ok())
        .map(String::from)
        .collect();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = readme.split("## Exit status").nth(1).unwrap();
    let from_readme: Vec<String> = table
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| ")?.split(' ').next())
        .filter(|w| w.parse::<u8>().is_ok())
        .map(String::from)
        .collect();
    assert_eq!(from_help, ["0", "1", "2", "3", "4", "5", "126", "127"]);
    assert_eq!(from_readme, from_help);
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
