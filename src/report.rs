//! The end of a run as the user reads it: the ready line, the closing line, the
//! verdict on the assertions, and the exit status. Pure functions of the
//! configuration and the run's report, but for `end`, which prints them.

use std::process::ExitCode;

use crate::config::{self, Config};
use crate::kernel::{Live, ReturnMisses};
use crate::model::event::Kind;
use crate::model::losses::Loss;
use crate::model::status::Status;
use crate::model::text::{count, escape};
use crate::tracer::{Outcome, Report};

/// What sockwatch says once it is loaded, before the ready line, if anything.
pub fn start_note(live: &Live) -> Option<String> {
    (live.return_misses == ReturnMisses::Uncounted).then(|| {
        "note: return probes made through perf (tracefs is not writable here) follow at most \
         max(10, 2 x CPUs) threads waiting in one function, and this kernel does not count \
         what they miss: sends and receives of more threads waiting at once may be missing \
         unseen (run as root for room for 4096)"
            .to_string()
    })
}

/// Prints the closing line, --audit's findings and the verdict; returns the status.
pub fn end(cfg: &Config, report: &Report) -> ExitCode {
    let (judged, verdict_line) = judge(report);
    if report.outcome == Outcome::OutputClosed {
        // Quietly, unless assertions did not pass: a pipeline may still look at the status.
        if let Some(line) = verdict_line.filter(|_| judged.blocks()) {
            note!("sockwatch: {line}");
        }
        return ExitCode::from(exit_status(report.outcome, judged));
    }
    let counted = cfg.summary == Some(config::SummaryMode::Only);
    let denied = cfg.deciding().then_some(report.denied);
    note!(
        "sockwatch: {}",
        closing_line(report, counted, denied, cfg.count)
    );
    if cfg.audit {
        let (destinations, unrecorded) = &report.destinations;
        let allows = crate::model::assertion::allow_options(destinations);
        if allows.is_empty() && *unrecorded == 0 {
            note!("sockwatch: audit: nothing to allow (COMMAND's tree made no connect or addressed send)");
        }
        for allow in allows {
            note!("sockwatch: audit: --allow '{allow}'");
        }
        if *unrecorded > 0 {
            note!("sockwatch: audit: {unrecorded} more not recorded (its table was full): the list is incomplete");
        }
    }
    if let Some(v) = &verdict_line {
        note!("sockwatch: {v}");
    }
    ExitCode::from(exit_status(report.outcome, judged))
}

/// How the assertions came out, and the verdict line: what the kernel's matching
/// could not see makes a passing verdict undecided; what only the buffer or the
/// output lost leaves it standing, and it says so.
fn judge(report: &Report) -> (Judged, Option<String>) {
    let verdict = report.assertions.verdict();
    let close = report.assertions.about(Kind::Close);
    let missing = report.losses.phrases(|k| k.hides_from_assertions(close));
    let dropped = !report
        .losses
        .phrases(|k| !k.hides_from_assertions(close))
        .is_empty();
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

/// The closing line: what was printed (or only `counted`) and lost, what else went
/// missing, the calls `denied` when a policy was in force, and why the run ended
/// (`limit`: --count).
fn closing_line(report: &Report, counted: bool, denied: Option<u64>, limit: Option<u64>) -> String {
    // Printed means written: lines the output never took are not.
    let (verb, shown) = match counted {
        true => ("counted", report.printed),
        false => (
            "printed",
            report
                .printed
                .saturating_sub(report.losses.get(Loss::Unwritten)),
        ),
    };
    let mut line = format!(
        "{} {verb}, {} lost",
        count(shown, "event"),
        report.losses.get(Loss::Lost)
    );
    for kind in &Loss::ALL[1..] {
        match report.losses.get(*kind) {
            0 => {}
            n => line += &format!(", {}", kind.phrase(n)),
        }
    }
    if let Some(n) = denied {
        line += &format!(", {} denied", count(n, "call"));
    }
    match report.outcome {
        Outcome::TimedOut => {
            let want = count(limit.unwrap_or_default(), "event");
            line += &format!("; timed out before {want}");
        }
        Outcome::CommandExited(status) => line += &format!("; COMMAND exited with status {status}"),
        Outcome::PidsExited => line += "; the traced processes exited",
        _ => {}
    }
    line
}

/// The ready line's description of what is traced; scripts wait for "sockwatch: tracing".
pub fn describe(cfg: &Config, live: &Live) -> String {
    let mut who = Vec::new();
    if let Some(program) = cfg.command.first() {
        let name = std::path::Path::new(program)
            .file_name()
            .unwrap_or(program.as_os_str());
        who.push(format!(
            "command {} and its children",
            escape(name.as_encoded_bytes())
        ));
    }
    if !cfg.names.is_empty() {
        let names: Vec<String> = cfg.names.iter().map(|n| escape(n)).collect();
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
    events.retain(|&e| cfg.deciding() || e != Kind::Deny.name());
    format!(
        "{who} (events: {}{only}; via {}, {}); Ctrl-C to stop",
        events.join(","),
        live.mode,
        live.buffer.name()
    )
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
        let mut report = Report {
            outcome: Outcome::CommandExited(3),
            printed: 1,
            losses: crate::model::losses::Losses::default(),
            assertions: crate::model::assertion::Assertions::default(),
            denied: 2,
            destinations: (Vec::new(), 0),
        };
        assert_eq!(
            closing_line(&report, false, None, None),
            "1 event printed, 0 lost; COMMAND exited with status 3"
        );
        report.losses.set(Loss::Lost, 7);
        report.losses.set(Loss::Unwritten, 2);
        assert_eq!(
            closing_line(&report, true, Some(2), None),
            "1 event counted, 7 lost, 2 lines not written, 2 calls denied; COMMAND exited with status 3"
        );
        report.outcome = Outcome::TimedOut;
        report.printed = 4;
        assert_eq!(
            closing_line(&report, false, None, Some(5)),
            "2 events printed, 7 lost, 2 lines not written; timed out before 5 events"
        );
    }
}
