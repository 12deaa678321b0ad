//! The poll loop: read the event buffer (ring or perf), print, and stop when told to.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::assertion::Assertions;
use crate::cli::{Config, SummaryMode};
use crate::command::Child;
use crate::event::{boot_now_ns, decode, Clock, EventSet, Tally};
use crate::format::{Format, Sink, Style};
use crate::identity::CgroupPaths;
use crate::loader::Tracer;
use crate::losses::{Loss, Losses};
use crate::procs::PeerNames;
use crate::summary::Summary;
use crate::writer::Writer;

mod outcome;
mod signals;
mod source;

use outcome::Drained;
pub use outcome::Outcome;
pub use signals::handle_signals;
use signals::{take_signal, SIGNAL, SIGNALLED};
use source::{stamp, Reorder, Source, REORDER_NS};

/// Longest wait between polls: bounds how late a line and a stop request can be.
const POLL: Duration = Duration::from_millis(100);
/// Pause after a non-empty batch. The kernel wakes the reader for a record only when
/// the reader had caught up; pausing lets records gather, so a busy trace costs one
/// wakeup per pause instead of one per event, for at most this much more latency.
const GATHER: Duration = Duration::from_millis(2);

/// Whether stdout is a pipe whose reader has gone (`sockwatch ... | head`).
fn stdout_closed() -> bool {
    let stdout = io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::empty())];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Decodes records, checks them against the assertions, counts them for the
/// summary and prints them; stops taking them once the count is reached or a
/// forbidden event is seen.
struct Printer {
    out: Writer,
    sink: Box<dyn Sink>,
    clock: Clock,
    /// Events of these kinds count toward --count, and are printed unless `lines` is off.
    print: EventSet,
    lines: bool,
    printed: u64,
    limit: Option<u64>,
    assertions: Assertions,
    summary: Option<Summary>,
    peer_names: PeerNames,
    /// JSON and -W print each process's cgroup path.
    cgroups: Option<CgroupPaths>,
    error: Option<anyhow::Error>,
    /// The stamp of the forbidden event that ended the run.
    forbidden_ts: Option<u64>,
}

impl Printer {
    fn new(cfg: &Config, out: Writer, sink: Box<dyn Sink>, clock: Clock) -> Printer {
        // JSON and -W say who each process is; their summaries keep rows apart by it.
        let by_identity = cfg.wide || cfg.format == Format::Json;
        Printer {
            out,
            sink,
            clock,
            print: cfg.print,
            lines: cfg.summary != Some(SummaryMode::Only),
            printed: 0,
            limit: cfg.count,
            assertions: Assertions::new(cfg.expect.clone(), cfg.forbid.clone()),
            summary: cfg
                .summary
                .map(|_| Summary::new(cfg.print, cfg.refusing(), by_identity)),
            peer_names: PeerNames::default(),
            cgroups: by_identity.then(CgroupPaths::new),
            error: None,
            forbidden_ts: None,
        }
    }

    fn done(&self) -> bool {
        self.error.is_some()
            || self.assertions.forbidden_seen()
            || self.limit.is_some_and(|n| self.printed >= n)
    }

    /// Whether a record stamped `ts` is past the end: after an error or the count,
    /// or after the forbidden event (those before it are still printed: perf
    /// buffers deliver other CPUs' records late).
    fn closed_to(&self, ts: u64) -> bool {
        self.error.is_some()
            || self.limit.is_some_and(|n| self.printed >= n)
            || self.forbidden_ts.is_some_and(|f| ts > f)
    }

    /// The ring-buffer callback: a negative return stops this poll's consumption.
    fn record(&mut self, data: &[u8]) -> i32 {
        let ts = stamp(data);
        if self.closed_to(ts) {
            return -1;
        }
        let result = decode(data, self.clock).and_then(|mut ev| {
            self.peer_names.note(&ev);
            ev.name_peer(&self.peer_names);
            if let (Some(paths), Some(who)) = (&mut self.cgroups, &mut ev.who) {
                who.cgroup = paths.path(who.cgroup_id);
            }
            let forbidden = self.assertions.observe(&ev);
            if forbidden && self.forbidden_ts.is_none() {
                self.forbidden_ts = Some(ts);
            }
            if let Some(summary) = &mut self.summary {
                summary.add(&ev);
            }
            let shown = self.print.contains(ev.kind());
            // The forbidden event is printed whatever the options: it is the evidence.
            if forbidden || (shown && self.lines) {
                self.sink.event(&mut self.out, &ev)?;
            }
            Ok(shown)
        });
        match result {
            Ok(true) => self.printed += 1,
            Ok(false) => {}
            Err(e) => self.error = Some(e),
        }
        if self.out.batch_full() {
            self.flush();
        }
        if self.paused_at(ts) {
            -1
        } else {
            0
        }
    }

    /// Whether to stop taking records stamped `ts` for now: past the end, or the
    /// output must catch up first.
    fn paused_at(&self, ts: u64) -> bool {
        self.closed_to(ts) || self.out.must_wait()
    }

    /// After a poll: the end the output calls for (closed, or `gone`: stdout's
    /// reader went away), a forbidden event, or the count met.
    fn ended(&mut self, gone: impl FnOnce() -> bool) -> Result<Option<Outcome>> {
        self.flush();
        Ok(if self.check()? || gone() {
            Some(Outcome::OutputClosed)
        } else if self.assertions.forbidden_seen() {
            Some(Outcome::Forbidden)
        } else if self.done() {
            Some(Outcome::CountReached)
        } else {
            None
        })
    }

    /// The -c/-C table, if there is one; `titles`: with its column titles.
    fn write_summary(&mut self, titles: bool) -> io::Result<()> {
        if let Some(summary) = &self.summary {
            self.sink.summary(&mut self.out, summary, titles)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Sends and receives the kernel added up instead of sending: counted as if read.
    fn add_tally(&mut self, t: &Tally) {
        self.printed += t.events;
        if let Some(summary) = &mut self.summary {
            if let (Some(paths), Some(id)) = (&mut self.cgroups, t.identity) {
                summary.name_cgroup(id.cgroup_id, paths.path(id.cgroup_id));
            }
            summary.add_tally(t);
        }
    }

    /// A forbidden event the kernel matched to rule `rule` that the buffer did not
    /// deliver (it was lost): its record from the rule's first match is the evidence.
    fn forbidden_in_kernel(&mut self, rule: usize, record: &[u8]) {
        let result = decode(record, self.clock).and_then(|mut ev| {
            ev.matched = 1 << rule;
            self.assertions.observe(&ev);
            self.forbidden_ts.get_or_insert(stamp(record));
            Ok(self.sink.event(&mut self.out, &ev)?)
        });
        if let Err(e) = result {
            self.error = Some(e);
        }
    }

    fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e.into());
            }
        }
    }

    /// Ok(true) when the output was closed: the quiet, successful end.
    fn check(&mut self) -> Result<bool> {
        match self.error.take() {
            None => Ok(false),
            Some(e) if e.downcast_ref::<io::Error>().is_some_and(is_broken_pipe) => Ok(true),
            Some(e) => Err(e.context("writing events")),
        }
    }
}

/// How a trace ended, and what the closing lines report.
pub struct Report {
    pub outcome: Outcome,
    pub printed: u64,
    pub losses: Losses,
    pub assertions: Assertions,
}

/// Reports losses at most once a second while they happen.
struct LossReport {
    last_check: Instant,
    seen: Losses,
}

impl LossReport {
    /// `perf_lost`: what the perf buffers reported lost, beside the kernel's count;
    /// `unwritten`: lines the output could not take.
    fn check(
        &mut self,
        tracer: &Tracer,
        perf_lost: u64,
        unwritten: u64,
        force: bool,
    ) -> Result<()> {
        if !force && self.last_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_check = Instant::now();
        let mut now = Losses::default();
        for kind in Loss::ALL {
            if let Some(c) = kind.counter() {
                now.set(kind, tracer.counter(c)?);
            }
        }
        now.set(Loss::Lost, now.get(Loss::Lost) + perf_lost);
        now.set(Loss::Skipped, tracer.skipped_runs());
        now.set(Loss::ReturnsMissed, tracer.returns_missed());
        now.set(Loss::Unwritten, unwritten);
        for kind in Loss::ALL {
            let (total, before) = (now.get(kind), self.seen.get(kind));
            if total > before {
                note!("{}", kind.note(total - before, total));
            }
        }
        self.seen = now;
        Ok(())
    }
}

/// Where the lines go: stdout, or the --output file.
pub struct Output {
    pub file: File,
    /// The --output file, reopened on SIGHUP; None for stdout, whose reader may go away.
    pub path: Option<PathBuf>,
}

/// Opens the --output file for appending, so that a copytruncate rotation leaves no
/// hole; a regular file starts empty unless `append` (--append). Anything else (a
/// FIFO, a pipe behind /dev/stdout or `>(...)`, /dev/null) is written as it is.
pub fn open_output(path: &std::path::Path, append: bool) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let regular = file
        .metadata()
        .with_context(|| format!("reading {}'s type", path.display()))?
        .is_file();
    if regular && !append {
        file.set_len(0)
            .with_context(|| format!("emptying {}", path.display()))?;
    }
    Ok(file)
}

/// How long an end that a signal or --duration asked for waits for a reader, and
/// how long for one that has stopped reading.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
const DRAIN_STALL: Duration = Duration::from_millis(200);

/// The event buffer and what reads it: records go to the printer, perf records
/// once they are in time order.
struct Reader<'a> {
    source: Source<'a>,
    printer: &'a RefCell<Printer>,
    reorder: &'a RefCell<Reorder>,
    /// The --forbid rules' indexes among the kernel's rules.
    forbid_rules: Range<usize>,
}

impl Reader<'_> {
    /// Prints the perf records stamped up to `until`, while the printer takes them
    /// (the rest wait in order).
    fn print_ordered(&self, until: u64) {
        loop {
            let Some(ts) = self.reorder.borrow().oldest() else {
                break;
            };
            if ts > until || self.printer.borrow().paused_at(ts) {
                break;
            }
            let data = self.reorder.borrow_mut().next(until).unwrap();
            self.printer.borrow_mut().record(&data);
        }
    }

    /// After a forbidden event: the events that happened before it and are still
    /// in the buffer (perf buffers deliver each CPU's records on their own).
    fn before_forbidden(&self) -> Result<()> {
        self.source.consume()?;
        self.print_ordered(u64::MAX);
        self.printer.borrow_mut().flush();
        Ok(())
    }

    /// The kernel matches --forbid before the buffer, which may lose the event: a
    /// rule's first match found there and not among the events read stops the run.
    fn forbidden_in_kernel(&self, tracer: &Tracer) -> Result<()> {
        for rule in self.forbid_rules.clone() {
            if self.printer.borrow().assertions.forbidden_seen() {
                break;
            }
            let Some(record) = tracer.first_hit(rule)? else {
                continue;
            };
            // Still in the buffer, most likely: read up to it first.
            self.source.consume()?;
            self.print_ordered(u64::MAX);
            let mut p = self.printer.borrow_mut();
            if !p.assertions.forbidden_seen() {
                p.forbidden_in_kernel(rule, &record);
            }
        }
        Ok(())
    }

    /// Waits up to `wait` for records and prints them; true when any came.
    fn poll(&self, wait: Duration, tracer: &Tracer) -> Result<bool> {
        // EINTR (a signal) and a stop from the callback both end the wait.
        let batch = self.source.poll(wait, self.reorder)?;
        // The wall clock may have been set since: stamps follow it.
        self.printer.borrow_mut().clock = Clock::now()?;
        if matches!(self.source, Source::Perf(_)) {
            self.print_ordered(boot_now_ns()?.saturating_sub(REORDER_NS));
        }
        self.forbidden_in_kernel(tracer)?;
        Ok(batch)
    }

    /// Prints what is left in the buffer, once the programs are detached, waiting
    /// for the output while `keep_waiting` (asked with the lines written so far)
    /// says so; after that, what the output cannot take is dropped and counted.
    fn drain(
        &self,
        tracer: &Tracer,
        keep_waiting: &mut impl FnMut(u64) -> bool,
    ) -> Result<Drained> {
        loop {
            let stopped = self.source.consume()?;
            self.print_ordered(u64::MAX);
            let mut p = self.printer.borrow_mut();
            p.flush();
            if p.done() || !(stopped || p.out.must_wait() || !self.reorder.borrow().is_empty()) {
                break;
            }
            if !p.out.wait_for_room(POLL) && !keep_waiting(p.out.written()) {
                p.out.give_up_waiting();
            }
        }
        self.forbidden_in_kernel(tracer)?;
        let mut p = self.printer.borrow_mut();
        p.flush();
        Ok(Drained {
            output_closed: p.check()?,
            forbidden: p.assertions.forbidden_seen(),
            count_reached: p.done(),
        })
    }
}

/// The ends the clock and --pid call for: --duration, --pid's processes gone
/// (with nothing else to trace), --timeout, checked in that order.
struct Limits {
    duration_end: Option<Instant>,
    timeout_end: Option<Instant>,
    /// Only --pid: once they are gone, nothing more can come.
    only_pids: Option<Vec<u32>>,
}

impl Limits {
    fn new(cfg: &Config, start: Instant) -> Limits {
        let only_pids = !cfg.pids.is_empty()
            && cfg.names.is_empty()
            && cfg.command.is_empty()
            && cfg.cgroup.is_none()
            && !cfg.follow;
        Limits {
            duration_end: cfg.duration.map(|d| start + d),
            timeout_end: cfg.timeout.map(|d| start + d),
            only_pids: only_pids.then(|| cfg.pids.clone()),
        }
    }

    /// The end reached at `now`; `alive` says whether a pid still runs.
    fn reached(&self, now: Instant, alive: impl Fn(u32) -> bool) -> Option<Outcome> {
        if self.duration_end.is_some_and(|t| now >= t) {
            Some(Outcome::DurationElapsed)
        } else if self
            .only_pids
            .as_ref()
            .is_some_and(|p| !p.iter().any(|&p| alive(p)))
        {
            Some(Outcome::PidsExited)
        } else if self.timeout_end.is_some_and(|t| now >= t) {
            Some(Outcome::TimedOut)
        } else {
            None
        }
    }

    /// How long the next poll may wait: `POLL` at most, and not past an end.
    fn wait(&self, now: Instant) -> Duration {
        [self.duration_end, self.timeout_end]
            .into_iter()
            .flatten()
            .map(|t| t.saturating_duration_since(now))
            .fold(POLL, Duration::min)
    }
}

/// Prints events until a signal, --count, --duration, --timeout, a closed output,
/// a forbidden event, or COMMAND's exit. `ready` is called once events are being
/// read; COMMAND is released to run right after it.
pub fn run(
    cfg: &Config,
    tracer: &mut Tracer,
    style: Style,
    clock: Clock,
    output: Output,
    mut command: Option<&mut Child>,
    ready: impl FnOnce(),
) -> Result<Report> {
    let mut out = Writer::start(output.file).context("starting the output thread")?;
    let sink = style.sink();
    if cfg.header {
        sink.header(&mut out).context("writing the header")?;
    }
    let printer = RefCell::new(Printer::new(cfg, out, sink, clock));
    let reorder = RefCell::new(Reorder::default());
    let perf_lost = Cell::new(0u64);
    let forbid_rules = printer.borrow().assertions.forbid_rules();
    let reader = Reader {
        source: Source::open(
            tracer,
            cfg.buffer_size,
            |data| printer.borrow_mut().record(data),
            &reorder,
            &perf_lost,
        )?,
        printer: &printer,
        reorder: &reorder,
        forbid_rules,
    };
    ready();
    if let Some(child) = command.as_deref_mut() {
        child.release()?;
    }

    let start = Instant::now();
    let limits = Limits::new(cfg, start);
    let mut losses = LossReport {
        last_check: start,
        seen: Losses::default(),
    };
    let (mut interrupts, mut left_running) = (0, 0);
    let outcome = loop {
        if let Some((sig, from_terminal)) = take_signal() {
            let mut p = printer.borrow_mut();
            let child = command.as_deref_mut();
            let path = output.path.as_deref();
            if !on_signal(
                sig,
                from_terminal,
                path,
                &mut p.out,
                child,
                tracer,
                &mut interrupts,
            )? {
                break Outcome::Interrupted;
            }
        }
        if let Some(child) = command.as_deref_mut() {
            // Its exit's events are in the buffer before its parent learns of it.
            // The trace goes on while any process of its tree runs (strace -f's rule).
            if let Some(status) = child.try_wait()? {
                let tree = tracer.command_tree();
                if cfg.leave_tree || tree.is_empty() {
                    left_running = tree.len() as u64;
                    break Outcome::CommandExited(status);
                }
            }
        }
        let now = Instant::now();
        if let Some(end) = limits.reached(now, crate::procs::alive) {
            break end;
        }
        let must_wait = printer.borrow().out.must_wait();
        let batch = if must_wait {
            // The reader is behind: the kernel's buffer holds events meanwhile.
            printer.borrow_mut().out.wait_for_room(limits.wait(now));
            reader.forbidden_in_kernel(tracer)?;
            false
        } else {
            reader.poll(limits.wait(now), tracer)?
        };
        let stdout_gone = || output.path.is_none() && stdout_closed();
        if let Some(end) = printer.borrow_mut().ended(stdout_gone)? {
            break end;
        }
        let dropped = printer.borrow().out.dropped();
        losses.check(tracer, perf_lost.get(), dropped, false)?;
        if batch {
            std::thread::sleep(GATHER);
        }
    };

    // COMMAND's tree is stopped while the kernel still follows its forks and exits.
    let stop_tree = |child: &mut Child, tracer: &Tracer| {
        child.terminate(Duration::from_secs(5), || tracer.command_tree())
    };
    if outcome == Outcome::Forbidden {
        if let Some(child) = command.as_deref_mut() {
            stop_tree(child, tracer)?;
        }
    }
    // While the exit hook still runs, so that a process exiting now is no miss.
    let swept = tracer.sweep()?;
    // Detach, then print what already happened (unless the reader is gone or the count is met).
    tracer.detach();
    let stopped = outcome == Outcome::Forbidden;
    let mut keep_waiting = drain_wait(outcome);
    let mut outcome = match outcome.drains() {
        true => outcome.after(reader.drain(tracer, &mut keep_waiting)?),
        false => {
            if outcome == Outcome::Forbidden {
                reader.before_forbidden()?;
            }
            outcome
        }
    };
    drop(reader);
    let mut p = printer.into_inner();
    p.assertions
        .count_hits(&tracer.rule_hits(p.assertions.forbid_rules().end)?);
    if outcome == Outcome::Forbidden && !stopped {
        // Found while draining, after COMMAND exited: the rest of its tree may live on.
        if let Some(child) = command {
            stop_tree(child, tracer)?;
        }
    }
    for tally in swept.iter().chain(&tracer.tallies()?) {
        p.add_tally(tally);
    }
    if outcome != Outcome::OutputClosed {
        match p.write_summary(cfg.table_header) {
            Ok(()) => {}
            Err(e) if is_broken_pipe(&e) => outcome = Outcome::OutputClosed,
            Err(e) => return Err(anyhow::Error::new(e).context("writing the summary")),
        }
    }
    let dropped = p.out.dropped();
    losses.check(tracer, perf_lost.get(), dropped, true)?;
    let finished = p.out.finish(keep_waiting);
    if finished.closed {
        outcome = Outcome::OutputClosed;
    }
    let mut losses = losses.seen;
    losses.set(Loss::Unwritten, finished.unwritten);
    losses.set(Loss::LeftRunning, left_running);
    Ok(Report {
        outcome,
        printed: p.printed,
        losses,
        assertions: p.assertions,
    })
}

/// Acts on SIGINT, SIGTERM or SIGHUP; false when it ends the run. With --output,
/// SIGHUP reopens the file (logrotate moved it away or truncated it). With COMMAND,
/// the signal goes to its whole tree, and a second one kills the tree.
fn on_signal(
    sig: Signal,
    from_terminal: bool,
    path: Option<&std::path::Path>,
    out: &mut Writer,
    command: Option<&mut Child>,
    tracer: &Tracer,
    interrupts: &mut u32,
) -> Result<bool> {
    match (sig, path, command) {
        (Signal::SIGHUP, Some(path), _) => {
            let file = open_output(path, true).context("reopening the output on SIGHUP")?;
            out.switch_to(file)?;
        }
        (_, _, Some(child)) => {
            *interrupts += 1;
            let tree = tracer.command_tree();
            match interrupts {
                1 => child.signal_tree(sig, &tree, from_terminal),
                _ => child.signal_tree(Signal::SIGKILL, &tree, false),
            }
        }
        (_, _, None) => return Ok(false),
    }
    Ok(true)
}

/// Whether to go on waiting for a slow reader at the end (asked with the lines
/// written so far): when a signal or --duration asked for the end, only while the
/// reader keeps reading, and `DRAIN_LIMIT` at most; otherwise until a signal.
fn drain_wait(outcome: Outcome) -> impl FnMut(u64) -> bool {
    let asked_to_stop = SIGNALLED.load(Ordering::Relaxed)
        || matches!(
            outcome,
            Outcome::Interrupted | Outcome::DurationElapsed | Outcome::TimedOut
        );
    let start = Instant::now();
    let mut last = (start, u64::MAX);
    move |written| {
        let now = Instant::now();
        if written != last.1 {
            last = (now, written);
        }
        if asked_to_stop {
            now - start < DRAIN_LIMIT && now - last.0 < DRAIN_STALL
        } else {
            SIGNAL.load(Ordering::Relaxed) == 0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_end_the_run_in_order_and_bound_the_wait() {
        let start = Instant::now();
        let limits = Limits {
            duration_end: Some(start + Duration::from_secs(2)),
            timeout_end: Some(start + Duration::from_secs(1)),
            only_pids: Some(vec![7, 8]),
        };
        let alive = |p: u32| p == 8;
        let dead = |_: u32| false;
        assert_eq!(limits.reached(start, alive), None);
        assert_eq!(limits.reached(start, dead), Some(Outcome::PidsExited));
        let later = start + Duration::from_millis(1500);
        assert_eq!(limits.reached(later, alive), Some(Outcome::TimedOut));
        let last = start + Duration::from_secs(3);
        assert_eq!(limits.reached(last, dead), Some(Outcome::DurationElapsed));
        assert_eq!(limits.wait(start), POLL);
        let near = start + Duration::from_millis(950);
        assert_eq!(limits.wait(near), Duration::from_millis(50));
        assert_eq!(limits.wait(last), Duration::ZERO);
        let none = Limits {
            duration_end: None,
            timeout_end: None,
            only_pids: None,
        };
        assert_eq!(none.reached(last, dead), None);
    }
}
