//! Command-line arguments and the validated configuration built from them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::assertion::Expr;
use crate::event::{EventSet, Kind, ProtoFamily};
use crate::format::escape;
use crate::format::Format;
use crate::prefix::Prefix;
use crate::probes::{Buffer, Mode};
use crate::skel::knob_len;
use crate::status::Status;
use crate::unix_path::PathPattern;

/// Most process names, pids, ports, peers and paths the kernel-side filter holds
/// (MAX_NAMES, MAX_PIDS, MAX_PORTS, MAX_PEERS, MAX_PATHS in sockwatch.h).
pub const MAX_NAMES: usize = knob_len(|r| &r.names);
pub const MAX_PIDS: usize = knob_len(|r| &r.pids);
pub const MAX_PORTS: usize = knob_len(|r| &r.ports);
pub const MAX_PEERS: usize = knob_len(|r| &r.peers);
pub const MAX_PATHS: usize = knob_len(|r| &r.paths);
/// The kernel keeps 15 bytes of a process name plus a NUL.
pub const COMM_LEN: usize = 15;

/// Trace the socket lifecycle of processes by name: exec, listen, connect,
/// accept, every send and receive, close with totals, exit.
#[derive(Debug, Parser)]
#[command(name = "sockwatch", version, after_help = after_help(),
          override_usage = "sockwatch [OPTIONS] [NAME]... [-- COMMAND [ARG]...]")]
pub struct Args {
    /// Process names to trace (the process's name as `pgrep -x` matches it)
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub names: Vec<OsString>,

    /// Also trace this process id (repeatable)
    #[arg(short, long = "pid", value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Run COMMAND once tracing is ready and trace it and every process it starts;
    /// when all of them have exited, exit with COMMAND's status
    #[arg(last = true, value_name = "COMMAND", value_parser = clap::value_parser!(OsString))]
    pub command: Vec<OsString>,

    /// End at COMMAND's own exit, leaving the processes it started running untraced
    #[arg(long, requires = "command")]
    pub leave_tree: bool,

    /// Run COMMAND as this user (name or uid), as `strace -u` does
    #[arg(short, long, value_name = "USER", requires = "command")]
    pub user: Option<String>,

    /// Also trace the processes that traced processes start, whatever their names
    #[arg(short, long)]
    pub follow: bool,

    /// Trace every process. Without NAME, PID or COMMAND, --port, --peer, --path and
    /// --cgroup trace every process too, narrowed to what they match
    #[arg(short = 'a', long, conflicts_with_all = ["names", "pids", "command", "follow"])]
    pub all: bool,

    /// Only sockets with this local or remote port (repeatable)
    #[arg(long = "port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,

    /// Only sockets whose remote address is in ADDR[/LEN], IPv4 or IPv6 (repeatable)
    #[arg(long = "peer", value_name = "ADDR[/LEN]", value_parser = Prefix::parse)]
    pub peers: Vec<Prefix>,

    /// Only sockets of this kind: tcp, udp or unix (repeatable)
    #[arg(long, value_name = "PROTO", value_enum, ignore_case = true)]
    pub proto: Vec<ProtoFamily>,

    /// Only unix-domain sockets at PATH (theirs or their peer's; @NAME for an
    /// abstract name; a PATH ending in / for everything under it) (repeatable)
    #[arg(long = "path", value_name = "PATH", value_parser = PathPattern::parse)]
    pub paths: Vec<PathPattern>,

    /// Only processes in this cgroup v2 directory or below it (a systemd service, a
    /// container); with no NAME, PID or COMMAND, all of them
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Exit with status 4 unless an event matches EXPR by the end (repeatable)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub expect: Vec<Expr>,

    /// Print the first event that matches EXPR, terminate COMMAND, exit with status 4
    /// (repeatable)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse)]
    pub forbid: Vec<Expr>,

    /// Make a connect, or a datagram sent to an address, that matches EXPR fail with
    /// EPERM in COMMAND's tree, and print a DENY line (repeatable; needs COMMAND)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse_policy)]
    pub deny: Vec<Expr>,

    /// Let through only the connects and datagram sends that match some EXPR; the
    /// others fail as --deny makes them (repeatable; needs COMMAND)
    #[arg(long, value_name = "EXPR", value_parser = Expr::parse_policy)]
    pub allow: Vec<Expr>,

    /// At the end, print the --allow options that let through every connect and
    /// datagram send COMMAND's tree made (needs COMMAND)
    #[arg(long)]
    pub audit: bool,

    /// Print a table per process and remote end at the end instead of the events
    #[arg(short = 'c', long, conflicts_with = "summary")]
    pub summary_only: bool,

    /// Print the events, then the table of --summary-only
    #[arg(short = 'C', long)]
    pub summary: bool,

    /// Write events and the summary to FILE instead of stdout; SIGHUP reopens it
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With --output: add to FILE instead of emptying it first
    #[arg(short = 'A', long, requires = "output")]
    pub append: bool,

    /// Comma-separated events to show [default: all but retrans and reset]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',', value_parser = parse_event)]
    pub events: Vec<EventSet>,

    /// Print one JSON object per line instead of text
    #[arg(short, long)]
    pub json: bool,

    /// Do not print the column header (text output)
    #[arg(long)]
    pub no_header: bool,

    /// Also print each event's time since tracing started, in seconds, after the
    /// wall clock (JSON: elapsed_ns)
    #[arg(short = 'r', long)]
    pub relative: bool,

    /// Also print each process's parent pid, uid and cgroup (a container or
    /// systemd unit where the cgroup names one) after PID (JSON has them always)
    #[arg(short = 'W', long)]
    pub wide: bool,

    /// Exit successfully after printing N events
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Exit successfully after this long, e.g. 30s, 5m
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// With --count: exit with status 3 if N events were not printed within this long
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration,
          requires = "count")]
    pub timeout: Option<Duration>,

    /// Event buffer size shared by all CPUs, e.g. 512K, 8M, 64M [default: 8M];
    /// rounded up to a power of two
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub buffer_size: Option<u64>,

    /// Most sockets tracked at once for CLOSE totals and lifetimes [default: 65536]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_SOCKETS as i64))]
    pub max_sockets: Option<u32>,

    /// How to hook the kernel: auto tries fentry, then kprobe, then tracepoint
    #[arg(long, value_name = "MODE", value_enum, default_value_t = ProbeArg::Auto)]
    pub probe: ProbeArg,

    /// Event transport: auto uses the ring buffer where the kernel has one (5.8+)
    #[arg(long, value_name = "KIND", value_enum, default_value_t = BufferArg::Auto)]
    pub buffer: BufferArg,

    /// Show libbpf's own messages (verifier logs) on stderr
    #[arg(short, long)]
    pub verbose: bool,

    /// Print a man page or a shell completion script and exit
    #[arg(long, value_name = "KIND", hide = true)]
    pub generate: Option<Generate>,
}

/// `--probe`: a mode, or the first that works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeArg {
    Auto,
    Fentry,
    Kprobe,
    Tracepoint,
}

/// `--buffer`: a transport, or the best the kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BufferArg {
    Auto,
    Ring,
    Perf,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    Man,
    CompleteBash,
    CompleteZsh,
    CompleteFish,
}

/// The event buffer's size when not given, and its bounds.
pub const DEFAULT_BUFFER_SIZE: u64 = 8 << 20;
pub const MAX_BUFFER_SIZE: u64 = 1 << 30;
/// The socket table's size when not given, and its bound.
pub const DEFAULT_MAX_SOCKETS: u32 = 65536;
pub const MAX_SOCKETS: u32 = 1 << 24;

/// Usage examples: the command and what it does (--help and the man page).
pub const EXAMPLES: &[(&str, &str)] = &[
    ("sockwatch nginx", "every socket event of nginx"),
    (
        "sockwatch --json -e connect,close curl",
        "curl's connects and closes with their totals, as NDJSON",
    ),
    (
        "sockwatch -e accept -n 1 -t 30s redis-server",
        "exit 0 at redis-server's first accept, 3 if none came within 30 s",
    ),
    (
        "sockwatch --expect 'connect rport=5432 result=ok' -- ./app",
        "run ./app traced; exit 4 unless it (or a process it started) reached port 5432",
    ),
    (
        "sockwatch -e connect --forbid 'connect peer!=127.0.0.0/8 peer!=::1' --forbid 'send proto=udp peer!=127.0.0.0/8 peer!=::1' -- make test",
        "stop the tests and exit 4 at their first connect or datagram beyond localhost",
    ),
    (
        "sockwatch -c -- curl -s http://127.0.0.1:8080/",
        "curl's connects and bytes per remote end, as a table",
    ),
    (
        "sockwatch --port 5432",
        "every process that talks on port 5432, server and clients, whatever their names",
    ),
];

/// The EXPR grammar of --expect and --forbid.
pub const EXPRESSIONS: &str = "
Expressions (--expect, --forbid, --deny, --allow): EVENT [TERM]...
  EVENT is an event name or `any`; every TERM must hold: KEY=VALUE or KEY!=VALUE.
  --deny and --allow take connect, send or any, and the terms peer, rport, proto
  and process; a connect EXPR also covers datagrams sent to an address.
  port=, lport=, rport=   a port (port: local or remote)
  peer=                   ADDR or ADDR/LEN, IPv4 or IPv6 (::ffff:a.b.c.d is a.b.c.d)
  proto=                  tcp, udp or unix
  path=                   a unix-domain socket's PATH (its peer's, else its own),
                          @NAME for an abstract name, PATH/ for everything under it
  result=                 connect's: ok, failed, aborted, or an errno name (ECONNREFUSED)
  process=                a name as sockwatch prints it (\\xNN for a byte), 15 bytes at most
  A term about a field the event lacks holds neither way; an EVENT whose events
  never have the field (`send result=ok`) is refused. The kernel matches every
  event, those the buffer loses too; 16 expressions at most, 8 terms each.
";

/// Who may run sockwatch, and what scripts can wait for.
pub const PRIVILEGES: &str = "Needs root, or CAP_BPF and CAP_PERFMON (the tracepoint mode \
also CAP_DAC_READ_SEARCH). Once it is reading events, sockwatch prints \
\"sockwatch: tracing ...\" on stderr: scripts can wait for that line.";

fn after_help() -> String {
    let opt_in = EventSet(EventSet::ALL.0 & !EventSet::DEFAULT.0);
    let mut s = format!(
        "Events: {} (the default); {} (only when named, or with all).\n\nExamples:\n",
        EventSet::DEFAULT.names().join(", "),
        opt_in.names().join(", ")
    );
    for (cmd, what) in EXAMPLES {
        s += &format!("  {cmd}\n      {what}\n");
    }
    s += EXPRESSIONS;
    s += &format!("\n{PRIVILEGES}\n\nExit status:\n");
    for status in Status::ALL {
        s += &format!("  {} {}\n", status.code(), status.meaning());
    }
    s
}

/// One `--events` item: an event name, or `all`, in either case (`CONNECT`, as
/// the output prints it), spaces around it ignored (`connect, send`).
fn parse_event(s: &str) -> Result<EventSet, String> {
    let s = s.trim().to_ascii_lowercase();
    if s == "all" {
        return Ok(EventSet::ALL);
    }
    Kind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .map(|k| EventSet(k.bit()))
        .ok_or_else(|| format!("not an event ({}, all)", EventSet::ALL.names().join(", ")))
}

/// A byte size: a number with an optional K, M or G suffix (powers of 1024; KiB,
/// MB and the like are read the same way).
fn parse_size(s: &str) -> Result<u64, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown unit {unit:?} (try 512K, 8M, 1G)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "not a size (try 512K, 8M, 1G)".to_string())?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|&b| b <= MAX_BUFFER_SIZE)
        .ok_or_else(|| "larger than the most sockwatch takes (1G)".to_string())?;
    if bytes == 0 {
        return Err("must be larger than zero".into());
    }
    Ok(bytes)
}

/// A duration with a unit (`500ms`, `30s`, `5m`), or a bare number of seconds, as
/// timeout(1) takes it.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 5m)"))?,
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// What to trace and how to report it, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process names as the kernel stores them: at most 15 bytes.
    pub names: Vec<Vec<u8>>,
    /// Each name as given, before truncation (for hints about paths).
    pub names_given: Vec<Vec<u8>>,
    pub pids: Vec<u32>,
    /// The events the kernel reports: those printed, asserted on and summarized.
    pub events: EventSet,
    /// The events printed as lines (`--events`).
    pub print: EventSet,
    /// COMMAND and its arguments; empty without one.
    pub command: Vec<OsString>,
    pub leave_tree: bool,
    pub user: Option<String>,
    pub follow: bool,
    pub ports: Vec<u16>,
    pub peers: Vec<Prefix>,
    pub proto: Vec<ProtoFamily>,
    pub paths: Vec<PathPattern>,
    pub cgroup: Option<PathBuf>,
    /// No NAME, PID or COMMAND: every process (--all, or narrowed by filters).
    pub every_process: bool,
    pub expect: Vec<Expr>,
    pub forbid: Vec<Expr>,
    pub deny: Vec<Expr>,
    pub allow: Vec<Expr>,
    pub audit: bool,
    pub summary: Option<SummaryMode>,
    /// The summary table's column header (--no-header leaves it out).
    pub table_header: bool,
    pub output: Option<PathBuf>,
    pub append: bool,
    pub format: Format,
    pub header: bool,
    /// -r: each event's time since tracing started, beside the wall clock.
    pub relative: bool,
    /// -W: PPID, UID and CGROUP columns.
    pub wide: bool,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Option<Duration>,
    pub verbose: bool,
    /// Event buffer bytes: a power of two, at least a page.
    pub buffer_size: u64,
    /// Socket table entries.
    pub max_sockets: u32,
    /// The attach mode asked for; None tries each.
    pub probe: Option<Mode>,
    /// The event transport asked for; None picks.
    pub buffer: Option<Buffer>,
    /// Notes for stderr about how the arguments were taken (truncated names).
    pub notes: Vec<String>,
}

impl Config {
    /// Whether some connects and sends may be refused (--deny, --allow).
    pub fn refusing(&self) -> bool {
        !self.deny.is_empty() || !self.allow.is_empty()
    }

    /// Whether COMMAND's connects and sends are decided in its cgroup.
    pub fn deciding(&self) -> bool {
        self.refusing() || self.audit
    }

    /// The kinds whose events the kernel adds up into the summary's rows instead
    /// of sending each: sends and receives, when only the table is printed and
    /// nothing counts events (--count).
    pub fn tallied(&self) -> EventSet {
        match (self.summary, self.count) {
            (Some(SummaryMode::Only), None) => {
                EventSet(self.print.0 & (Kind::Send.bit() | Kind::Recv.bit()))
            }
            _ => EventSet(0),
        }
    }

    /// The kinds whose every event goes to user space: those it prints or counts.
    /// Others selected (for rules, or the socket table) go only when a rule matched.
    pub fn shipped(&self) -> EventSet {
        EventSet(self.print.0 & !self.tallied().0)
    }
}

/// `-c` or `-C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryMode {
    /// The table instead of the lines.
    Only,
    /// The lines, then the table.
    After,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config> {
        let unnamed = args.names.is_empty() && args.pids.is_empty() && args.command.is_empty();
        let narrowed = !args.ports.is_empty() || !args.peers.is_empty() || !args.paths.is_empty();
        if unnamed && !args.all && !narrowed && args.cgroup.is_none() {
            bail!(
                "nothing to trace: give a process NAME, --pid PID or -- COMMAND; --port, \
                 --peer, --path or --cgroup for every process they match; or --all"
            );
        }
        // Narrowed by a socket filter alone, every exec and exit on the machine
        // would be lines: processes' own events only when asked for (-e).
        let socket_only = unnamed && !args.all && args.cgroup.is_none() && args.events.is_empty();
        let mut ports = args.ports;
        ports.sort_unstable();
        ports.dedup();
        if ports.len() > MAX_PORTS {
            bail!("at most {MAX_PORTS} --port values can be given");
        }
        if args.peers.len() > MAX_PEERS {
            bail!("at most {MAX_PEERS} --peer values can be given");
        }
        if args.paths.len() > MAX_PATHS {
            bail!("at most {MAX_PATHS} --path values can be given");
        }
        let cgroup = args.cgroup.map(|p| cgroup_dir(&p)).transpose()?;
        if args.names.len() > MAX_NAMES {
            bail!("at most {MAX_NAMES} process names can be traced at once");
        }
        let mut pids = args.pids;
        pids.sort_unstable();
        pids.dedup();
        if pids.len() > MAX_PIDS {
            bail!("at most {MAX_PIDS} --pid values can be traced at once");
        }
        let mut notes = Vec::new();
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut names_given = Vec::new();
        for name in &args.names {
            let bytes = name.as_bytes();
            if bytes.is_empty() {
                bail!("a process name cannot be empty");
            }
            let short = &bytes[..bytes.len().min(COMM_LEN)];
            if short.len() < bytes.len() {
                notes.push(format!(
                    "note: process names are 15 bytes in the kernel: matching \"{}\" as \"{}\"",
                    escape(bytes),
                    escape(short)
                ));
            }
            if !names.iter().any(|n| n == short) {
                names.push(short.to_vec());
                names_given.push(bytes.to_vec());
            }
        }
        let buffer_size =
            ring_buffer_size(args.buffer_size.unwrap_or(DEFAULT_BUFFER_SIZE), page_size());
        if args.buffer_size.is_some_and(|asked| asked != buffer_size) {
            notes.push(format!(
                "note: the event buffer must be a power of two: using {} bytes",
                buffer_size
            ));
        }
        let probe = match args.probe {
            ProbeArg::Auto => None,
            ProbeArg::Fentry => Some(Mode::Fentry),
            ProbeArg::Kprobe => Some(Mode::Kprobe),
            ProbeArg::Tracepoint => Some(Mode::Tracepoint),
        };
        let buffer = match args.buffer {
            BufferArg::Auto => None,
            BufferArg::Ring => Some(Buffer::Ring),
            BufferArg::Perf => Some(Buffer::Perf),
        };
        if probe == Some(Mode::Tracepoint) && buffer == Some(Buffer::Perf) {
            bail!("--probe tracepoint needs the ring buffer: its tracepoints came after it (6.3, 5.8)");
        }
        let print = if socket_only {
            EventSet(
                EventSet::DEFAULT.0 & !(Kind::Fork.bit() | Kind::Exec.bit() | Kind::Exit.bit()),
            )
        } else {
            EventSet::union(&args.events)
        };
        let summary = match (args.summary_only, args.summary) {
            (true, _) => Some(SummaryMode::Only),
            (false, true) => Some(SummaryMode::After),
            _ => None,
        };
        if args.expect.len() + args.forbid.len() > crate::assertion::max_rules() {
            bail!(
                "at most {} --expect and --forbid expressions can be given",
                crate::assertion::max_rules()
            );
        }
        let deciding = !args.deny.is_empty() || !args.allow.is_empty() || args.audit;
        if deciding && args.command.is_empty() {
            bail!("--deny, --allow and --audit need -- COMMAND: they act in its own cgroup");
        }
        if deciding && args.leave_tree {
            bail!("--leave-tree cannot be used with --deny, --allow or --audit: what it left would run on unwatched");
        }
        let max = crate::assertion::max_rules();
        if args.deny.len() > max || args.allow.len() > max {
            bail!("at most {max} --deny and {max} --allow expressions can be given");
        }
        let mut events = print.0;
        for expr in args.expect.iter().chain(&args.forbid) {
            events |= expr.kinds().0;
        }
        // The summary counts what --events selects. A server's connections are
        // grouped by client host from the kernel's mark on accepted sockets, which
        // lives in the socket table that CLOSE keeps.
        if summary.is_some() {
            events |= Kind::Close.bit();
        }
        // Retransmits and resets are told of tracked sockets: those CLOSE tracks.
        if events & (Kind::Retrans.bit() | Kind::Reset.bit()) != 0 {
            events |= Kind::Close.bit();
        }
        Ok(Config {
            names,
            names_given,
            pids,
            events: EventSet(events),
            print,
            command: args.command,
            leave_tree: args.leave_tree,
            user: args.user,
            follow: args.follow,
            ports,
            peers: args.peers,
            proto: args.proto,
            paths: args.paths,
            cgroup,
            every_process: unnamed,
            expect: args.expect,
            forbid: args.forbid,
            deny: args.deny,
            allow: args.allow,
            audit: args.audit,
            summary,
            output: args.output,
            append: args.append,
            format: if args.json {
                Format::Json
            } else {
                Format::Text
            },
            header: !args.no_header && !args.json && summary != Some(SummaryMode::Only),
            table_header: !args.no_header,
            relative: args.relative,
            wide: args.wide,
            count: args.count,
            duration: args.duration,
            timeout: args.timeout,
            verbose: args.verbose,
            buffer_size,
            max_sockets: args.max_sockets.unwrap_or(DEFAULT_MAX_SOCKETS),
            probe,
            buffer,
            notes,
        })
    }
}

/// A cgroup v2 directory, as given or relative to where cgroup v2 is mounted.
fn cgroup_dir(path: &std::path::Path) -> Result<PathBuf> {
    let mut candidates = vec![path.to_path_buf()];
    if path.is_relative() {
        if let Some(root) = cgroup2_mount() {
            candidates.push(root.join(path));
        }
    }
    for p in candidates {
        if let Ok(fs) = nix::sys::statfs::statfs(&p) {
            if p.is_dir() && fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
                return Ok(p);
            }
            bail!("--cgroup {}: not a cgroup v2 directory", p.display());
        }
    }
    bail!("--cgroup {}: no such directory", path.display())
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// A ring buffer's size must be a power of two and a multiple of the page size.
fn ring_buffer_size(asked: u64, page: u64) -> u64 {
    asked.max(page).next_power_of_two()
}

fn page_size() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(argv: &[&str]) -> Result<Config> {
        let args = Args::try_parse_from(std::iter::once("sockwatch").chain(argv.iter().copied()))?;
        Config::from_args(args)
    }

    #[test]
    fn all_but_the_opt_in_events_by_default() {
        let c = config(&["nginx"]).unwrap();
        assert_eq!(c.events, EventSet::DEFAULT);
        assert!(!c.events.contains(Kind::Retrans) && !c.events.contains(Kind::Reset));
        assert_eq!(c.names, vec![b"nginx".to_vec()]);
        assert!(c.header);
    }

    #[test]
    fn event_list_is_a_mask() {
        let c = config(&["-e", "accept,close", "x"]).unwrap();
        assert_eq!(c.events.names(), vec!["accept", "close"]);
        assert!(!c.events.contains(Kind::Send));
        let c = config(&["-e", "send", "-e", "all", "x"]).unwrap();
        assert_eq!(c.events, EventSet::ALL);
        // Retransmits and resets are of the sockets CLOSE tracks.
        let c = config(&["-e", "retrans", "x"]).unwrap();
        assert_eq!(c.print.names(), vec!["retrans"]);
        assert_eq!(c.events.names(), vec!["close", "retrans"]);
        let c = config(&["-e", "CONNECT, Send,close ", "x"]).unwrap();
        assert_eq!(c.events.names(), vec!["connect", "send", "close"]);
    }

    #[test]
    fn long_names_are_truncated_with_a_note() {
        let c = config(&["a-very-long-process-name"]).unwrap();
        assert_eq!(c.names, vec![b"a-very-long-pro".to_vec()]);
        assert_eq!(c.notes.len(), 1);
        assert!(c.notes[0].contains("\"a-very-long-pro\""));
    }

    #[test]
    fn needs_a_target() {
        let err = config(&[]).unwrap_err();
        assert!(err.to_string().contains("nothing to trace"));
    }

    #[test]
    fn every_process_by_filter_or_all() {
        let process_events = Kind::Fork.bit() | Kind::Exec.bit() | Kind::Exit.bit();
        // A socket filter alone: every process, its socket events only unless -e.
        let c = config(&["--port", "5432"]).unwrap();
        assert!(c.every_process);
        assert_eq!(c.print.0 & process_events, 0);
        assert_ne!(c.print.0 & Kind::Close.bit(), 0);
        let c = config(&["--peer", "10.0.0.0/8", "-e", "connect,exit"]).unwrap();
        assert_eq!(c.print.names(), vec!["exit", "connect"]);
        // --all and --cgroup keep every event; a NAME is not every process.
        let c = config(&["--all"]).unwrap();
        assert!(c.every_process);
        assert_eq!(c.print, EventSet::DEFAULT);
        assert!(!config(&["--port", "5432", "x"]).unwrap().every_process);
        assert!(config(&["--all", "x"]).is_err());
        assert!(config(&["--proto", "tcp"]).is_err());
    }

    #[test]
    fn pid_only_is_enough_and_json_has_no_header() {
        let c = config(&["--pid", "42", "--json"]).unwrap();
        assert_eq!(c.pids, vec![42]);
        assert!(!c.header);
    }

    #[test]
    fn bad_values_fail_at_parse_time() {
        assert!(config(&["--pid", "0", "x"]).is_err());
        assert!(config(&["--count", "0", "x"]).is_err());
        assert!(config(&["--timeout", "5s", "x"]).is_err());
        assert!(config(&["--duration", "soon", "x"]).is_err());
        assert!(config(&["--events", "bogus", "x"]).is_err());
    }

    #[test]
    fn a_bare_duration_is_seconds() {
        assert_eq!(parse_duration("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn sizes_take_units_and_round_to_a_power_of_two() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("2G").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").unwrap_err().contains("unknown unit"));
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(ring_buffer_size(3 << 20, 4096), 4 << 20);
        assert_eq!(ring_buffer_size(100, 4096), 4096);
        assert_eq!(ring_buffer_size(8 << 20, 4096), 8 << 20);
        let c = config(&["--buffer-size", "3M", "x"]).unwrap();
        assert_eq!(c.buffer_size, 4 << 20);
        assert!(c.notes[0].contains("4194304 bytes"), "{:?}", c.notes);
        let c = config(&["x"]).unwrap();
        assert_eq!((c.buffer_size, c.max_sockets), (8 << 20, 65536));
        assert!(c.notes.is_empty());
    }

    #[test]
    fn probe_and_buffer() {
        let c = config(&["x"]).unwrap();
        assert_eq!((c.probe, c.buffer), (None, None));
        let c = config(&["--probe", "kprobe", "--buffer", "perf", "x"]).unwrap();
        assert_eq!(
            (c.probe, c.buffer),
            (Some(Mode::Kprobe), Some(Buffer::Perf))
        );
        let err = config(&["--probe", "tracepoint", "--buffer", "perf", "x"]).unwrap_err();
        assert!(err.to_string().contains("needs the ring buffer"), "{err}");
        assert!(config(&["--probe", "uprobe", "x"]).is_err());
    }

    #[test]
    fn socket_table_bounds() {
        assert_eq!(
            config(&["--max-sockets", "16", "x"]).unwrap().max_sockets,
            16
        );
        assert!(config(&["--max-sockets", "0", "x"]).is_err());
        assert!(config(&["--max-sockets", "16777217", "x"]).is_err());
    }

    #[test]
    fn too_many_names() {
        let names: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
        let argv: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(config(&argv).unwrap_err().to_string().contains("at most 8"));
    }

    #[test]
    fn only_what_is_printed_or_counted_crosses_the_buffer() {
        let bytes = EventSet(Kind::Send.bit() | Kind::Recv.bit());
        let sets = |argv: &[&str]| {
            let c = config(argv).unwrap();
            (c.shipped(), c.tallied())
        };
        // -c alone: sends and receives are added up in the kernel.
        assert_eq!(
            sets(&["-c", "x"]),
            (EventSet(EventSet::DEFAULT.0 & !bytes.0), bytes)
        );
        let send = EventSet(Kind::Send.bit());
        assert_eq!(sets(&["-c", "-e", "send", "x"]), (EventSet(0), send));
        // Lines, or --count, need every event.
        assert_eq!(sets(&["-C", "x"]), (EventSet::DEFAULT, EventSet(0)));
        assert_eq!(
            sets(&["-c", "--count", "5", "x"]),
            (EventSet::DEFAULT, EventSet(0))
        );
        // Kinds only a rule is about cross only when it matched.
        let c = config(&["-e", "connect", "--expect", "send", "x"]).unwrap();
        assert!(c.events.contains(Kind::Send));
        assert_eq!(c.shipped(), EventSet(Kind::Connect.bit()));
    }
}
