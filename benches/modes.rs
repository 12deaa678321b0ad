//! What each attach mode costs processes sockwatch does not trace: an untraced
//! getppid() loop alone and while sockwatch traces another name, interleaved over
//! rounds; the table shows medians, [min-max] and ratios to no tracer.
//!
//! The tracepoint mode runs here on the host. fentry and kprobe need a kernel that
//! has them: all modes also run inside qemu on Debian's 6.12 (software emulation,
//! so absolute times are slow; the ratios are what compare). There, too, a busy
//! send+recv loop traced with a --port that matches nothing is set against
//! tracing another name, in the fentry and kprobe modes; an untraced unix
//! socketpair loop, and redis-server on a unix socket under redis-benchmark -s,
//! in every mode.
//! `cargo bench --bench modes` as root (scripts/bench).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use common::Trace;
use support::{examples, median_spread, run_in_vm};

const ROUNDS: usize = 7;
const HOST_CALLS: &str = "5000000";
const VM_CALLS: &str = "300000";
const VM_PAIRS: &str = "30000";
const VM_REDIS_REQUESTS: &str = "30000";
const CONFIGS: [&str; 4] = ["none", "fentry", "kprobe", "tracepoint"];
/// The unix socketpair loop's: also fentry and kprobe with `--proto tcp --proto udp`.
const UNIX_CONFIGS: [&str; 6] = [
    "none",
    "fentry",
    "kprobe",
    "tracepoint",
    "fentry-ip",
    "kprobe-ip",
];

fn getppid_ns() -> f64 {
    let out = Command::new(examples().join("getppid_loop"))
        .arg(HOST_CALLS)
        .output()
        .expect("build the examples first: cargo build --release --examples");
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .strip_prefix("ns_per_call ")
        .unwrap()
        .parse()
        .unwrap()
}

fn print_rows(place: &str, results: &mut BTreeMap<&str, Vec<f64>>) {
    let base = median_spread(results.get_mut("none").unwrap()).0;
    for config in CONFIGS {
        let Some(r) = results.get_mut(config) else {
            continue;
        };
        let (m, lo, hi) = median_spread(r);
        let name = if config == "none" {
            "no tracer"
        } else {
            config
        };
        println!(
            "| {place} | {name} | {m:.1} | {lo:.1}-{hi:.1} | {:.3} |",
            m / base
        );
    }
}

fn main() {
    if !support::starting() {
        return;
    }

    // Host: this machine's kernel runs the tracepoint mode only.
    let mut host: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 0..ROUNDS {
        eprintln!("host round {}/{ROUNDS}", round + 1);
        for config in ["none", "tracepoint"] {
            let tracer = (config != "none")
                .then(|| Trace::start_with(&["--probe", config, "no-such-process"], Stdio::null()));
            host.entry(config).or_default().push(getppid_ns());
            if let Some(t) = tracer {
                t.stop();
            }
        }
    }

    // VM: every mode on Debian's 6.12.
    eprintln!("qemu on Debian's 6.12: {ROUNDS} rounds");
    let bench = std::env::temp_dir().join(format!("sockwatch-bench-{}.sh", std::process::id()));
    std::fs::write(
        &bench,
        format!(
            "ROUNDS={ROUNDS}\nCALLS={VM_CALLS}\nPAIRS={VM_PAIRS}\nREQUESTS={VM_REDIS_REQUESTS}\n{}{}",
            include_str!("../tests/vm/tracer.sh"),
            include_str!("../tests/vm/bench.sh")
        ),
    )
    .unwrap();
    let example = |name: &str| examples().join(name).display().to_string();
    let (console, release) = run_in_vm(
        "6.12",
        &bench,
        &[
            example("getppid_loop"),
            example("send_recv_loop"),
            "/usr/bin/redis-server".into(),
            "/usr/bin/redis-benchmark".into(),
        ],
    );
    std::fs::remove_file(&bench).unwrap();
    let mut vm: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // mode:who -> ns per send+recv pair, by round
    let mut flood: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // config -> ns per send+recv pair over a unix socketpair, untraced, by round
    let mut unix: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // config -> (server CPU ns per request, requests/s) of redis on a unix socket, by round
    let mut redis: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for line in console.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[..] {
            ["bench", _, config, ns] => {
                let config = CONFIGS.into_iter().find(|c| *c == config).unwrap();
                vm.entry(config).or_default().push(ns.parse().unwrap());
            }
            ["flood", _, config, ns] => flood
                .entry(config.to_string())
                .or_default()
                .push(ns.parse().unwrap()),
            ["unixflood", _, config, ns] => {
                let config = UNIX_CONFIGS.into_iter().find(|c| *c == config).unwrap();
                unix.entry(config).or_default().push(ns.parse().unwrap());
            }
            ["redisunix", _, config, ns, rps] => {
                let config = CONFIGS.into_iter().find(|c| *c == config).unwrap();
                let (ns, rps) = (ns.parse().unwrap(), rps.parse().unwrap());
                redis.entry(config).or_default().push((ns, rps));
            }
            _ => {}
        }
    }
    assert!(
        CONFIGS
            .iter()
            .all(|c| vm.get(c).is_some_and(|v| v.len() == ROUNDS)),
        "the VM benchmark did not finish:\n{console}"
    );

    println!();
    println!(
        "An untraced process's getppid(): ns per call while sockwatch traces another name; \
         {ROUNDS} interleaved rounds, median [min-max], ratio = median / no-tracer median"
    );
    println!();
    println!("| kernel | sockwatch mode | ns per call | spread | ratio |");
    println!("|---|---|---:|---:|---:|");
    let host_kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    print_rows(&format!("host {host_kernel}"), &mut host);
    print_rows(&format!("qemu {release}"), &mut vm);

    println!();
    println!(
        "A send+recv loop (64 bytes, one thread) traced with --port matching none of its \
         sockets, against sockwatch tracing another name; qemu {release}, {ROUNDS} rounds, \
         the ratio taken in each round: median [min-max]"
    );
    println!();
    println!("| mode | other name, ns per pair | --port matching nothing | ratio per round |");
    println!("|---|---:|---:|---:|");
    for mode in ["fentry", "kprobe"] {
        let get = |who: &str| {
            flood
                .get(&format!("{mode}:{who}"))
                .cloned()
                .unwrap_or_default()
        };
        let (mut other, mut filtered) = (get("other"), get("filtered"));
        assert!(
            other.len() == ROUNDS && filtered.len() == ROUNDS,
            "the VM flood benchmark did not finish:\n{console}"
        );
        let mut ratio: Vec<f64> = filtered.iter().zip(&other).map(|(f, o)| f / o).collect();
        let (o, olo, ohi) = median_spread(&mut other);
        let (f, flo, fhi) = median_spread(&mut filtered);
        let (r, rlo, rhi) = median_spread(&mut ratio);
        println!(
            "| {mode} | {o:.0} [{olo:.0}-{ohi:.0}] | {f:.0} [{flo:.0}-{fhi:.0}] | {r:.3} [{rlo:.3}-{rhi:.3}] |"
        );
    }

    assert!(
        UNIX_CONFIGS
            .iter()
            .all(|c| unix.get(c).is_some_and(|v| v.len() == ROUNDS)),
        "the VM unix-socket benchmark did not finish:\n{console}"
    );
    // Each mode's time over the no-tracer time of the same round.
    let none = unix["none"].clone();
    println!();
    println!(
        "An untraced process's send+recv loop over a unix socketpair (64 bytes, one thread) \
         while sockwatch traces another name; qemu {release}, {ROUNDS} interleaved rounds, \
         median [min-max]; the ratio to no tracer taken in each round; -ip: with \
         --proto tcp --proto udp"
    );
    println!();
    println!("| sockwatch mode | ns per pair | spread | ratio per round |");
    println!("|---|---:|---:|---:|");
    for config in UNIX_CONFIGS {
        let mut times = unix[config].clone();
        let mut ratio: Vec<f64> = times.iter().zip(&none).map(|(t, n)| t / n).collect();
        let (m, lo, hi) = median_spread(&mut times);
        let (r, rlo, rhi) = median_spread(&mut ratio);
        println!("| {config} | {m:.0} | {lo:.0}-{hi:.0} | {r:.3} [{rlo:.3}-{rhi:.3}] |");
    }

    assert!(
        CONFIGS
            .iter()
            .all(|c| redis.get(c).is_some_and(|v| v.len() == ROUNDS)),
        "the VM redis benchmark did not finish:\n{console}"
    );
    let none: Vec<f64> = redis["none"].iter().map(|r| r.0).collect();
    println!();
    println!(
        "redis-server on a unix socket, not traced, under redis-benchmark -s (SET, 10 clients, \
         {VM_REDIS_REQUESTS} requests) while sockwatch traces another name; qemu {release}, \
         {ROUNDS} interleaved rounds, median [min-max]; the server's CPU ratio to no tracer \
         taken in each round"
    );
    println!();
    println!("| sockwatch mode | server CPU ns per request | ratio per round | requests/s |");
    println!("|---|---:|---:|---:|");
    for config in CONFIGS {
        let mut cpu: Vec<f64> = redis[config].iter().map(|r| r.0).collect();
        let mut rps: Vec<f64> = redis[config].iter().map(|r| r.1).collect();
        let mut ratio: Vec<f64> = cpu.iter().zip(&none).map(|(c, n)| c / n).collect();
        let (c, clo, chi) = median_spread(&mut cpu);
        let (r, rlo, rhi) = median_spread(&mut ratio);
        let (q, qlo, qhi) = median_spread(&mut rps);
        println!(
            "| {config} | {c:.0} [{clo:.0}-{chi:.0}] | {r:.3} [{rlo:.3}-{rhi:.3}] | {q:.0} [{qlo:.0}-{qhi:.0}] |"
        );
    }
}
