//! Command-line arguments and the validated configuration built from them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::event::Kind;
use crate::format::escape;

/// Most process names and pids the kernel-side filter holds (MAX_NAMES, MAX_PIDS).
pub const MAX_NAMES: usize = 8;
pub const MAX_PIDS: usize = 8;
/// The kernel keeps 15 bytes of a process name plus a NUL.
pub const COMM_LEN: usize = 15;

/// Trace the socket lifecycle of processes by name: exec, listen, connect,
/// accept, every send and receive, close with totals, exit.
#[derive(Debug, Parser)]
#[command(name = "sockwatch", version, after_help = AFTER_HELP)]
pub struct Args {
    /// Process names to trace (the process's name as `pgrep -x` matches it)
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub names: Vec<OsString>,

    /// Also trace this process id (repeatable)
    #[arg(short, long = "pid", value_name = "PID",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub pids: Vec<u32>,

    /// Comma-separated events to show [default: all]
    #[arg(short, long, value_name = "LIST", value_delimiter = ',', value_parser = parse_event)]
    pub events: Vec<EventSet>,

    /// Print one JSON object per line instead of text
    #[arg(short, long)]
    pub json: bool,

    /// Do not print the column header (text output)
    #[arg(long)]
    pub no_header: bool,

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

    /// Show libbpf's own messages (verifier logs) on stderr
    #[arg(short, long)]
    pub verbose: bool,
}

const AFTER_HELP: &str = "\
Events: exec, exit, listen, connect, accept, send, recv, close (or all).

Exit status: 0 success (interrupted, --count reached, --duration elapsed, output
closed); 1 error (privileges, kernel support, BPF load); 2 bad arguments;
3 --timeout elapsed before --count events were printed.";

/// One `--events` item: an event name, or `all`.
fn parse_event(s: &str) -> Result<EventSet, String> {
    if s == "all" {
        return Ok(EventSet::ALL);
    }
    Kind::ALL
        .into_iter()
        .find(|k| k.name() == s)
        .map(|k| EventSet(k.bit()))
        .ok_or_else(|| format!("not an event ({}, all)", EventSet::ALL.names().join(", ")))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 500ms, 30s, 5m)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

/// A set of event kinds, as the bit mask the BPF program reads (`1 << kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSet(pub u32);

impl EventSet {
    pub const ALL: EventSet = {
        let mut bits = 0;
        let mut i = 0;
        while i < Kind::ALL.len() {
            bits |= Kind::ALL[i].bit();
            i += 1;
        }
        EventSet(bits)
    };

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn names(self) -> Vec<&'static str> {
        Kind::ALL
            .iter()
            .filter(|k| self.contains(**k))
            .map(|k| k.name())
            .collect()
    }

    /// The union of the `--events` items; all when there are none.
    fn union(items: &[EventSet]) -> EventSet {
        if items.is_empty() {
            return EventSet::ALL;
        }
        EventSet(items.iter().fold(0, |m, e| m | e.0))
    }
}

/// What to trace and how to report it, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Process names as the kernel stores them: at most 15 bytes.
    pub names: Vec<Vec<u8>>,
    pub pids: Vec<u32>,
    pub events: EventSet,
    pub json: bool,
    pub header: bool,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub timeout: Option<Duration>,
    pub verbose: bool,
    /// Notes for stderr about how the arguments were taken (truncated names).
    pub notes: Vec<String>,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config> {
        if args.names.is_empty() && args.pids.is_empty() {
            bail!("nothing to trace: give a process NAME or --pid PID");
        }
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
        let mut names = Vec::new();
        for name in &args.names {
            let bytes = name.as_bytes();
            if bytes.is_empty() {
                bail!("a process name cannot be empty");
            }
            if bytes.len() > COMM_LEN {
                let short = &bytes[..COMM_LEN];
                notes.push(format!(
                    "note: process names are 15 bytes in the kernel: matching \"{}\" as \"{}\"",
                    escape(bytes),
                    escape(short)
                ));
                names.push(short.to_vec());
            } else {
                names.push(bytes.to_vec());
            }
        }
        names.dedup();
        Ok(Config {
            names,
            pids,
            events: EventSet::union(&args.events),
            json: args.json,
            header: !args.no_header && !args.json,
            count: args.count,
            duration: args.duration,
            timeout: args.timeout,
            verbose: args.verbose,
            notes,
        })
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
    fn all_events_by_default() {
        let c = config(&["nginx"]).unwrap();
        assert_eq!(c.events, EventSet::ALL);
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
    fn too_many_names() {
        let names: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
        let argv: Vec<&str> = names.iter().map(String::as_str).collect();
        assert!(config(&argv).unwrap_err().to_string().contains("at most 8"));
    }
}
