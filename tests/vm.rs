//! Kernel-variant tests: the live scenario inside qemu on Debian's own kernels.
//! 6.12 has every tracepoint sockwatch uses but predates file_ref_t (6.13), so the
//! pre-6.13 reference count and CO-RE across kernels are proven there; 6.1 lacks
//! the 6.3 send/recv tracepoints, where sockwatch must say so and still run the
//! events that need none. scripts/vm-kernel fetches the kernels; tests/vm/run boots.
//! The VM runs the self-contained binary that scripts/build-static makes and the
//! README ships, with no C library of its own beside it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const ECHO_SCENARIO: &str = include_str!("vm/echo.sh");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kernel(series: &str) -> PathBuf {
    let out = Command::new(repo().join("scripts/vm-kernel"))
        .arg(series)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fetching Debian's {series} kernel: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The self-contained sockwatch, built once (scripts/build-static) for all VM tests.
fn static_sockwatch() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new(repo().join("scripts/build-static"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "scripts/build-static: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        })
        .clone()
}

/// What the scenario printed inside the VM, line endings cleaned of the serial's \r.
fn boot(series: &str, prelude: &str) -> String {
    require_root();
    let scenario =
        std::env::temp_dir().join(format!("sockwatch-vm-{series}-{}.sh", std::process::id()));
    std::fs::write(&scenario, format!("{prelude}\n{ECHO_SCENARIO}")).unwrap();
    let examples = Path::new(SOCKWATCH).parent().unwrap().join("examples");
    let out = Command::new(repo().join("tests/vm/run"))
        .arg(kernel(series))
        .arg(&scenario)
        .arg(static_sockwatch())
        .args(
            ["echo_server", "echo_client", "nb_connect", "exec_with_sock"]
                .map(|e| examples.join(e)),
        )
        .output()
        .expect("tests/vm/run (needs qemu-system-x86, busybox-static, cpio)");
    std::fs::remove_file(&scenario).unwrap();
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let start = console
        .find("=== scenario start")
        .unwrap_or_else(|| panic!("the VM never ran the scenario:\n{console}"));
    let end = console[start..]
        .find("=== scenario end")
        .map_or(console.len(), |i| start + i);
    console[start..end].to_string()
}

/// The lines between `--- NAME` and the next `--- ` marker.
fn section<'a>(output: &'a str, name: &str) -> &'a str {
    let head = format!("--- {name}\n");
    let from = output
        .find(&head)
        .unwrap_or_else(|| panic!("no {name} section:\n{output}"))
        + head.len();
    let to = output[from..]
        .find("\n--- ")
        .map_or(output.len(), |i| from + i + 1);
    &output[from..to]
}

/// `key value` lines the scenario and the examples print (tcp_port, local, ...).
fn values<'a>(output: &'a str, key: &str) -> Vec<&'a str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .collect()
}

#[test]
fn tracepoint_path_on_debian_6_12() {
    let out = boot("6.12", "SOCKWATCH_ARGS=");
    assert!(out.starts_with("=== scenario start 6.12."), "{out}");
    assert_eq!(values(&out, "sockwatch_rc"), ["0"], "{out}");
    let lines = parse(section(&out, "stdout"));
    let (tcp, udp) = (values(&out, "tcp_port")[0], values(&out, "udp_port")[0]);
    let locals = values(&out, "local");
    let (tcp_client, refused, udp_client) = (locals[0], locals[1], locals[2]);
    let srv = format!("127.0.0.1:{tcp}");
    let keys: Vec<String> = lines.iter().map(Line::key).collect();

    let expected_tcp_server = [
        "echo_server EXEC - - - path=./echo_server ppid=*".to_string(),
        format!("echo_server LISTEN tcp {srv} * backlog=64"),
        format!("echo_server ACCEPT tcp {srv} {tcp_client}"),
        format!("echo_server RECV tcp {srv} {tcp_client} bytes=5"),
        format!("echo_server SEND tcp {srv} {tcp_client} bytes=5"),
        format!("echo_server RECV tcp {srv} {tcp_client} bytes=1000"),
        format!("echo_server SEND tcp {srv} {tcp_client} bytes=1000"),
        format!("echo_server RECV tcp {srv} {tcp_client} bytes=0 eof"),
        format!("echo_server CLOSE tcp {srv} {tcp_client} sent=1005 received=1005 lifetime=*"),
        format!("echo_server CLOSE tcp {srv} * sent=0 received=0 lifetime=*"),
        "echo_server EXIT - - - exit_code=0".to_string(),
    ];
    assert_lines(&lines, pid_of(&lines, "echo_server"), &expected_tcp_server);
    let client = pid_of(&lines, "echo_client");
    assert_lines(
        &lines,
        client,
        &[
            "echo_client EXEC - - - path=./echo_client ppid=*".to_string(),
            format!("echo_client CONNECT tcp {tcp_client} {srv} result=ok latency=*"),
            format!("echo_client SEND tcp {tcp_client} {srv} bytes=5"),
            format!("echo_client RECV tcp {tcp_client} {srv} bytes=5"),
            format!("echo_client SEND tcp {tcp_client} {srv} bytes=1000"),
            format!("echo_client RECV tcp {tcp_client} {srv} bytes=1000"),
            format!("echo_client CLOSE tcp {tcp_client} {srv} sent=1005 received=1005 lifetime=*"),
            "echo_client EXIT - - - exit_code=0".to_string(),
        ],
    );
    assert!(
        keys.contains(&format!(
            "nb_connect CONNECT tcp {refused} 127.0.0.1:1 result=ECONNREFUSED latency=*"
        )),
        "{keys:#?}"
    );
    // Unconnected UDP: each datagram's peer comes from the syscall's arguments.
    let usrv = format!("127.0.0.1:{udp}");
    for n in [7, 300] {
        for key in [
            format!("echo_server RECV udp {usrv} {udp_client} bytes={n}"),
            format!("echo_server SEND udp {usrv} {udp_client} bytes={n}"),
            format!("echo_client SEND udp {udp_client} {usrv} bytes={n}"),
            format!("echo_client RECV udp {udp_client} {usrv} bytes={n}"),
        ] {
            assert!(keys.contains(&key), "{key} missing: {keys:#?}");
        }
    }
    assert!(keys.contains(&format!(
        "echo_server CLOSE udp {usrv} * sent=307 received=307 lifetime=*"
    )));
    // Close on exec: the socket's CLOSE comes before the new image's EXEC.
    let (esrv, exec_local) = (
        format!("127.0.0.1:{}", values(&out, "exec_port")[0]),
        locals[3],
    );
    let exec_keys = keys_of(&lines, pid_of(&lines, "exec_with_sock"));
    assert_eq!(
        exec_keys[3..],
        [
            format!("exec_with_sock RECV tcp {exec_local} {esrv} bytes=4"),
            format!("exec_with_sock CLOSE tcp {exec_local} {esrv} sent=4 received=4 lifetime=*"),
            "exec_with_sock EXEC - - - path=/w/exec_with_sock ppid=*".to_string(),
            "exec_with_sock EXIT - - - exit_code=0".to_string(),
        ],
        "{exec_keys:#?}"
    );
    assert!(
        section(&out, "stderr").ends_with(&format!(
            "sockwatch: {} events printed, 0 lost\n",
            lines.len()
        )),
        "{out}"
    );
}

#[test]
fn debian_6_1_runs_what_it_can_and_names_what_it_lacks() {
    let out = boot(
        "6.1",
        r#"./sockwatch nothing-here 2>&1; echo "default_rc $?"
SOCKWATCH_ARGS="--events exec,exit,listen,connect,accept""#,
    );
    assert!(out.starts_with("=== scenario start 6.1."), "{out}");
    assert!(
        out.contains(
            "sockwatch: error: this kernel lacks the tracepoint sock:sock_send_length (added in \
             Linux 6.3; older kernels can run --events exec,exit,listen,connect,accept)\n"
        ),
        "{out}"
    );
    assert_eq!(values(&out, "default_rc"), ["1"], "{out}");
    assert_eq!(values(&out, "sockwatch_rc"), ["0"], "{out}");
    let lines = parse(section(&out, "stdout"));
    let tcp = values(&out, "tcp_port")[0];
    let locals = values(&out, "local");
    let (tcp_client, refused) = (locals[0], locals[1]);
    let srv = format!("127.0.0.1:{tcp}");
    let keys: Vec<String> = lines.iter().map(Line::key).collect();
    // The TCP echo's lifecycle without its bytes; the UDP echo has no such events.
    assert_eq!(
        keys[..5],
        [
            "echo_server EXEC - - - path=./echo_server ppid=*".to_string(),
            format!("echo_server LISTEN tcp {srv} * backlog=64"),
            "echo_client EXEC - - - path=./echo_client ppid=*".to_string(),
            format!("echo_client CONNECT tcp {tcp_client} {srv} result=ok latency=*"),
            format!("echo_server ACCEPT tcp {srv} {tcp_client}"),
        ],
        "{keys:#?}"
    );
    assert!(keys.contains(&format!(
        "nb_connect CONNECT tcp {refused} 127.0.0.1:1 result=ECONNREFUSED latency=*"
    )));
    assert!(
        lines
            .iter()
            .all(|l| ["EXEC", "EXIT", "LISTEN", "CONNECT", "ACCEPT"].contains(&l.event.as_str())),
        "{keys:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.event == "EXIT").count(),
        7, // three servers, two clients, nb_connect and exec_with_sock
        "{keys:#?}"
    );
}
