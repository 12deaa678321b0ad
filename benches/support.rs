//! Helpers the benchmarks share: statistics and the kernel's per-program stats.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What every benchmark checks first: `cargo test --benches` only lists it (nothing
/// to run), and the rest needs root. Returns false when it is only listing.
pub fn starting() -> bool {
    if std::env::args().any(|a| a == "--list") {
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "run the benchmark as root"
    );
    // Left on (by hand, or by a benchmark that was stopped mid-way), the kernel's
    // per-program clock reads would be in every figure; with_bpf_stats turns it on.
    if std::fs::read_to_string(STATS).is_ok_and(|v| v.trim() != "0") {
        eprintln!("kernel.bpf_stats_enabled was on: turned off for the timings");
        std::fs::write(STATS, "0").unwrap();
    }
    true
}

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Sorts `v` and returns its median, minimum and maximum.
pub fn median_spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// The BPF programs loaded on the system: (id, name, runs, total ns), via bpftool.
pub fn programs() -> Vec<(u64, String, u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .expect("bpftool (scripts/bench installs it)");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.iter()
        .map(|p| {
            let n = |k: &str| p[k].as_u64().unwrap_or(0);
            (
                n("id"),
                p["name"].as_str().unwrap_or("").to_string(),
                n("run_cnt"),
                n("run_time_ns"),
            )
        })
        .collect()
}

/// Runs `work` with kernel.bpf_stats_enabled on; returns each program newer than
/// `newest_before` that ran: (name, runs, ns per run).
pub fn with_bpf_stats(newest_before: u64, work: impl FnOnce()) -> Vec<(String, u64, f64)> {
    std::fs::write(STATS, "1").unwrap();
    work();
    std::fs::write(STATS, "0").unwrap();
    programs()
        .into_iter()
        .filter(|p| p.0 > newest_before && p.2 > 0)
        .map(|(_, name, runs, ns)| (name, runs, ns as f64 / runs as f64))
        .collect()
}

/// The newest BPF program id now: programs loaded later have larger ids.
pub fn newest_program() -> u64 {
    programs().iter().map(|p| p.0).max().unwrap_or(0)
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the examples, beside the sockwatch it built.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_sockwatch"))
        .parent()
        .unwrap()
        .join("examples")
}

/// What scripts/NAME prints, trimmed.
pub fn script(name: &str, args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts").join(name))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/{name} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Boots Debian's `kernel` (a version scripts/vm-kernel knows) under qemu with the
/// static sockwatch and `files` in /w, and runs `scenario` there: returns what the
/// console printed and the kernel's release.
pub fn run_in_vm(kernel: &str, scenario: &Path, files: &[String]) -> (String, String) {
    let out = Command::new(repo().join("tests/vm/run"))
        .env("VM_TIMEOUT", "1500")
        .arg(script("vm-kernel", &[kernel]))
        .arg(scenario)
        .arg(script("build-static", &[]))
        .args(files)
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let release = console
        .lines()
        .find_map(|l| Some(&l[l.find("=== scenario start ")? + 19..]))
        .unwrap_or("?")
        .to_string();
    (console, release)
}
