//! What the tracepoint mode costs processes that exit holding sockets, at any
//! socket-table size: `cargo bench --bench exits` as root (scripts/bench).
//!
//! A fork-per-connection echo server (examples/echo_server --fork-each, each child
//! exits holding its connection, as socat and sshd do) serves one client that
//! connects, exchanges a byte and closes, again and again. Each round runs every
//! configuration once, interleaved:
//! - connections/s the client saw, untraced and with sockwatch tracing the server
//!   at the default --max-sockets and at 1M, as a ratio to no tracer;
//! - the worst stall of an unrelated process on the server's CPU: a SCHED_FIFO
//!   thread sleeping 200 us at a time, whose wake-up is late only while that CPU
//!   cannot be preempted (inside a BPF program, or an interrupt);
//! - the kernel's own bpf_stats for the exit hook: ns per run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use common::{named_example, unique_name, Trace, Workload};
use support::{median_spread, newest_program, with_bpf_stats};

const ROUNDS: usize = 7;
const CONNECTIONS: usize = 2000;
/// The CPU the server, its children and the stall probe share.
const CPU: usize = 0;

#[derive(Clone, Copy)]
enum Config {
    Baseline,
    /// sockwatch tracing a name nothing has: the mode's cost to every process.
    OtherName,
    Traced(Option<&'static str>),
}

impl Config {
    fn name(self) -> String {
        match self {
            Config::Baseline => "no tracer".into(),
            Config::OtherName => "sockwatch tracing another name".into(),
            Config::Traced(None) => "sockwatch NAME (65536 sockets)".into(),
            Config::Traced(Some(n)) => format!("sockwatch --max-sockets {n} NAME"),
        }
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call only reads it.
    unsafe {
        let mut set: nix::libc::cpu_set_t = std::mem::zeroed();
        nix::libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            nix::libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
            0
        );
    }
}

/// A real-time thread on `CPU` that sleeps 200 us at a time until `stop`; returns
/// its worst lateness in microseconds.
fn stall_probe(stop: Arc<AtomicBool>) -> thread::JoinHandle<f64> {
    thread::spawn(move || {
        pin_to(CPU);
        let param = nix::libc::sched_param { sched_priority: 50 };
        // SAFETY: sets this thread's own policy from a valid parameter.
        let rc = unsafe {
            nix::libc::pthread_setschedparam(
                nix::libc::pthread_self(),
                nix::libc::SCHED_FIFO,
                &param,
            )
        };
        assert_eq!(rc, 0, "SCHED_FIFO needs root");
        let period = Duration::from_micros(200);
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            thread::sleep(period);
            worst = worst.max(start.elapsed().saturating_sub(period));
        }
        worst.as_secs_f64() * 1e6
    })
}

/// Connections/s a sequential client gets from a fork-per-connection server.
fn serve(name: &str) -> f64 {
    let path = named_example("echo_server", name);
    let count = CONNECTIONS.to_string();
    let server = Workload::spawn(
        std::path::Path::new("taskset"),
        &[
            "-c",
            &CPU.to_string(),
            path.to_str().unwrap(),
            "tcp",
            "127.0.0.1:0",
            &count,
            "--fork-each",
        ],
    );
    let addr = format!("127.0.0.1:{}", server.value());
    let start = Instant::now();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"x").unwrap();
        s.read_exact(&mut [0u8; 1]).unwrap();
    }
    let rate = CONNECTIONS as f64 / start.elapsed().as_secs_f64();
    server.finish();
    rate
}

fn main() {
    if !support::starting() {
        return;
    }
    let configs = [
        Config::Baseline,
        Config::OtherName,
        Config::Traced(None),
        Config::Traced(Some("1048576")),
    ];
    let mut rates: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    let mut stalls: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    let mut exit_ns: Vec<Vec<f64>> = vec![vec![]; configs.len()];
    let mut hooks = Vec::new();
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        for (i, c) in configs.iter().enumerate() {
            let name = unique_name("fk");
            let newest = newest_program();
            let tracer = match c {
                Config::Baseline => None,
                Config::OtherName => Some(Trace::start_with(
                    &["--probe", "tracepoint", "no-such-name"],
                    Stdio::null(),
                )),
                Config::Traced(size) => {
                    let mut args = vec!["--probe", "tracepoint"];
                    if let Some(n) = size {
                        args.extend(["--max-sockets", n]);
                    }
                    args.push(&name);
                    Some(Trace::start_with(&args, Stdio::null()))
                }
            };
            let stop = Arc::new(AtomicBool::new(false));
            let probe = stall_probe(stop.clone());
            let mut rate = 0.0;
            let stats = with_bpf_stats(newest, || rate = serve(&name));
            stop.store(true, Ordering::Relaxed);
            rates[i].push(rate);
            stalls[i].push(probe.join().unwrap());
            match (tracer, c) {
                (Some(t), Config::Traced(_)) => {
                    let exit = stats.iter().find(|s| s.0.starts_with("tp_exit"));
                    let (_, runs, ns) = exit.expect("the exit hook ran");
                    assert!(*runs as usize >= CONNECTIONS, "{runs} exits");
                    exit_ns[i].push(*ns);
                    hooks = stats;
                    t.stop();
                }
                (Some(t), _) => {
                    t.stop();
                }
                (None, _) => {}
            }
        }
    }
    println!();
    println!("fork-per-connection server, {CONNECTIONS} connections a round, {ROUNDS} rounds: median [min-max]");
    println!();
    println!("| configuration | connections/s | ratio | worst stall on its CPU, us | exit hook, ns per run |");
    println!("|---|---:|---:|---:|---:|");
    let base = median_spread(&mut rates[0].clone()).0;
    for (i, c) in configs.iter().enumerate() {
        let (r, rlo, rhi) = median_spread(&mut rates[i]);
        let (s, slo, shi) = median_spread(&mut stalls[i]);
        let exit = if exit_ns[i].is_empty() {
            "-".to_string()
        } else {
            let (e, elo, ehi) = median_spread(&mut exit_ns[i]);
            format!("{e:.0} [{elo:.0}-{ehi:.0}]")
        };
        println!(
            "| {} | {r:.0} [{rlo:.0}-{rhi:.0}] | {:.2} | {s:.0} [{slo:.0}-{shi:.0}] | {exit} |",
            c.name(),
            r / base
        );
    }
    println!();
    println!("each hook in the last round at --max-sockets 1048576:");
    println!();
    println!("| hook | runs per connection | ns per run | ns per connection |");
    println!("|---|---:|---:|---:|");
    hooks.sort_by(|a, b| (b.1 as f64 * b.2).total_cmp(&(a.1 as f64 * a.2)));
    for (name, runs, ns) in hooks {
        let per = runs as f64 / CONNECTIONS as f64;
        println!("| {name} | {per:.2} | {ns:.0} | {:.0} |", per * ns);
    }
}
