//! The poll loop: read the event buffer (ring or perf), print, and stop when told
//! to. The kernel is reached through the live handle only; the printer, the
//! reader and the limits are rooms of their own.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::config::Config;
use crate::kernel::Live;
use crate::model::abi::types::destination;
use crate::model::assertion::Assertions;
use crate::model::event::{boot_now_ns, Clock};
use crate::model::losses::{Loss, Losses};
use crate::os::command::Child;
use crate::output::file::{open_output, Output};
use crate::output::writer::Writer;
use crate::output::Style;

mod enrich;
mod limits;
mod outcome;
mod printer;
mod reader;
mod signals;
mod source;

use limits::Limits;
pub use outcome::Outcome;
use printer::{is_broken_pipe, Printer};
use reader::Reader;
pub use signals::handle_signals;
use signals::{take_signal, SIGNAL, SIGNALLED};
use source::{Reorder, Source};

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

/// How a trace ended, and what the closing lines report.
pub struct Report {
    pub outcome: Outcome,
    pub printed: u64,
    pub losses: Losses,
    pub assertions: Assertions,
    /// Connects and sends --deny or --allow refused.
    pub denied: u64,
    /// --audit's destinations, and how many its table had no room for.
    pub destinations: (Vec<destination>, u64),
}

/// Reports losses at most once a second while they happen.
struct LossReport {
    last_check: Instant,
    seen: Losses,
}

impl LossReport {
    /// `perf_lost`: what the perf buffers reported lost, beside the kernel's count;
    /// `unwritten`: lines the output could not take.
    fn check(&mut self, live: &Live, perf_lost: u64, unwritten: u64, force: bool) -> Result<()> {
        if !force && self.last_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_check = Instant::now();
        let mut now = live.losses()?;
        now.set(Loss::Lost, now.get(Loss::Lost) + perf_lost);
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

/// How long an end that a signal or --duration asked for waits for a reader, and
/// how long for one that has stopped reading.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
const DRAIN_STALL: Duration = Duration::from_millis(200);

/// Prints events until a signal, --count, --duration, --timeout, a closed output,
/// a forbidden event, or COMMAND's exit. `ready` is called once events are being
/// read; COMMAND is released to run right after it.
pub fn run(
    cfg: &Config,
    live: &mut Live,
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
            live,
            cfg.buffer_size,
            |data| printer.borrow_mut().record(data),
            &reorder,
            &perf_lost,
        )?,
        printer: &printer,
        reorder: &reorder,
        forbid_rules,
    };
    // -r counts from the ready line: what came before it was under way already.
    if style.since.is_some() {
        let from_ready = Style {
            since: Some(boot_now_ns()?),
            ..style
        };
        printer.borrow_mut().sink = from_ready.sink();
    }
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
                live,
                &mut interrupts,
            )? {
                break Outcome::Interrupted;
            }
        }
        if let Some(child) = command.as_deref_mut() {
            // Its exit's events are in the buffer before its parent learns of it.
            // The trace goes on while any process of its tree runs (strace -f's rule).
            if let Some(status) = child.try_wait()? {
                let tree = live.command_tree();
                if cfg.leave_tree || tree.is_empty() {
                    left_running = tree.len() as u64;
                    break Outcome::CommandExited(status);
                }
            }
        }
        let now = Instant::now();
        if let Some(end) = limits.reached(now, crate::os::procs::alive) {
            break end;
        }
        let must_wait = printer.borrow().out.must_wait();
        let batch = if must_wait {
            // The reader is behind: the kernel's buffer holds events meanwhile.
            printer.borrow_mut().out.wait_for_room(limits.wait(now));
            reader.forbidden_in_kernel(live)?;
            false
        } else {
            reader.poll(limits.wait(now), live)?
        };
        let stdout_gone = || output.path.is_none() && stdout_closed();
        if let Some(end) = printer.borrow_mut().ended(stdout_gone)? {
            break end;
        }
        let dropped = printer.borrow().out.dropped();
        losses.check(live, perf_lost.get(), dropped, false)?;
        if batch {
            std::thread::sleep(GATHER);
        }
    };

    // COMMAND's tree is stopped while the kernel still follows its forks and exits.
    let stop_tree = |child: &mut Child, live: &Live| {
        child.terminate(Duration::from_secs(5), || live.command_tree())
    };
    if outcome == Outcome::Forbidden {
        if let Some(child) = command.as_deref_mut() {
            stop_tree(child, live)?;
        }
    }
    // Then print what already happened (unless the reader is gone or the count is met).
    let swept = live.settle()?;
    let stopped = outcome == Outcome::Forbidden;
    let mut keep_waiting = drain_wait(outcome);
    let mut outcome = match outcome.reads_the_rest() {
        true => outcome.after(reader.drain(live, &mut keep_waiting)?),
        false => {
            if outcome == Outcome::Forbidden {
                reader.before_forbidden()?;
            }
            outcome
        }
    };
    drop(reader);
    let mut p = printer.into_inner();
    let harvest = live.harvest(p.assertions.forbid_rules().end, swept)?;
    p.assertions.count_hits(&harvest.rule_hits);
    if outcome == Outcome::Forbidden && !stopped {
        // Found while draining, after COMMAND exited: the rest of its tree may live on.
        if let Some(child) = command {
            stop_tree(child, live)?;
        }
    }
    for tally in &harvest.tallies {
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
    losses.check(live, perf_lost.get(), dropped, true)?;
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
        denied: harvest.denied,
        destinations: (harvest.destinations, harvest.unaudited),
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
    live: &Live,
    interrupts: &mut u32,
) -> Result<bool> {
    match (sig, path, command) {
        (Signal::SIGHUP, Some(path), _) => {
            let file = open_output(path, true).context("reopening the output on SIGHUP")?;
            out.switch_to(file)?;
        }
        (_, _, Some(child)) => {
            *interrupts += 1;
            let tree = live.command_tree();
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
