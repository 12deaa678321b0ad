//! sockwatch: one line for every socket event of the processes you name.

/// Writes a line to stderr, best effort: a closed stderr must not end the trace.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod assertion;
mod cgroup;
mod cli;
mod command;
mod event;
mod format;
mod generate;
mod identity;
mod kretprobe;
mod loader;
mod losses;
mod prefix;
mod probes;
mod procs;
#[cfg(test)]
mod properties;
mod skel;
mod status;
mod summary;
mod system;
mod tracer;
mod unix_path;
mod writer;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::Local;
use clap::Parser;
use libbpf_rs::PrintLevel;

use crate::cli::{Args, Config};
use crate::command::CommandFailed;
use crate::event::Clock;
use crate::format::Style;
use crate::status::Status;
use crate::tracer::{Outcome, Output};

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
        return match generate::write(kind, &mut out).and_then(|()| out.flush()) {
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
    cfg.pids = match procs::resolve_pids(&cfg.pids, &mut cfg.notes) {
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
            file: tracer::open_output(path, cfg.append)?,
            path: Some(path.clone()),
        },
    })
}

/// How the assertions came out, and the verdict line: what the kernel's matching
/// could not see makes a passing verdict undecided; what only the buffer or the
/// output lost leaves it standing, and it says so.
fn judge(report: &tracer::Report) -> (Judged, Option<String>) {
    let verdict = report.assertions.verdict();
    let close = report.assertions.about(event::Kind::Close);
    let missing = report.losses.said(|k| k.blinds(close));
    let dropped = !report.losses.said(|k| !k.blinds(close)).is_empty();
    let judged = match &verdict {
        None => Judged::Nothing,
        Some(v) if !v.passed => Judged::Failed,
        Some(_) if !missing.is_empty() => Judged::Undecided,
        Some(_) => Judged::Passed,
    };
    let line = verdict.map(|v| match judged {
        Judged::Undecided => format!(
            "assertions undecided: {} (among the events seen: {})",
            missing.join(", "),
            v.seen
        ),
        Judged::Passed if dropped => {
            format!(
                "{} (matched in the kernel: what went missing could not change it)",
                v.line
            )
        }
        _ => v.line,
    });
    (judged, line)
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
        false => match command::Command::prepare(&cfg.command, cfg.user.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                note!("sockwatch: error: {}", e.message);
                return Ok(ExitCode::from(e.status));
            }
        },
    };
    let output = output(&cfg)?;

    system::preflight()?;
    tracer::handle_signals()?;
    let clock = Clock::now()?;
    let start = event::boot_now_ns()?;
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
    let mut child = command.as_ref().map(command::Command::spawn).transpose()?;
    let mut tracer = loader::start(&cfg, start)?;
    if let Some(child) = &child {
        tracer.follow(child.pid())?;
    }
    // --deny: COMMAND joins a cgroup of its own before it runs; the hooks act there only.
    let cgroup = match &child {
        Some(child) if cfg.deciding() => {
            let cgroup = cgroup::Cgroup::create()?;
            cgroup.add(child.pid())?;
            tracer.decide_in(cgroup.file())?;
            Some(cgroup)
        }
        _ => None,
    };
    for hint in procs::name_hints(&cfg.names, &cfg.names_given) {
        note!("sockwatch: {hint}");
    }
    if tracer.return_misses == loader::ReturnMisses::Uncounted {
        note!(
            "sockwatch: note: return probes made through perf (tracefs is not writable here) follow \
             at most max(10, 2 x CPUs) threads waiting in one function, and this kernel does \
             not count what they miss: sends and receives of more threads waiting at once \
             may be missing unseen (run as root for room for 4096)"
        );
    }
    let ready = format!("sockwatch: tracing {}", describe(&cfg, &tracer));

    // The ready line comes once the event buffer is read: nothing after it is missed.
    let report = tracer::run(
        &cfg,
        &mut tracer,
        style,
        clock,
        output,
        child.as_mut(),
        || note!("{ready}"),
    )?;
    // The tree has exited (or was stopped): its cgroup goes.
    drop(cgroup);
    let denied = match cfg.deciding() {
        true => Some(tracer.denied()?),
        false => None,
    };
    let audit = match cfg.audit {
        true => Some(tracer.destinations()?),
        false => None,
    };
    let (judged, verdict_line) = judge(&report);
    if report.outcome == Outcome::OutputClosed {
        // Quietly, unless assertions did not pass: a pipeline may still look at the status.
        if let Some(line) = verdict_line.filter(|_| judged.blocks()) {
            note!("sockwatch: {line}");
        }
        return Ok(ExitCode::from(exit_status(report.outcome, judged)));
    }
    let counted = cfg.summary == Some(cli::SummaryMode::Only);
    note!(
        "sockwatch: {}",
        closing_line(&report, counted, denied, cfg.count)
    );
    if let Some((destinations, unrecorded)) = audit {
        for allow in assertion::allow_options(&destinations) {
            note!("sockwatch: audit: --allow '{allow}'");
        }
        if unrecorded > 0 {
            note!("sockwatch: audit: {unrecorded} more not recorded (its table was full): the list is incomplete");
        }
    }
    if let Some(v) = &verdict_line {
        note!("sockwatch: {v}");
    }
    Ok(ExitCode::from(exit_status(report.outcome, judged)))
}

/// The closing line: what was printed (or only `counted`) and lost, what else went
/// missing, the calls `denied` when a policy was in force, and why the run ended.
fn closing_line(
    report: &tracer::Report,
    counted: bool,
    denied: Option<u64>,
    count: Option<u64>,
) -> String {
    let verb = if counted { "counted" } else { "printed" };
    let mut line = format!(
        "{} {verb}, {} lost",
        format::count(report.printed, "event"),
        report.losses.get(losses::Loss::Lost)
    );
    for kind in &losses::Loss::ALL[1..] {
        match report.losses.get(*kind) {
            0 => {}
            n => line += &format!(", {}", kind.said(n)),
        }
    }
    if let Some(n) = denied {
        line += &format!(", {} denied", format::count(n, "call"));
    }
    match report.outcome {
        Outcome::TimedOut => {
            let want = format::count(count.unwrap_or_default(), "event");
            line += &format!("; timed out before {want}");
        }
        Outcome::CommandExited(status) => line += &format!("; COMMAND exited with status {status}"),
        Outcome::PidsExited => line += "; the traced processes exited",
        _ => {}
    }
    line
}

/// What the assertions came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judged {
    /// There were none.
    Nothing,
    Passed,
    Failed,
    /// Nothing failed among the events seen, but some could not be seen.
    Undecided,
}

impl Judged {
    /// Whether the run's status must say that the assertions did not pass.
    fn blocks(self) -> bool {
        matches!(self, Judged::Failed | Judged::Undecided)
    }
}

/// sockwatch's exit status: assertions that did not pass first, then COMMAND's own
/// status.
fn exit_status(outcome: Outcome, judged: Judged) -> u8 {
    match outcome {
        _ if judged == Judged::Failed => Status::Assertion.code(),
        Outcome::Forbidden => Status::Assertion.code(),
        _ if judged == Judged::Undecided => Status::Undecided.code(),
        Outcome::CommandExited(status) => status,
        Outcome::TimedOut => Status::Timeout.code(),
        Outcome::Interrupted
        | Outcome::CountReached
        | Outcome::PidsExited
        | Outcome::DurationElapsed
        | Outcome::OutputClosed => 0,
    }
}

/// The ready line's description of what is traced; scripts wait for "sockwatch: tracing".
fn describe(cfg: &Config, tracer: &loader::Tracer) -> String {
    let mut who = Vec::new();
    if let Some(program) = cfg.command.first() {
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap_or(program.as_os_str());
        who.push(format!(
            "command {} and its children",
            format::escape(name.as_encoded_bytes())
        ));
    }
    if !cfg.names.is_empty() {
        let names: Vec<String> = cfg.names.iter().map(|n| format::escape(n)).collect();
        who.push(format!("process {}", names.join(", ")));
    }
    if !cfg.pids.is_empty() {
        let pids: Vec<String> = cfg.pids.iter().map(u32::to_string).collect();
        who.push(format!("pid {}", pids.join(", ")));
    }
    if cfg.follow {
        who.push("their children".into());
    }
    let mut who = who.join(" and ");
    if cfg.every_process && cfg.cgroup.is_none() {
        who = "every process".into();
    }
    if let Some(dir) = &cfg.cgroup {
        if who.is_empty() {
            who = format!("every process in cgroup {}", dir.display());
        } else {
            who += &format!(" in cgroup {}", dir.display());
        }
    }
    let mut only = Vec::new();
    if !cfg.ports.is_empty() {
        let ports: Vec<String> = cfg.ports.iter().map(u16::to_string).collect();
        only.push(format!("port {}", ports.join(",")));
    }
    if !cfg.peers.is_empty() {
        let peers: Vec<String> = cfg.peers.iter().map(ToString::to_string).collect();
        only.push(format!("peer {}", peers.join(",")));
    }
    if !cfg.paths.is_empty() {
        let paths: Vec<String> = cfg.paths.iter().map(ToString::to_string).collect();
        only.push(format!("path {}", paths.join(",")));
    }
    if !cfg.proto.is_empty() {
        let protos: Vec<&str> = cfg.proto.iter().map(|p| p.name()).collect();
        only.push(protos.join(","));
    }
    let only = match only.is_empty() {
        true => String::new(),
        false => format!("; only {}", only.join(", ")),
    };
    // DENY lines come only with --deny or --allow.
    let mut events = cfg.print.names();
    events.retain(|&e| cfg.deciding() || e != event::Kind::Deny.name());
    format!(
        "{who} (events: {}{only}; via {}, {}); Ctrl-C to stop",
        events.join(","),
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
    fn assertions_that_did_not_pass_decide_the_status() {
        use Judged::*;
        let code = Outcome::CommandExited(7);
        assert_eq!(exit_status(code, Nothing), 7);
        assert_eq!(exit_status(code, Passed), 7);
        assert_eq!(exit_status(code, Failed), Status::Assertion.code());
        assert_eq!(exit_status(code, Undecided), Status::Undecided.code());
        assert_eq!(
            exit_status(Outcome::Forbidden, Undecided),
            Status::Assertion.code()
        );
        assert_eq!(
            exit_status(Outcome::TimedOut, Passed),
            Status::Timeout.code()
        );
        assert_eq!(
            exit_status(Outcome::Interrupted, Undecided),
            Status::Undecided.code()
        );
        assert_eq!(exit_status(Outcome::OutputClosed, Nothing), 0);
    }

    #[test]
    fn the_closing_line_says_what_was_shown_missed_denied_and_why_it_ended() {
        let mut report = tracer::Report {
            outcome: Outcome::CommandExited(3),
            printed: 1,
            losses: losses::Losses::default(),
            assertions: assertion::Assertions::default(),
        };
        assert_eq!(
            closing_line(&report, false, None, None),
            "1 event printed, 0 lost; COMMAND exited with status 3"
        );
        report.losses.set(losses::Loss::Lost, 7);
        report.losses.set(losses::Loss::Unwritten, 2);
        assert_eq!(
            closing_line(&report, true, Some(2), None),
            "1 event counted, 7 lost, 2 lines not written, 2 calls denied; COMMAND exited with status 3"
        );
        report.outcome = Outcome::TimedOut;
        assert_eq!(
            closing_line(&report, false, None, Some(5)),
            "1 event printed, 7 lost, 2 lines not written; timed out before 5 events"
        );
    }

    #[test]
    fn clap_errors_fold_to_one_line() {
        let msg = "error: invalid value 'x' for '--events <LIST>'\n  [possible values: all, exec]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: invalid value 'x' for '--events <LIST>' [possible values: all, exec]"
        );
    }
}
