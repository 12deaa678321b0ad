//! The command line as clap parses it: every option with its help text, the
//! examples and notes of `--help`, and the value parsers that refuse bad values
//! at parse time.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::model::assertion::Expr;
use crate::model::event::{EventSet, Kind, ProtoFamily};
use crate::model::prefix::Prefix;
use crate::model::status::Status;
use crate::model::unix_path::PathPattern;

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
pub(super) fn parse_size(s: &str) -> Result<u64, String> {
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
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 5m)"))?,
    };
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}
