//! sockwatch: one line for every socket event of the processes you name.

/// Writes a line to stderr, best effort: a closed stderr must not end the trace.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod event;
mod format;
mod generate;
mod loader;
mod probes;
mod procs;
#[cfg(test)]
mod properties;
mod skel;
mod system;
mod tracer;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use chrono::Local;
use clap::Parser;
use libbpf_rs::PrintLevel;

use crate::cli::{Args, Config};
use crate::event::Clock;
use crate::format::Style;
use crate::tracer::Outcome;

/// Exit statuses, as documented in `--help` and the README.
const EXIT_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_TIMEOUT: u8 = 3;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run() -> Result<ExitCode> {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            note!("sockwatch: {}", one_line(&e.render().to_string()));
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if let Some(kind) = args.generate {
        let mut out = std::io::stdout().lock();
        return match generate::write(kind, &mut out).and_then(|()| out.flush()) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        };
    }
    let mut cfg = match Config::from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    cfg.pids = match procs::resolve_pids(&cfg.pids, &mut cfg.notes) {
        Ok(pids) => pids,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    for note in &cfg.notes {
        note!("sockwatch: {note}");
    }
    if cfg.verbose {
        libbpf_rs::set_print(Some((PrintLevel::Debug, |_, msg| {
            use std::io::Write as _;
            let _ = write!(std::io::stderr(), "{msg}");
        })));
    } else {
        libbpf_rs::set_print(None);
    }

    system::preflight()?;
    tracer::handle_signals()?;
    let clock = Clock::now()?;
    let style = Style {
        json: cfg.json,
        offset: *Local::now().offset(),
    };
    let mut tracer = loader::start(&cfg, event::boot_now_ns()?)?;
    for hint in procs::name_hints(&cfg.names, &cfg.names_given) {
        note!("sockwatch: {hint}");
    }
    let ready = format!("sockwatch: tracing {}", describe(&cfg, &tracer));

    // The ready line comes once the event buffer is read: nothing after it is missed.
    let summary = tracer::run(&cfg, &mut tracer, style, clock, || note!("{ready}"))?;
    if summary.outcome == Outcome::OutputClosed {
        return Ok(ExitCode::SUCCESS);
    }
    let mut line = format!(
        "sockwatch: {} printed, {} lost",
        format::count(summary.printed, "event"),
        summary.lost
    );
    if summary.skipped > 0 {
        line += &format!(", {} skipped", format::count(summary.skipped, "hook run"));
    }
    if summary.untracked > 0 {
        line += &format!(", {} untracked", format::count(summary.untracked, "socket"));
    }
    if summary.outcome == Outcome::TimedOut {
        let want = format::count(cfg.count.unwrap_or_default(), "event");
        note!("{line}; timed out before {want}");
        return Ok(ExitCode::from(EXIT_TIMEOUT));
    }
    note!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// The ready line's description of what is traced; scripts wait for "sockwatch: tracing".
fn describe(cfg: &Config, tracer: &loader::Tracer) -> String {
    let mut who = Vec::new();
    if !cfg.names.is_empty() {
        let names: Vec<String> = cfg.names.iter().map(|n| format::escape(n)).collect();
        who.push(format!("process {}", names.join(", ")));
    }
    if !cfg.pids.is_empty() {
        let pids: Vec<String> = cfg.pids.iter().map(u32::to_string).collect();
        who.push(format!("pid {}", pids.join(", ")));
    }
    format!(
        "{} (events: {}; via {}, {}); Ctrl-C to stop",
        who.join(" and "),
        cfg.events.names().join(","),
        tracer.mode,
        tracer.buffer.name()
    )
}

/// Folds clap's multi-line message into one line, without the usage and help hints.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_fold_to_one_line() {
        let msg = "error: invalid value 'x' for '--events <LIST>'\n  [possible values: all, exec]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: invalid value 'x' for '--events <LIST>' [possible values: all, exec]"
        );
    }
}
