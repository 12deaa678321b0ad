//! sockwatch: one line for every socket event of the processes you name.

/// Writes a line to stderr, best effort: a closed stderr must not end the trace.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod config;
mod kernel;
mod model;
mod os;
mod output;
mod report;
mod tracer;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::Local;
use clap::Parser;
use libbpf_rs::PrintLevel;

use crate::config::{Args, Config};
use crate::model::event::Clock;
use crate::model::status::Status;
use crate::os::command::CommandFailed;
use crate::output::file::Output;
use crate::output::Style;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            match e.downcast_ref::<CommandFailed>() {
                Some(CommandFailed(nix::errno::Errno::ENOENT, _)) => Status::NotFound.into(),
                Some(_) => Status::CannotRun.into(),
                None => Status::Error.into(),
            }
        }
    }
}

/// The configuration the command line asks for, or the status to end with at once
/// (--help, --version, --generate, or a usage error, already reported).
fn configure() -> Result<Result<Config, ExitCode>> {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return Ok(Err(ExitCode::SUCCESS));
        }
        Err(e) => {
            note!("sockwatch: {}", one_line(&e.render().to_string()));
            return Ok(Err(Status::Usage.into()));
        }
    };
    if let Some(kind) = args.generate {
        let mut out = std::io::stdout().lock();
        return match config::generate::write(kind, &mut out).and_then(|()| out.flush()) {
            Ok(()) => Ok(Err(ExitCode::SUCCESS)),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Err(ExitCode::SUCCESS)),
            Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        };
    }
    let mut cfg = match Config::from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            return Ok(Err(Status::Usage.into()));
        }
    };
    cfg.pids = match os::procs::resolve_pids(&cfg.pids, &mut cfg.notes) {
        Ok(pids) => pids,
        Err(e) => {
            note!("sockwatch: error: {e:#}");
            return Ok(Err(Status::Usage.into()));
        }
    };
    for note in &cfg.notes {
        note!("sockwatch: {note}");
    }
    Ok(Ok(cfg))
}

/// Where the lines go: stdout (a copy of it), or the --output file, opened now.
fn output(cfg: &Config) -> Result<Output> {
    Ok(match &cfg.output {
        None => Output {
            file: std::os::fd::AsFd::as_fd(&std::io::stdout())
                .try_clone_to_owned()
                .context("duplicating stdout")?
                .into(),
            path: None,
        },
        Some(path) => Output {
            file: output::file::open_output(path, cfg.append)?,
            path: Some(path.clone()),
        },
    })
}

fn run() -> Result<ExitCode> {
    let cfg = match configure()? {
        Ok(cfg) => cfg,
        Err(status) => return Ok(status),
    };
    if cfg.verbose {
        libbpf_rs::set_print(Some((PrintLevel::Debug, |_, msg| {
            use std::io::Write as _;
            let _ = write!(std::io::stderr(), "{msg}");
        })));
    } else {
        libbpf_rs::set_print(None);
    }

    let command = match cfg.command.is_empty() {
        true => None,
        false => match os::command::Command::prepare(&cfg.command, cfg.user.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                note!("sockwatch: error: {}", e.message);
                return Ok(ExitCode::from(e.status));
            }
        },
    };
    let output = output(&cfg)?;

    os::system::preflight()?;
    tracer::handle_signals()?;
    let clock = Clock::now()?;
    let start = model::event::boot_now_ns()?;
    let style = Style {
        format: cfg.format,
        offset: *Local::now().offset(),
        since: cfg.relative.then_some(start),
        wide: cfg.wide,
    };
    // What COMMAND starts stays in its tree when its parent exits (a daemon).
    if command.is_some() {
        nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    }
    // COMMAND waits, forked, until tracing is ready; its pid must be known at load.
    let mut child = command
        .as_ref()
        .map(os::command::Command::spawn)
        .transpose()?;
    // --deny: COMMAND joins a cgroup of its own before it runs; the hooks act there only.
    let cgroup = match &child {
        Some(child) if cfg.deciding() => {
            let cgroup = os::cgroup::Cgroup::create()?;
            cgroup.add(child.pid())?;
            Some(cgroup)
        }
        _ => None,
    };
    let setup = kernel::Setup {
        command: child.as_ref().map(os::command::Child::pid),
        cgroup: cgroup.as_ref().map(os::cgroup::Cgroup::file),
    };
    let mut live = kernel::start(&cfg, start, &setup)?;
    for hint in os::procs::name_hints(&cfg.names, &cfg.names_given) {
        note!("sockwatch: {hint}");
    }
    if let Some(note) = report::start_note(&live) {
        note!("sockwatch: {note}");
    }
    let ready = format!("sockwatch: tracing {}", report::describe(&cfg, &live));

    // The ready line comes once the event buffer is read: nothing after it is missed.
    let report = tracer::run(
        &cfg,
        &mut live,
        style,
        clock,
        output,
        child.as_mut(),
        || note!("{ready}"),
    )?;
    // The tree has exited (or was stopped): its cgroup goes.
    drop(cgroup);
    Ok(report::end(&cfg, &report))
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
