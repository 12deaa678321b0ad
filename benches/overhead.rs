//! What sockwatch costs, measured side by side in one run: `cargo bench` as root
//! (scripts/bench installs redis, strace and bpftrace first).
//!
//! Each round runs every configuration once, interleaved, so that the machine's
//! noise hits them alike; the table shows the median and [min-max] of the rounds,
//! and each median as a ratio to the baseline's.
//!
//! - send+recv: one thread writes 64 bytes into a loopback TCP connection and
//!   reads them back from the other end, so it never sleeps: ns per pair of calls
//!   is their CPU cost. (A two-thread ping-pong measures wake-ups instead: on a
//!   small VM a busy tracer shortens them and looks faster than no tracer.)
//! - redis: redis-benchmark SET, 20 clients: redis-server's CPU time per request
//!   (all its threads, from schedstat), and the requests/s the client saw.
//! - redis on a unix socket: the same over `--unixsocket` and `redis-benchmark -s`,
//!   and bpftrace beside sockwatch, adding up unix-domain bytes on the same
//!   tracepoints for another name or for redis (strace, bpftrace: SIGINT after).
//! - 1-byte send+recv: the same loop with one byte, the cheapest call: traced with
//!   every line printed, and with `-c`, where the kernel adds sends and receives up
//!   and sends none; the ratio of `-c` to tracing another name is taken per round.
//! - filtered out: the send+recv loop traced by pid with `--port` set to a port it
//!   does not use, against tracing another name; the ratio of the two is taken in
//!   each round (the kernel drops the events before the buffer; the bar is 5%).
//! - per hook: with kernel.bpf_stats_enabled, the kernel's own count and run time
//!   of each sockwatch program during the send+recv loop, untraced and traced (the
//!   stats' clock reads are inside the figure: an upper bound).
//! - latency: from an event's timestamp to its line reaching a reader of the pipe.
//! - memory: sockwatch's peak RSS, and the kernel memory of its BPF maps.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use common::Trace;
use support::{median_spread, newest_program, with_bpf_stats};

const ROUNDS: usize = 5;
const PAIRS: usize = 200_000;
const REDIS_REQUESTS: &str = "100000";
const LATENCY_SAMPLES: usize = 100;

/// ns of CPU a process's threads have run (schedstat's first field).
fn cpu_ns(pid: u32) -> f64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("schedstat")).ok())
        .map(|s| s.split_whitespace().next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Peak resident memory, KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Kernel memory charged to the BPF maps a process holds (fdinfo `memlock:`).
fn map_memory(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|info| info.contains("map_type:"))
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .map(|v| v.trim().parse::<u64>().unwrap())
        })
        .sum()
}

#[derive(Clone, Copy, PartialEq)]
enum Config {
    Baseline,
    /// sockwatch runs with every event selected, tracing another name.
    Untraced,
    /// sockwatch traces the workload, its output into /dev/null.
    Traced,
    /// sockwatch traces the workload with a --port filter that matches none of it.
    FilteredOut,
    /// sockwatch traces every process with a --port that matches none of them.
    EveryFilteredOut,
    /// sockwatch traces the workload under the README's egress assertions, which
    /// the kernel matches on every event.
    Asserted,
    /// sockwatch traces the workload with -c: the kernel adds sends and receives up.
    Summarised,
    /// strace on the server, for comparison.
    Strace,
    /// bpftrace adding up the unix-domain bytes of another name, for comparison.
    BpftraceOther,
    /// bpftrace adding up the unix-domain bytes of the workload.
    BpftraceThis,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Baseline => "no tracer",
            Config::Untraced => "sockwatch, other process",
            Config::Traced => "sockwatch, this process",
            Config::FilteredOut => "sockwatch, this process, --port matching nothing",
            Config::EveryFilteredOut => "sockwatch, every process, --port matching nothing",
            Config::Asserted => "sockwatch, this process, two --forbid (the egress recipe)",
            Config::Summarised => "sockwatch -c, this process",
            Config::Strace => "strace -f (network,read,write)",
            Config::BpftraceOther => "bpftrace summing unix bytes, other process",
            Config::BpftraceThis => "bpftrace summing unix bytes, this process",
        }
    }

    /// Starts the tracer this configuration needs, for `target` (a pid).
    fn tracer(self, target: u32) -> Option<Trace> {
        let pid = target.to_string();
        match self {
            Config::Baseline | Config::Strace | Config::BpftraceOther | Config::BpftraceThis => {
                None
            }
            Config::Untraced => Some(Trace::start_with(&["no-such-process"], Stdio::null())),
            Config::Traced => Some(Trace::start_with(&["--pid", &pid], Stdio::null())),
            Config::Summarised => Some(Trace::start_with(&["-c", "--pid", &pid], Stdio::null())),
            // Port 1 (tcpmux): no socket of the benchmark uses it.
            Config::FilteredOut => Some(Trace::start_with(
                &["--pid", &pid, "--port", "1"],
                Stdio::null(),
            )),
            Config::EveryFilteredOut => Some(Trace::start_with(&["--port", "1"], Stdio::null())),
            Config::Asserted => Some(Trace::start_with(
                &[
                    "--pid",
                    &pid,
                    "--forbid",
                    "connect peer!=127.0.0.0/8 peer!=::1",
                    "--forbid",
                    "send proto=udp peer!=127.0.0.0/8 peer!=::1",
                ],
                Stdio::null(),
            )),
        }
    }
}

/// ns per send and receive of `size` bytes over TCP, in one thread that never blocks.
fn send_recv(size: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (b, _) = listener.accept().unwrap();
    a.set_nodelay(true).unwrap();
    pairs_over(a, b, size)
}

/// The same over a unix-domain socketpair.
fn send_recv_unix(size: usize) -> f64 {
    let (a, b) = UnixStream::pair().unwrap();
    pairs_over(a, b, size)
}

fn pairs_over(mut a: impl Write, mut b: impl Read, size: usize) -> f64 {
    let mut buf = vec![7u8; size];
    let start = Instant::now();
    for _ in 0..PAIRS {
        a.write_all(&buf).unwrap();
        b.read_exact(&mut buf).unwrap();
    }
    start.elapsed().as_nanos() as f64 / PAIRS as f64
}

/// The tool a comparison configuration runs beside the workload `target`, once attached.
fn comparison(config: Config, target: u32) -> Option<Child> {
    match config {
        Config::Strace => Some(strace_on(target)),
        Config::BpftraceOther => Some(bpftrace_unix_bytes("comm == \"no-such-process\"")),
        Config::BpftraceThis => Some(bpftrace_unix_bytes(&format!("pid == {target}"))),
        _ => None,
    }
}

fn stop_comparison(tool: Option<Child>) {
    if let Some(mut t) = tool {
        // SIGINT: bpftrace prints its maps and detaches; strace detaches.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(t.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        t.wait().unwrap();
    }
}

/// bpftrace on the 6.3 tracepoints sockwatch's tracepoint mode uses, adding up
/// the unix-domain bytes sent and received by the processes `filter` picks: what
/// `sockwatch -c` would say of them, without sockets, peers or events.
fn bpftrace_unix_bytes(filter: &str) -> Child {
    let script = format!(
        "tracepoint:sock:sock_send_length /{filter} && args->family == 1 && args->ret > 0/ \
         {{ @sent = sum(args->ret); }} \
         tracepoint:sock:sock_recv_length /{filter} && args->family == 1 && args->ret > 0/ \
         {{ @received = sum(args->ret); }}"
    );
    let mut child = Command::new("bpftrace")
        .args(["-e", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bpftrace (scripts/bench installs it)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.starts_with("Attaching") {
        line.clear();
    }
    assert!(line.starts_with("Attaching"), "bpftrace did not attach");
    // Its maps, printed at exit, go nowhere.
    thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

/// strace on a process, as quiet as it goes, once attached.
fn strace_on(pid: u32) -> Child {
    let child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=network,read,write",
            "-o",
            "/dev/null",
            "-p",
        ])
        .arg(pid.to_string())
        .spawn()
        .expect("strace (scripts/bench installs it)");
    thread::sleep(Duration::from_millis(500));
    child
}

struct Redis {
    server: Child,
    /// redis-benchmark's arguments for where the server listens.
    at: [String; 2],
    socket: Option<PathBuf>,
}

impl Redis {
    fn start() -> Redis {
        let port = common::free_port().to_string();
        let server = common::start_redis(&port);
        Redis {
            server,
            at: ["-p".into(), port],
            socket: None,
        }
    }

    /// On a unix-domain socket only.
    fn start_unix() -> Redis {
        let path =
            std::env::temp_dir().join(format!("sockwatch-bench-{}.sock", std::process::id()));
        let at = path.to_str().unwrap().to_string();
        let server = common::start_redis_on(&["--port", "0", "--unixsocket", &at]);
        Redis {
            server,
            at: ["-s".into(), at],
            socket: Some(path),
        }
    }

    /// requests/s for SET with 20 clients, and the server's CPU ns per request.
    fn benchmark(&self) -> (f64, f64) {
        let cpu = cpu_ns(self.server.id());
        let out = Command::new("redis-benchmark")
            .args(&self.at)
            .args(["-t", "set", "-n", REDIS_REQUESTS, "-c", "20", "--csv"])
            .output()
            .expect("redis-benchmark");
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("\"SET\""))
            .expect("a SET line");
        let rps = line
            .split(',')
            .nth(1)
            .unwrap()
            .trim_matches('"')
            .parse()
            .unwrap();
        let requests: f64 = REDIS_REQUESTS.parse().unwrap();
        (rps, (cpu_ns(self.server.id()) - cpu) / requests)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// ms from each CONNECT's timestamp to its line arriving through a pipe.
fn latencies() -> Vec<f64> {
    let me = std::process::id().to_string();
    let (reader_end, writer_end) = std::io::pipe().unwrap();
    let t = Trace::start_with(
        &["--json", "--events", "connect", "--pid", &me],
        writer_end.into(),
    );
    let out = BufReader::new(reader_end);
    let reader = thread::spawn(move || {
        let mut ms = Vec::new();
        for line in out.lines().take(LATENCY_SAMPLES) {
            let arrived = SystemTime::now();
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
            let at = SystemTime::UNIX_EPOCH
                + Duration::from_nanos(at.timestamp_nanos_opt().unwrap() as u64);
            ms.push(arrived.duration_since(at).unwrap_or_default().as_secs_f64() * 1e3);
        }
        ms
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..LATENCY_SAMPLES {
        drop(TcpStream::connect(addr).unwrap());
        drop(listener.accept().unwrap());
        thread::sleep(Duration::from_millis(20));
    }
    let ms = reader.join().unwrap();
    t.stop();
    ms
}

/// ns per run of each sockwatch program that ran during the send+recv loop.
fn hook_costs(config: Config) -> Vec<(String, u64, f64)> {
    let newest = newest_program();
    let tracer = config.tracer(std::process::id()).unwrap();
    let ours = with_bpf_stats(newest, || {
        send_recv(64);
    });
    tracer.stop();
    ours
}

fn main() {
    if !support::starting() {
        return;
    }
    let me = std::process::id();
    let ping_configs = [
        Config::Baseline,
        Config::Untraced,
        Config::Traced,
        Config::FilteredOut,
        Config::EveryFilteredOut,
        Config::Asserted,
    ];
    let flood_configs = [
        Config::Baseline,
        Config::Untraced,
        Config::Traced,
        Config::Summarised,
    ];
    let unix_configs = [
        Config::Baseline,
        Config::Untraced,
        Config::Traced,
        Config::Summarised,
        Config::EveryFilteredOut,
        Config::Strace,
        Config::BpftraceOther,
        Config::BpftraceThis,
    ];
    let redis_unix_configs = [
        Config::Baseline,
        Config::Untraced,
        Config::Traced,
        Config::Summarised,
        Config::Strace,
        Config::BpftraceOther,
        Config::BpftraceThis,
    ];
    let redis_configs = [
        Config::Baseline,
        Config::Untraced,
        Config::Traced,
        Config::Strace,
    ];
    let mut pairs: Vec<Vec<f64>> = vec![vec![]; ping_configs.len()];
    let mut flood: Vec<Vec<f64>> = vec![vec![]; flood_configs.len()];
    let mut unix: Vec<Vec<f64>> = vec![vec![]; unix_configs.len()];
    let mut per_event: Vec<f64> = vec![];
    let mut redis: Vec<Vec<f64>> = vec![vec![]; redis_configs.len()];
    let mut redis_cpu: Vec<Vec<f64>> = vec![vec![]; redis_configs.len()];
    let mut redis_unix: Vec<Vec<f64>> = vec![vec![]; redis_unix_configs.len()];
    let mut redis_unix_cpu: Vec<Vec<f64>> = vec![vec![]; redis_unix_configs.len()];
    let (mut rss_kib, mut maps_bytes) = (0, 0);

    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        for (i, c) in ping_configs.iter().enumerate() {
            let tracer = c.tracer(me);
            pairs[i].push(send_recv(64));
            if let Some(t) = tracer {
                t.stop();
            }
        }
        for (i, c) in flood_configs.iter().enumerate() {
            let tracer = c.tracer(me);
            flood[i].push(send_recv(1));
            if let Some(t) = tracer {
                t.stop();
            }
        }
        for (i, c) in unix_configs.iter().enumerate() {
            let tracer = c.tracer(me);
            let tool = comparison(*c, me);
            unix[i].push(send_recv_unix(1));
            if let Some(t) = tracer {
                t.stop();
            }
            stop_comparison(tool);
        }
        let server = Redis::start_unix();
        for (i, c) in redis_unix_configs.iter().enumerate() {
            let tracer = c.tracer(server.server.id());
            let tool = comparison(*c, server.server.id());
            let (rps, cpu) = server.benchmark();
            redis_unix[i].push(rps);
            redis_unix_cpu[i].push(cpu);
            if let Some(t) = tracer {
                t.stop();
            }
            stop_comparison(tool);
        }
        drop(server);
        let server = Redis::start();
        for (i, c) in redis_configs.iter().enumerate() {
            let tracer = c.tracer(server.server.id());
            let tool = comparison(*c, server.server.id());
            let tracer_cpu = tracer.as_ref().map(|t| cpu_ns(t.pid()));
            let (rps, cpu) = server.benchmark();
            redis[i].push(rps);
            redis_cpu[i].push(cpu);
            if let Some(t) = tracer {
                if *c == Config::Traced {
                    rss_kib = rss_kib.max(peak_rss_kib(t.pid()));
                    maps_bytes = map_memory(t.pid());
                    // SET: a RECV and a SEND per request on the server.
                    let events = 2.0 * REDIS_REQUESTS.parse::<f64>().unwrap();
                    thread::sleep(Duration::from_millis(300)); // let it drain
                    per_event.push((cpu_ns(t.pid()) - tracer_cpu.unwrap()) / events);
                }
                t.stop();
            }
            stop_comparison(tool);
        }
    }
    // Each round's filtered-out time over its other-process time, before sorting.
    let mut filter_ratio: Vec<f64> = pairs[3].iter().zip(&pairs[1]).map(|(f, u)| f / u).collect();
    // Every process traced, this one's sockets filtered out, over the same.
    let mut every_ratio: Vec<f64> = pairs[4].iter().zip(&pairs[1]).map(|(f, u)| f / u).collect();
    // Likewise -c's 1-byte flood over tracing another name.
    let mut summary_ratio: Vec<f64> = flood[3].iter().zip(&flood[1]).map(|(c, u)| c / u).collect();
    // The unix-domain flood, traced and not, over no tracer.
    let mut unix_other: Vec<f64> = unix[1].iter().zip(&unix[0]).map(|(u, b)| u / b).collect();
    // redis on a unix socket, another name traced, over no tracer: CPU per request.
    let mut redis_unix_other: Vec<f64> = redis_unix_cpu[1]
        .iter()
        .zip(&redis_unix_cpu[0])
        .map(|(u, b)| u / b)
        .collect();
    let untraced_hooks = hook_costs(Config::Untraced);
    let traced_hooks = hook_costs(Config::Traced);
    let mut lat = latencies();
    lat.sort_by(f64::total_cmp);

    println!();
    println!(
        "sockwatch overhead: {ROUNDS} rounds, median [min-max], ratio = median / baseline median"
    );
    println!();
    println!("| workload | configuration | median | spread | ratio |");
    println!("|---|---|---:|---:|---:|");
    let table = |title: &str, configs: &[Config], results: &mut [Vec<f64>], digits: usize| {
        let base = median_spread(&mut results[0]).0;
        for (c, r) in configs.iter().zip(results.iter_mut()) {
            let (m, lo, hi) = median_spread(r);
            println!(
                "| {title} | {} | {m:.digits$} | {lo:.digits$}-{hi:.digits$} | {:.2} |",
                c.name(),
                m / base
            );
        }
    };
    table(
        "64-byte send+recv, ns per pair",
        &ping_configs,
        &mut pairs,
        0,
    );
    table(
        "1-byte send+recv, ns per pair",
        &flood_configs,
        &mut flood,
        0,
    );
    table(
        "1-byte send+recv over a unix socketpair, ns per pair",
        &unix_configs,
        &mut unix,
        0,
    );
    table(
        "redis SET: server CPU ns per request",
        &redis_configs,
        &mut redis_cpu,
        0,
    );
    table("redis SET: requests/s", &redis_configs, &mut redis, 0);
    table(
        "redis SET on a unix socket: server CPU ns per request",
        &redis_unix_configs,
        &mut redis_unix_cpu,
        0,
    );
    table(
        "redis SET on a unix socket: requests/s",
        &redis_unix_configs,
        &mut redis_unix,
        0,
    );
    let (m, lo, hi) = median_spread(&mut filter_ratio);
    println!();
    println!(
        "--port matching nothing vs another process traced, send+recv, per round: median {m:.3} [{lo:.3}-{hi:.3}]"
    );
    let (m, lo, hi) = median_spread(&mut every_ratio);
    println!(
        "every process traced, --port matching nothing, vs another process traced, send+recv, per round: median {m:.3} [{lo:.3}-{hi:.3}]"
    );
    let (m, lo, hi) = median_spread(&mut summary_ratio);
    println!(
        "-c vs another process traced, 1-byte send+recv, per round: median {m:.3} [{lo:.3}-{hi:.3}]"
    );
    let (m, lo, hi) = median_spread(&mut unix_other);
    println!(
        "unix socketpair flood, another process traced vs no tracer, per round: median {m:.3} [{lo:.3}-{hi:.3}]"
    );
    let (m, lo, hi) = median_spread(&mut redis_unix_other);
    println!(
        "redis on a unix socket, server CPU per request, another process traced vs no tracer, per round: median {m:.3} [{lo:.3}-{hi:.3}]"
    );
    println!();
    println!("| hook, during the send+recv loop | runs | ns per run, other process traced | ns per run, this process traced |");
    println!("|---|---:|---:|---:|");
    for (name, runs, ns) in &untraced_hooks {
        let traced = traced_hooks
            .iter()
            .find(|h| &h.0 == name)
            .map_or(f64::NAN, |h| h.2);
        println!("| {name} | {runs} | {ns:.1} | {traced:.1} |");
    }
    let (m, lo, hi) = median_spread(&mut per_event);
    println!();
    println!(
        "sockwatch's own CPU per event printed (redis, text into /dev/null): median {m:.0} ns [{lo:.0}-{hi:.0}]"
    );
    println!(
        "event to line through a pipe ({} events, 20 ms apart): median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    println!(
        "memory while tracing redis: sockwatch peak RSS {:.1} MiB; BPF maps {:.1} MiB of kernel memory",
        rss_kib as f64 / 1024.0,
        maps_bytes as f64 / (1024.0 * 1024.0)
    );
}
