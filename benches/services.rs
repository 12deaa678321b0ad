//! What busy unix-domain services pay while sockwatch traces another name:
//! dbus-daemon answering method calls over one connection (examples/dbus_calls),
//! and rsyslogd taking syslog datagrams from logger; each service's CPU per call
//! or message, not traced. tests/vm/services.sh runs the rounds: here in the
//! tracepoint mode, and inside qemu on Debian's 6.12 in every mode, each also with
//! `--proto tcp --proto udp` (no unix-domain hook).
//! `cargo bench --bench services` as root (scripts/bench installs dbus-daemon,
//! rsyslog and qemu first).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)]
mod support;

use support::{examples, median_spread, run_in_vm};

const ROUNDS: usize = 9;
const HOST: Run = Run {
    place: "host",
    calls: 20000,
    messages: 50000,
    configs: "none tracepoint tracepoint-ip",
};
const VM: Run = Run {
    place: "vm",
    calls: 8000,
    messages: 40000,
    configs: "none fentry kprobe tracepoint fentry-ip kprobe-ip",
};
const SERVICES: [(&str, &str); 2] = [
    ("dbus", "dbus-daemon, CPU ns per method call"),
    ("rsyslog", "rsyslogd, CPU ns per datagram"),
];
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/rsyslog";

/// One place's rounds: how much each takes, and the configurations.
struct Run {
    place: &'static str,
    calls: u32,
    messages: u32,
    configs: &'static str,
}

impl Run {
    /// The script: `prelude`, the rounds' settings and `place`'s (NAME, value)
    /// pairs, the bus's configuration, then tests/vm/services.sh.
    fn script(&self, prelude: &str, place: &[(&str, &str)]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "sockwatch-services-{}-{}.sh",
            std::process::id(),
            self.place
        ));
        let settings: String = place.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(
            &path,
            format!(
                "{prelude}\nROUNDS={ROUNDS}\nCALLS={}\nMESSAGES={}\nCONFIGS='{}'\n{settings}\
                 mkdir -p $DIR\ncat > \"$DIR/bus.conf\" <<EOF\n{}\nEOF\n{}{}",
                self.calls,
                self.messages,
                self.configs,
                common::bus_config("$DIR/bus"),
                include_str!("../tests/vm/tracer.sh"),
                include_str!("../tests/vm/services.sh")
            ),
        )
        .unwrap();
        path
    }
}

/// (service, config) -> ns per call or message, by round, from `service` lines.
fn parse(output: &str) -> BTreeMap<(String, String), Vec<f64>> {
    let mut results: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for line in output.lines() {
        if let ["service", _, service, config, ns] = line.split_whitespace().collect::<Vec<_>>()[..]
        {
            results
                .entry((service.to_string(), config.to_string()))
                .or_default()
                .push(ns.parse().unwrap());
        }
    }
    results
}

/// One table per place: each configuration's median, and its ratio to no tracer
/// taken in each round.
fn print_table(place: &str, run: &Run, output: &str) {
    let results = parse(output);
    println!();
    println!(
        "Busy unix-domain services not traced, while sockwatch traces another name; {place}, \
         {ROUNDS} interleaved rounds, median [min-max]; the ratio to no tracer taken in each \
         round; -ip: with --proto tcp --proto udp"
    );
    println!();
    println!("| service | sockwatch mode | CPU ns | ratio per round | over the same mode's -ip |");
    println!("|---|---|---:|---:|---:|");
    for (service, title) in SERVICES {
        let get = |config: &str| {
            let r = results
                .get(&(service.to_string(), config.to_string()))
                .cloned()
                .unwrap_or_default();
            assert!(
                r.len() == ROUNDS,
                "{place}: {service} under {config} did not finish:\n{output}"
            );
            r
        };
        // Each round's time over another configuration's in the same round.
        let per_round = |times: &[f64], base: &[f64]| {
            let mut ratio: Vec<f64> = times.iter().zip(base).map(|(t, b)| t / b).collect();
            let (r, lo, hi) = median_spread(&mut ratio);
            format!("{r:.3} [{lo:.3}-{hi:.3}]")
        };
        let none = get("none");
        for config in run.configs.split(' ') {
            let mut times = get(config);
            // What the unix-domain hooks add: a mode against itself without them.
            let own = format!("{config}-ip");
            let hooks = if run.configs.split(' ').any(|c| c == own) {
                per_round(&times, &get(&own))
            } else {
                String::new()
            };
            let ratio = per_round(&times, &none);
            let (m, lo, hi) = median_spread(&mut times);
            let name = if config == "none" {
                "no tracer"
            } else {
                config
            };
            println!("| {title} | {name} | {m:.0} [{lo:.0}-{hi:.0}] | {ratio} | {hooks} |");
        }
    }
}

fn main() {
    if !support::starting() {
        return;
    }

    eprintln!("host: {ROUNDS} rounds");
    let dir = std::env::temp_dir().join(format!("sockwatch-services-{}", std::process::id()));
    let host = HOST.script(
        "",
        &[
            ("DIR", dir.to_str().unwrap()),
            ("SOCKWATCH", common::SOCKWATCH),
            ("MODULES", MODULES),
            ("LOGGER", "/usr/bin/logger"),
        ],
    );
    let path = format!(
        "{}:{}",
        examples().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(&host)
        .env("PATH", path)
        .output()
        .unwrap();
    std::fs::remove_file(&host).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let host_out = String::from_utf8_lossy(&out.stdout).into_owned();

    eprintln!("qemu on Debian's 6.12: {ROUNDS} rounds");
    // dbus-daemon wants its user in the password database.
    let vm = VM.script(
        "mkdir -p /etc\necho root:x:0:0:root:/:/bin/sh > /etc/passwd\n\
         echo root:x:0: > /etc/group\nexport PATH=/w:$PATH",
        &[
            ("DIR", "/tmp/services"),
            ("SOCKWATCH", "/w/sockwatch"),
            ("MODULES", "/w"),
            ("LOGGER", "/w/logger"),
        ],
    );
    let mut files = vec![examples().join("dbus_calls").display().to_string()];
    files.extend(
        [
            "/usr/bin/dbus-daemon",
            "/usr/sbin/rsyslogd",
            "/usr/bin/logger",
        ]
        .map(String::from),
    );
    files.extend(["imuxsock.so", "lmnet.so"].map(|m| format!("{MODULES}/{m}")));
    let (console, release) = run_in_vm("6.12", &vm, &files);
    std::fs::remove_file(&vm).unwrap();

    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    print_table(&format!("host {kernel}"), &HOST, &host_out);
    print_table(&format!("qemu {release}"), &VM, &console);
}
