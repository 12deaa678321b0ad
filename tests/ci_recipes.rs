//! The README's "In CI" recipes, run exactly as written there, each with a
//! workload that passes it and one that fails it. The stand-ins `./server`,
//! `./run-tests` and `./app` are written by the tests; everything else is the
//! README's text.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The shell blocks of the README's "In CI" section, in order.
fn recipes() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## In CI\n")
        .nth(1)
        .expect("the README has an \"In CI\" section");
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<String> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect();
    assert_eq!(blocks.len(), 5, "five recipes: {blocks:#?}");
    blocks
}

/// A scratch directory for one recipe run, with executable stand-ins in it.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("sockwatch-ci-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn script(&self, name: &str, body: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a recipe with bash in `dir`, with this build's sockwatch first on PATH.
fn run_recipe(recipe: &str, dir: &Path, limit: Duration) -> (Option<i32>, String, String) {
    let bin = Path::new(SOCKWATCH).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut child = Command::new("bash")
        .args(["-c", recipe])
        .current_dir(dir)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the recipe ran past {limit:?}:\n{recipe}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn httpd_script(port: u16) -> String {
    // Its output must not hold the recipe's pipes open once sockwatch has gone.
    format!("exec busybox httpd -f -p 127.0.0.1:{port} -h . > /dev/null 2>&1")
}

/// A client that keeps trying until the server is up, as a health check would.
fn retrying_client(port: u16) -> Child {
    Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--retry",
            "30",
            "--retry-connrefused",
        ])
        .args(["--retry-delay", "1", &format!("http://127.0.0.1:{port}/")])
        .spawn()
        .unwrap()
}

/// Kills the busybox httpd the recipe left running on `port`, and says whether it was.
fn stop_server(port: u16) -> bool {
    let pattern = format!("httpd -f -p 127.0.0.1:{port}");
    let found = Command::new("pkill")
        .args(["-f", &pattern])
        .status()
        .unwrap();
    found.success()
}

#[test]
fn wait_for_a_servers_first_accept() {
    require_root();
    let recipe = &recipes()[0];
    let dir = Dir::new("accept");
    let port = free_port();
    dir.script("server", &httpd_script(port));
    std::fs::write(dir.0.join("index.html"), "hello").unwrap();
    let mut client = retrying_client(port);
    let (status, _, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert!(client.wait().unwrap().success());
    assert_eq!(status, Some(0), "{stderr}");
    let lines = parse(&dir.read("first-accept.log"));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0].event, "ACCEPT");
    assert_eq!(lines[0].local, format!("127.0.0.1:{port}"));
    assert!(
        stop_server(port),
        "the server keeps running after the first accept"
    );
}

#[test]
fn wait_for_a_first_accept_that_never_comes() {
    require_root();
    let recipe = &recipes()[0];
    let dir = Dir::new("noaccept");
    let port = free_port();
    dir.script("server", &httpd_script(port));
    let start = Instant::now();
    let (status, _, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(90));
    assert_eq!(status, Some(3), "{stderr}");
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert!(parse(&dir.read("first-accept.log")).is_empty());
    assert!(stop_server(port));
}

#[test]
fn fail_the_job_when_tests_connect_beyond_localhost() {
    require_root();
    let recipe = &recipes()[1];
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "[::1]:0", "2"]);
    let client = named_example("echo_client", &unique_name("t"));
    let local_only = format!("{} tcp [::1]:{port} 4 > /dev/null", client.display());

    let dir = Dir::new("localonly");
    dir.script("run-tests", &local_only);
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(0), "{stderr}");
    let lines = parse(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0].remote, format!("[::1]:{port}"));
    assert!(
        stderr.ends_with("sockwatch: assertions passed: no forbidden event\n"),
        "{stderr}"
    );

    // The tests connect to localhost, then beyond it (from a network namespace of
    // their own with no route: nothing leaves the machine), then would run on.
    let sleeper = unique_name("z");
    let dir = Dir::new("beyond");
    std::fs::copy("/usr/bin/sleep", dir.0.join(&sleeper)).unwrap();
    dir.script(
        "run-tests",
        &format!(
            "{local_only}\nunshare -n curl -s --max-time 5 http://192.0.2.10/\n./{sleeper} 60"
        ),
    );
    let start = Instant::now();
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    server.finish();
    assert_eq!(status, Some(4), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let lines = parse(&stdout);
    let keys = keys_local_hidden(&lines);
    assert_eq!(keys.len(), 2, "{stdout}");
    assert_eq!(
        keys[1],
        "curl CONNECT tcp LOCAL 192.0.2.10:80 result=ENETUNREACH latency=*"
    );
    assert!(
        stderr.contains("forbidden event seen: CONNECT by curl")
            && stderr.ends_with(
                "with 192.0.2.10:80 matched --forbid 'connect peer!=127.0.0.0/8 peer!=::1'\n"
            ),
        "{stderr}"
    );
    let left = Command::new("pgrep")
        .args(["-x", &sleeper])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the tests were not stopped");
}

#[test]
fn fail_the_job_when_tests_send_a_datagram_beyond_localhost() {
    require_root();
    let recipe = &recipes()[1];
    // A DNS-like query from a network namespace of the test's own, where
    // 192.0.2.0/24 is on its loopback: the datagram is sent, and never leaves it.
    let dir = Dir::new("udp");
    dir.script(
        "run-tests",
        "unshare -n sh -c 'ip link set lo up && ip addr add 192.0.2.1/24 dev lo && \
         python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b\\\"q\\\", (\\\"192.0.2.53\\\", 53))\"'\nsleep 60",
    );
    let start = Instant::now();
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(4), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let lines = parse(&stdout);
    let keys = keys_local_hidden(&lines);
    assert_eq!(
        keys,
        ["python3 SEND udp LOCAL 192.0.2.53:53 bytes=1"],
        "{stdout}"
    );
    assert!(
        stderr.contains("forbidden event seen: SEND by python3")
            && stderr.ends_with(
                "with 192.0.2.53:53 matched --forbid 'send proto=udp peer!=127.0.0.0/8 peer!=::1'\n"
            ),
        "{stderr}"
    );
}

#[test]
fn assert_that_an_app_reached_its_database() {
    require_root();
    let recipe = &recipes()[2];
    let dir = Dir::new("database");
    dir.script("app", "redis-cli -p 5432 ping");
    let mut db = start_redis("5432");
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    db.kill().unwrap();
    db.wait().unwrap();
    assert_eq!(status, Some(0), "{stderr}");
    let (reply, table) = stdout.split_once("PROCESS ").expect("a summary table");
    assert_eq!(reply, "PONG\n");
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["redis-cli", "127.0.0.1:5432", "1", "0", "0", "14", "7", "1"]
    );
    assert!(
        stderr.ends_with("sockwatch: assertions passed: 1 expectation met\n"),
        "{stderr}"
    );

    // The database is down: the app fails, and the job fails with 4.
    let (status, _, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(4), "{stderr}");
    assert!(
        stderr.ends_with(
            "sockwatch: expectation not met: no event matched --expect 'connect rport=5432 result=ok'\n"
        ),
        "{stderr}"
    );
}

#[test]
fn close_the_network_to_the_tests_but_localhost() {
    require_root();
    let recipe = &recipes()[3];
    let (server, port) = echo_server(&unique_name("s"), &["tcp", "[::1]:0", "2"]);
    let client = named_example("echo_client", &unique_name("t"));
    let local_only = format!("{} tcp [::1]:{port} 4 > /dev/null", client.display());

    let dir = Dir::new("closed-local");
    dir.script("run-tests", &local_only);
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(0), "{stderr}");
    assert!(parse(&stdout).is_empty(), "no DENY line: {stdout}");
    assert!(
        stderr.ends_with(", 0 calls denied; COMMAND exited with status 0\n"),
        "{stderr}"
    );

    // Beyond localhost: an address on the loopback of a network namespace of the
    // test's own, which would answer (ECONNREFUSED) if the connect went out.
    let dir = Dir::new("closed-beyond");
    dir.script(
        "run-tests",
        &format!(
            "{local_only}\nunshare -n sh -c 'ip link set lo up && ip addr add 192.0.2.1/24 dev lo && \
             python3 -c \"import socket, sys\ntry: socket.create_connection((\\\"192.0.2.10\\\", 80), timeout=5)\nexcept OSError as e: print(\\\"errno\\\", e.errno, file=sys.stderr); sys.exit(7)\"'"
        ),
    );
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    server.finish();
    assert_eq!(status, Some(7), "the tests' own status: {stderr}");
    assert!(stderr.contains("errno 1\n"), "{stderr}");
    let keys = keys_local_hidden(&parse(&stdout));
    assert_eq!(
        keys,
        ["python3 DENY tcp LOCAL 192.0.2.10:80 call=connect by=allow"],
        "{stdout}"
    );
    assert!(
        stderr.ends_with(", 1 call denied; COMMAND exited with status 7\n"),
        "{stderr}"
    );
}

#[test]
fn keep_the_tests_away_from_the_docker_socket() {
    require_root();
    let recipe = &recipes()[4];
    // A docker socket of the tests' own: /run is a tmpfs in a mount namespace of
    // theirs, where a stand-in daemon listens; the host's /run is untouched.
    let daemon = "unshare --mount sh -c 'mount -t tmpfs none /run; \
         socat UNIX-LISTEN:/run/docker.sock,fork /dev/null & a=$!; \
         socat UNIX-LISTEN:/run/other.sock,fork /dev/null & b=$!; sleep 0.5; \
         curl -s --max-time 5 --unix-socket /run/other.sock http://x/; \
         CLIENT http://x/v1.43/containers/json; kill $a $b'";
    let dir = Dir::new("docker-free");
    dir.script(
        "run-tests",
        &daemon.replace(
            "CLIENT",
            "curl -s --max-time 5 --unix-socket /run/other.sock",
        ),
    );
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(0), "{stderr}");
    // Other unix-domain connects (the C library's nscd lookups too) pass.
    let keys = keys_local_hidden(&parse(&stdout));
    let other = keys
        .iter()
        .filter(|k| k.contains(" /run/other.sock result=ok"))
        .count();
    assert!(
        other == 2 && !keys.iter().any(|k| k.contains("docker.sock")),
        "{stdout}"
    );

    // Through the /var/run link: a connected socket's peer is the path the daemon bound.
    let sleeper = unique_name("z");
    let dir = Dir::new("docker-used");
    std::fs::copy("/usr/bin/sleep", dir.0.join(&sleeper)).unwrap();
    dir.script(
        "run-tests",
        &format!(
            "{}\n./{sleeper} 60",
            daemon.replace(
                "CLIENT",
                "curl -s --max-time 5 --unix-socket /var/run/docker.sock"
            )
        ),
    );
    let start = Instant::now();
    let (status, stdout, stderr) = run_recipe(recipe, &dir.0, Duration::from_secs(60));
    assert_eq!(status, Some(4), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let keys = keys_local_hidden(&parse(&stdout));
    let last = keys.last().map_or("", String::as_str);
    assert!(
        // The peer's name only if socat was still there to ask when the line was printed.
        last.starts_with(
            "curl CONNECT unix/stream LOCAL /run/docker.sock result=ok latency=* peer_pid="
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("forbidden event seen: CONNECT by curl")
            && stderr.ends_with(
                "with /run/docker.sock matched --forbid 'connect path=/run/docker.sock'\n"
            ),
        "{stderr}"
    );
}
