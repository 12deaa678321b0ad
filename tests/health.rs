//! TCP health on CLOSE: how each connection ended (FIN or reset, which side first,
//! or a timeout), its smoothed RTT and retransmits, checked against what the kernel
//! shows `ss -ti` for the same socket. Loss and silence come from nftables rules in
//! a network namespace each test makes (this machine has no netem).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;

/// A network namespace with only its loopback, up.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "swhealth{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        ns.run(&["ip", "netns", "add", &ns.name], false);
        // Ethernet-sized segments, so that a loss rule has packets to choose from.
        ns.run(&["ip", "link", "set", "lo", "mtu", "1500", "up"], true);
        ns
    }

    fn run(&self, args: &[&str], inside: bool) -> Output {
        let mut all = if inside {
            vec!["ip", "netns", "exec", &self.name]
        } else {
            vec![]
        };
        all.extend(args);
        let out = Command::new(all[0])
            .args(&all[1..])
            .output()
            .unwrap_or_else(|e| panic!("{all:?}: {e}"));
        assert!(
            out.status.success(),
            "{all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// An nftables input chain in the namespace with this one rule: packets lost on
    /// the way in (one dropped on its way out is a local error to TCP, not a loss).
    fn drop_rule(&self, rule: &str) {
        self.run(&["nft", "add table inet sw"], true);
        self.run(
            &[
                "nft",
                "add chain inet sw in { type filter hook input priority 0 ; }",
            ],
            true,
        );
        self.run(
            &["nft", &format!("add rule inet sw in {rule} counter drop")],
            true,
        );
    }

    /// tcp_ends under `name`, run in the namespace.
    fn spawn(&self, name: &str, args: &[&str]) -> Workload {
        let path = named_example("tcp_ends", name);
        let mut all = vec!["netns", "exec", &self.name, path.to_str().unwrap()];
        all.extend(args);
        Workload::spawn(Path::new("ip"), &all)
    }

    /// What `ss -ti` says of the connection from local port `port`: RTT (us) and
    /// retransmitted segments over its life.
    fn ss(&self, port: &str) -> (f64, u32) {
        let filter = format!("sport = :{port}");
        let out = self.run(&["ss", "-tinH", "state", "established", &filter], true);
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(|v| v.to_string())
        };
        let rtt_ms: f64 = field("rtt:")
            .unwrap_or_else(|| panic!("no rtt in {text:?}"))
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        // Shown only when there were some.
        let retrans =
            field("retrans:").map_or(0, |v| v.split('/').nth(1).unwrap().parse().unwrap());
        ((rtt_ms * 1000.0).round(), retrans)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A file the held client waits for.
fn release_file(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("sockwatch-health-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// tcp_ends' client of `port` in the namespace, held (`--hold-before` or
/// `--hold-after`) until the file returned exists.
fn held_client(
    ns: &Netns,
    name: &str,
    port: &str,
    bytes: &str,
    hold: &str,
    extra: &[&str],
) -> (Workload, PathBuf) {
    let go = release_file(name);
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["connect", &addr, bytes];
    args.extend(extra);
    args.extend([hold, go.to_str().unwrap()]);
    (ns.spawn(name, &args), go)
}

/// The one CLOSE of a process's connection (the one with a peer).
fn close_of<'a>(lines: &'a [Line], process: &str) -> &'a Line {
    let closes: Vec<&Line> = lines
        .iter()
        .filter(|l| l.process == process && l.event == "CLOSE" && l.remote != "*")
        .collect();
    assert_eq!(closes.len(), 1, "{lines:#?}");
    closes[0]
}

fn health(line: &Line) -> Health {
    line.health()
        .unwrap_or_else(|| panic!("no health on {line:?}"))
}

/// A server that resets (SO_LINGER 0, or bytes left unread) and a client that
/// learns of it: each side says who reset, in text and in JSON.
#[test]
fn a_reset_is_told_from_both_ends() {
    require_root();
    rerun_if_skipped(|| {
        for mode in ["linger0", "unread"] {
            let (srv, cli) = (unique_name("s"), unique_name("c"));
            let trace = Trace::start(&[&srv, &cli, "--json", "-e", "all"]);
            let server = Workload::spawn(
                &named_example("tcp_ends", &srv),
                &["listen", "127.0.0.1:0", mode, "1000"],
            );
            let addr = format!("127.0.0.1:{}", server.value());
            let client = Workload::spawn(
                &named_example("tcp_ends", &cli),
                &["connect", &addr, "1000"],
            );
            assert_eq!(client.finish(), ["read: connection reset"], "{mode}");
            server.finish();
            let out = trace.stop();
            assert!(out.status.success(), "{}", out.stderr);
            let events = json_lines(&out.stdout);
            let closes: Vec<&serde_json::Value> = events
                .iter()
                .filter(|v| v["event"] == "close" && !v["remote_port"].is_null())
                .collect();
            assert_eq!(closes.len(), 2, "{mode}: {}", out.stdout);
            // The client hears the reset, under its own name whatever ran on the CPU; the
            // server's goes with its close (CLOSE says so: the table let go of it first).
            let resets: Vec<(String, String)> = events
                .iter()
                .filter(|v| v["event"] == "reset")
                .map(|v| (v["process"].to_string(), v["direction"].to_string()))
                .collect();
            assert_eq!(
                resets,
                [(format!("{cli:?}"), "\"received\"".to_string())],
                "{mode}"
            );
            for c in closes {
                let (end, sent, received) = if c["process"] == srv.as_str() {
                    // "unread" never reads what came.
                    ("local-rst", 0, if mode == "unread" { 0 } else { 1000 })
                } else {
                    ("peer-rst", 1000, 0)
                };
                assert_eq!(c["end"], end, "{mode}: {c}");
                assert_eq!(
                    (c["sent"].as_u64(), c["received"].as_u64()),
                    (Some(sent), Some(received))
                );
                assert_eq!(c["retrans"], 0, "{mode}: {c}");
                let rtt = c["rtt_us"].as_u64().unwrap();
                assert!(rtt > 0 && rtt < 1_000_000, "{mode}: {c}");
            }
            assert!(out.stderr.contains(" 0 lost"), "{}", out.stderr);
        }
    });
}

/// A transfer through a lossy path (one segment in 20 dropped) retransmits, one
/// without loss does not; CLOSE's figures are those `ss -ti` showed just before.
#[test]
fn retransmits_and_rtt_match_ss() {
    require_root();
    for loss in [true, false] {
        let ns = Netns::new();
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&srv, &cli, "-e", "all"]);
        let bytes = "2000000";
        let server = ns.spawn(&srv, &["listen", "127.0.0.1:0", "read", bytes]);
        let port = server.value().to_string();
        if loss {
            ns.drop_rule(&format!("tcp dport {port} numgen inc mod 10 == 5"));
        }
        let (mut client, go) = held_client(&ns, &cli, &port, bytes, "--hold-after", &[]);
        let local_port = client.value().rsplit_once(':').unwrap().1.to_string();
        assert_eq!(client.next_line(), "holding");
        // Everything is acknowledged and answered: the counters stand still now.
        let (ss_rtt, ss_retrans) = ns.ss(&local_port);
        std::fs::write(&go, "").unwrap();
        client.finish();
        server.finish();
        let _ = std::fs::remove_file(&go);
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        let c = health(close_of(&lines, &cli));
        eprintln!("loss {loss}: CLOSE {c:?}; ss rtt {ss_rtt} us, retrans {ss_retrans}");
        assert_eq!(c.end, "local-fin");
        assert_eq!(c.retrans, ss_retrans, "loss {loss}");
        assert_eq!(c.rtt_us, ss_rtt, "loss {loss}");
        if loss {
            assert!(c.retrans > 0, "no retransmits under loss: {c:?}");
        } else {
            assert_eq!(c.retrans, 0);
        }
        let s = health(close_of(&lines, &srv));
        assert_eq!((s.end.as_str(), s.retrans), ("peer-fin", 0));
        // Every retransmit on its own line, under the owner: the segments add up to CLOSE's.
        let retransmits: Vec<&Line> = lines.iter().filter(|l| l.event == "RETRANS").collect();
        assert!(
            retransmits.iter().all(|l| l.process == cli),
            "{retransmits:#?}"
        );
        // A FIN lost after CLOSE is sent again then: DONE counts it.
        let client = close_of(&lines, &cli);
        assert_eq!(
            retransmits_add_up(&lines, &client.local, &client.remote),
            Ok(()),
            "loss {loss}"
        );
    }
}

/// The namespace's count of TCP segments retransmitted (TcpRetransSegs).
fn retrans_segs(ns: &Netns) -> u64 {
    let out = ns.run(&["cat", "/proc/net/snmp"], true);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp: "));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// A client that sends 2 MB over a lossy path (one segment in four on its way to
/// the server dropped) and closes at once: the kernel goes on retransmitting after
/// CLOSE. Those retransmits are RETRANS lines of the client, and a DONE line gives
/// its final count when the kernel is done; with the server's (a SYN-ACK sent
/// again when the handshake's last ACK was lost), they are what the namespace's
/// TcpRetransSegs counted.
#[test]
fn retransmits_after_close_are_counted_until_the_kernel_is_done() {
    require_root();
    rerun_if_skipped(|| {
        let ns = Netns::new();
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&srv, &cli, "-e", "close,retrans"]);
        let bytes = "2000000";
        let server = ns.spawn(&srv, &["listen", "127.0.0.1:0", "read", bytes]);
        let port = server.value().to_string();
        ns.drop_rule(&format!("tcp dport {port} numgen random mod 4 == 0"));
        let before = retrans_segs(&ns);
        let addr = format!("127.0.0.1:{port}");
        let client = ns.spawn(&cli, &["connect", &addr, bytes, "--close-at-once"]);
        let local = client.value().to_string();
        client.finish();
        server.finish();
        // The client's socket lives on in the kernel until its last segment is taken.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let ss = |state: &str| {
            let out = ns.run(&["ss", "-tanH", "state", state], true);
            String::from_utf8(out.stdout).unwrap()
        };
        // Both ends: the server's FIN may be sent again too.
        while ["fin-wait-1", "fin-wait-2", "last-ack", "closing"]
            .iter()
            .any(|s| ss(s).contains(&local) || ss(s).contains(&addr))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let counted = retrans_segs(&ns) - before;
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        let of = |event: &str, local: &str| -> Vec<&Line> {
            lines
                .iter()
                .filter(|l| l.event == event && l.local == local)
                .collect()
        };
        let number = |l: &Line, key: &str| -> u64 { detail(l, key).unwrap().parse().unwrap() };
        // Each side's final count: its DONE line's if it has one, else its CLOSE's.
        let mut total = 0;
        for (process, local) in [(&cli, local.as_str()), (&srv, addr.as_str())] {
            let close = health(close_of(&lines, process));
            let done = of("DONE", local);
            assert!(done.len() <= 1, "{}", out.stdout);
            let last = match done.first() {
                Some(d) => {
                    assert_eq!(&d.process, process);
                    let after = number(d, "after_close");
                    assert_eq!(number(d, "retrans"), u64::from(close.retrans) + after);
                    if process == &cli {
                        eprintln!(
                            "CLOSE retrans={} DONE retrans={} after_close={after}",
                            close.retrans,
                            number(d, "retrans")
                        );
                    }
                    number(d, "retrans")
                }
                None => u64::from(close.retrans),
            };
            if process == &cli {
                assert!(
                    done.first().is_some_and(|d| number(d, "after_close") > 0),
                    "{}",
                    out.stdout
                );
            }
            for l in of("RETRANS", local) {
                assert_eq!(&l.process, process, "{l:?}");
            }
            let remote = close_of(&lines, process).remote.clone();
            assert_eq!(
                retransmits_add_up(&lines, local, &remote),
                Ok(()),
                "{}",
                out.stdout
            );
            total += last;
        }
        assert_eq!(total, counted, "TcpRetransSegs:\n{}", out.stdout);
        assert!(out.stderr.contains(" 0 lost"), "{}", out.stderr);
    });
}

/// A SYN-ACK lost on its way: the server sends it again before the connection is
/// accepted. That retransmit is a RETRANS line of the listener's owner with the
/// connection's ends, and counts in the accepted socket's `retrans=`.
#[test]
fn a_lost_syn_ack_is_the_servers_retransmit() {
    require_root();
    rerun_if_skipped(|| {
        let ns = Netns::new();
        let (srv, cli) = (unique_name("s"), unique_name("c"));
        let trace = Trace::start(&[&srv, &cli, "-e", "close,retrans"]);
        let server = ns.spawn(&srv, &["listen", "127.0.0.1:0", "read", "1000"]);
        let port = server.value().to_string();
        // The first SYN-ACK (and every other one) is lost.
        ns.drop_rule(&format!(
            "tcp sport {port} tcp flags & (syn | ack) == syn | ack numgen inc mod 2 == 0"
        ));
        let addr = format!("127.0.0.1:{port}");
        let client = ns.spawn(&cli, &["connect", &addr, "1000"]);
        let client_addr = client.value().to_string();
        client.finish();
        server.finish();
        let out = trace.stop();
        assert!(out.status.success(), "{}", out.stderr);
        let lines = parse(&out.stdout);
        for (process, local, remote) in [(&srv, &addr, &client_addr), (&cli, &client_addr, &addr)] {
            let close = health(close_of(&lines, process));
            let segs: u32 = lines
                .iter()
                .filter(|l| l.event == "RETRANS" && &l.local == local && &l.remote == remote)
                .map(|l| {
                    assert_eq!(&l.process, process, "{l:?}");
                    detail(l, "segs").unwrap().parse::<u32>().unwrap()
                })
                .sum();
            assert_eq!(segs, close.retrans, "{process}:\n{}", out.stdout);
            if process == &srv {
                assert!(close.retrans > 0, "{}", out.stdout);
            }
        }
        assert!(out.stderr.contains(" 0 lost"), "{}", out.stderr);
    });
}

/// A peer that stops answering: the client's unacknowledged data times out
/// (TCP_USER_TIMEOUT), after retransmits.
#[test]
fn a_silent_peer_ends_in_a_timeout() {
    require_root();
    let ns = Netns::new();
    let (srv, cli) = (unique_name("s"), unique_name("c"));
    let trace = Trace::start(&[&srv, &cli]);
    let server = ns.spawn(&srv, &["listen", "127.0.0.1:0", "read", "100"]);
    let port = server.value().to_string();
    let extra = ["--user-timeout", "1000"];
    let (mut client, go) = held_client(&ns, &cli, &port, "100", "--hold-before", &extra);
    assert_eq!(client.next_line(), "holding");
    ns.drop_rule(&format!("tcp dport {port}"));
    std::fs::write(&go, "").unwrap();
    assert_eq!(client.finish(), ["read: timed out"]);
    server.finish();
    let _ = std::fs::remove_file(&go);
    let out = trace.stop();
    assert!(out.status.success(), "{}", out.stderr);
    let lines = parse(&out.stdout);
    let c = health(close_of(&lines, &cli));
    assert_eq!(c.end, "timeout", "{c:?}");
    assert!(c.retrans > 0, "{c:?}");
    // The server heard nothing, and closed first when its wait ran out.
    let s = health(close_of(&lines, &srv));
    assert_eq!((s.end.as_str(), s.retrans), ("local-fin", 0));
}

/// More connects in flight on sockets a full table turned away than their table
/// holds (4096): the ones it has no room for are counted, never dropped unsaid,
/// and each of the others still gets its CONNECT line.
#[test]
fn connects_in_flight_beyond_their_table_are_counted() {
    require_root();
    let ns = Netns::new();
    // Every SYN to port 9 is lost: the connects stay in flight.
    ns.drop_rule("tcp dport 9");
    let script = "import resource, socket, time\n\
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))\n\
        held = []\n\
        for _ in range(4200):\n    \
            s = socket.socket()\n    \
            s.setblocking(False)\n    \
            s.connect_ex(('127.0.0.1', 9))\n    \
            held.append(s)\n\
        time.sleep(1)\n\
        for s in held:\n    \
            s.close()\n";
    let trace = Trace::start(&[
        "--max-sockets",
        "1",
        "-e",
        "connect",
        "--no-header",
        "--",
        "ip",
        "netns",
        "exec",
        &ns.name,
        "python3",
        "-c",
        script,
    ]);
    let out = trace.wait(std::time::Duration::from_secs(120));
    let connects = parse(&format!("TIME \n{}", out.stdout))
        .iter()
        .filter(|l| l.event == "CONNECT" && l.remote == "127.0.0.1:9")
        .count() as u64;
    let closing = out.stderr.lines().last().unwrap_or("");
    let not_followed: u64 = closing
        .split(';')
        .next()
        .unwrap_or("")
        .split(", ")
        .find(|part| part.ends_with(" calls not followed"))
        .and_then(|part| part.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no calls not followed in {closing:?}"));
    // One in the socket table, 4096 in the table of connects in flight.
    assert_eq!(connects, 4097, "{closing}");
    assert_eq!(connects + not_followed, 4200, "{closing}");
    assert!(closing.contains(" sockets untracked"), "{closing}");
}
