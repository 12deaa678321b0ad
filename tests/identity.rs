//! Who each process is: its uid, parent and cgroup, with the container or systemd
//! unit the cgroup names, on every event in JSON and in -W's columns. The cgroups
//! are the test's own, under docker-like and systemd-like names.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const CONTAINER: &str = "5e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f70819203f4e5a6b7";

/// Cgroup directories made for a test, removed (deepest first) when it ends.
struct Cgroups(Vec<PathBuf>);

impl Cgroups {
    fn make(&mut self, dir: PathBuf) -> PathBuf {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        self.0.push(dir.clone());
        dir
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A cgroup's path as the kernel names it: under the cgroup2 mount.
fn cgroup_path(dir: &Path) -> String {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let top = own_cgroup_dir();
    let below = dir.strip_prefix(&top).unwrap();
    Path::new(own).join(below).to_str().unwrap().to_string()
}

/// Runs `program ARGS` in cgroup `dir`, as `uid` (setpriv), its parent this process.
fn spawn_in(dir: &Path, uid: u32, program: &Path, args: &[&str]) -> Workload {
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec setpriv --reuid={uid} --regid={uid} --clear-groups \"$0\" \"$@\"",
        dir.display()
    );
    let mut all = vec!["-c", &script, program.to_str().unwrap()];
    all.extend(args);
    Workload::spawn(Path::new("sh"), &all)
}

#[test]
fn json_and_wide_say_who_each_process_is() {
    require_root();
    let mut cgroups = Cgroups(Vec::new());
    let top = cgroups.make(own_cgroup_dir().join(format!("sw{}.slice", std::process::id())));
    let service = cgroups.make(top.join("sw-web.service"));
    let container = cgroups.make(top.join(format!("docker-{CONTAINER}.scope")));
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let json = Trace::start(&[&srv, &cli, "--json"]);
    let wide = Trace::start(&[&srv, &cli, "-W"]);

    let server = spawn_in(
        &service,
        0,
        &named_example("echo_server", &srv),
        &["tcp", "127.0.0.1:0", "1"],
    );
    let addr = format!("127.0.0.1:{}", server.value());
    let client = spawn_in(
        &container,
        65534,
        &named_example("echo_client", &cli),
        &["tcp", &addr, "10"],
    );
    client.finish();
    server.finish();
    let me = std::process::id();

    let out = json.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let events = json_lines(&out.stdout);
    // EXEC LISTEN ACCEPT RECV SEND RECV(eof) CLOSE CLOSE EXIT; EXEC CONNECT SEND RECV CLOSE EXIT
    assert_eq!(events.len(), 15, "{}", out.stdout);
    for e in &events {
        let (uid, cgroup) = if e["process"] == srv.as_str() {
            (0, &service)
        } else {
            (65534, &container)
        };
        assert_eq!(e["uid"], uid, "{e}");
        assert_eq!(e["ppid"], me, "{e}");
        assert_eq!(e["cgroup"], cgroup_path(cgroup), "{e}");
        if uid == 0 {
            assert_eq!(e["unit"], "sw-web.service", "{e}");
            assert!(e.get("container_id").is_none(), "{e}");
        } else {
            assert_eq!(e["container_id"], CONTAINER, "{e}");
            assert_eq!(e["container_runtime"], "docker", "{e}");
            assert!(e.get("unit").is_none(), "{e}");
        }
    }

    let out = wide.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header[..7],
        ["TIME", "PID", "PPID", "UID", "CGROUP", "PROCESS", "EVENT"]
    );
    let mut seen = 0;
    for line in lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (uid, cgroup) = if f[5] == srv {
            ("0", "sw-web.service".to_string())
        } else {
            ("65534", format!("docker:{}", &CONTAINER[..12]))
        };
        assert_eq!(
            [f[2], f[3], f[4]],
            [me.to_string().as_str(), uid, cgroup.as_str()],
            "{line}"
        );
        seen += 1;
    }
    assert_eq!(seen, 15, "{}", out.stdout);
}

/// The summary keeps the rows of one name apart by who ran it when asked who
/// (-W, --json), with the kernel adding up sends and receives per row (-c), and
/// merges them otherwise.
#[test]
fn summary_rows_say_who() {
    require_root();
    let mut cgroups = Cgroups(Vec::new());
    let top = cgroups.make(own_cgroup_dir().join(format!("sw{}c.slice", std::process::id())));
    let service = cgroups.make(top.join("sw-web.service"));
    let container = cgroups.make(top.join(format!("docker-{CONTAINER}.scope")));
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let wide = Trace::start(&[&srv, &cli, "-c", "-W"]);
    let json = Trace::start(&[&srv, &cli, "-c", "--json"]);
    let merged = Trace::start(&[&srv, &cli, "-c"]);

    let server = spawn_in(
        &service,
        0,
        &named_example("echo_server", &srv),
        &["tcp", "127.0.0.1:0", "2"],
    );
    let addr = format!("127.0.0.1:{}", server.value());
    // The same name twice: as root in the service, 10+20 bytes; as nobody in the
    // "container", 300 bytes.
    let example = named_example("echo_client", &cli);
    spawn_in(&service, 0, &example, &["tcp", &addr, "10", "20"]).finish();
    spawn_in(&container, 65534, &example, &["tcp", &addr, "300"]).finish();
    server.finish();

    let out = wide.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let docker = format!("docker:{}", &CONTAINER[..12]);
    let expected = format!(
        "PROCESS UID CGROUP REMOTE CONN-OK CONN-FAIL ACCEPTS SENT RECEIVED CLOSED
         {cli} 0 sw-web.service {addr} 1 0 0 30 30 1
         {cli} 65534 {docker} {addr} 1 0 0 300 300 1
         {srv} 0 sw-web.service * 0 0 0 0 0 1
         {srv} 0 sw-web.service 127.0.0.1:* 0 0 2 330 330 2"
    );
    assert_eq!(words(&out.stdout), words(&expected), "{}", out.stdout);

    let out = json.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let rows = json_lines(&out.stdout);
    let client_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["process"] == cli.as_str())
        .collect();
    assert_eq!(client_rows.len(), 2, "{}", out.stdout);
    let (root, nobody) = (client_rows[0], client_rows[1]);
    assert_eq!(
        (&root["uid"], &root["cgroup"], &root["unit"], &root["sent"]),
        (
            &0.into(),
            &cgroup_path(&service).into(),
            &"sw-web.service".into(),
            &30.into()
        ),
        "{root}"
    );
    assert_eq!(
        (
            &nobody["uid"],
            &nobody["cgroup"],
            &nobody["container_id"],
            &nobody["received"]
        ),
        (
            &65534.into(),
            &cgroup_path(&container).into(),
            &CONTAINER.into(),
            &300.into()
        ),
        "{nobody}"
    );

    // Not asked who: one row per name and remote end, as ever.
    let out = merged.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let expected = format!(
        "{cli} {addr} 2 0 0 330 330 2
         {srv} * 0 0 0 0 0 1
         {srv} 127.0.0.1:* 0 0 2 330 330 2"
    );
    assert_eq!(words(&out.stdout)[1..], words(&expected), "{}", out.stdout);
}

/// Each line's whitespace-separated words.
fn words(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}
