//! The validated configuration built from the command line (`args.rs`), and the
//! choices it makes that the layers below read.

pub mod args;
pub mod generate;
pub mod mode;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::config::mode::{Buffer, Mode};
use crate::model::assertion::Expr;
use crate::model::event::{EventSet, Kind, ProtoFamily};
use crate::model::names::COMM_LEN;
use crate::model::prefix::Prefix;
use crate::model::text::escape;
use crate::model::unix_path::PathPattern;

pub use crate::model::abi::{MAX_NAMES, MAX_PATHS, MAX_PEERS, MAX_PIDS, MAX_PORTS};
pub use args::Args;
use args::{BufferArg, ProbeArg, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_SOCKETS};

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

/// The output format: text lines, or one JSON object per line (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
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
        let cgroup = args
            .cgroup
            .map(|p| crate::os::cgroup::cgroup_dir(&p))
            .transpose()?;
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
        if args.expect.len() + args.forbid.len() > crate::model::assertion::max_rules() {
            bail!(
                "at most {} --expect and --forbid expressions can be given",
                crate::model::assertion::max_rules()
            );
        }
        let deciding = !args.deny.is_empty() || !args.allow.is_empty() || args.audit;
        if deciding && args.command.is_empty() {
            bail!("--deny, --allow and --audit need -- COMMAND: they act in its own cgroup");
        }
        if deciding && args.leave_tree {
            bail!("--leave-tree cannot be used with --deny, --allow or --audit: what it left would run on unwatched");
        }
        let max = crate::model::assertion::max_rules();
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
    use super::args::{parse_duration, parse_size};
    use super::*;
    use clap::Parser;

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
