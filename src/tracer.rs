//! The poll loop: read the ring buffer, print, and stop when told to.

use std::cell::RefCell;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBufferBuilder;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::cli::Config;
use crate::event::{decode, Clock};
use crate::format::{count, write_event, write_header, Style};
use crate::probes::{types::counter, Tracer};

/// Longest wait between polls: bounds how late a line and a stop request can be.
const POLL: Duration = Duration::from_millis(100);
/// Pause after a non-empty batch. The kernel wakes the reader for a record only when
/// the reader had caught up; pausing lets records gather, so a busy trace costs one
/// wakeup per pause instead of one per event, for at most this much more latency.
const GATHER: Duration = Duration::from_millis(2);

/// Why tracing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Interrupted,
    CountReached,
    DurationElapsed,
    TimedOut,
    OutputClosed,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set a flag; without SA_RESTART they also cut the poll short.
pub fn handle_signals() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { sigaction(sig, &action) }.context("installing signal handlers")?;
    }
    Ok(())
}

/// Whether stdout is a pipe whose reader has gone (`sockwatch ... | head`).
fn output_closed() -> bool {
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

/// Decodes and prints records; stops taking them once the count is reached.
struct Printer<W: Write> {
    out: W,
    style: Style,
    clock: Clock,
    printed: u64,
    limit: Option<u64>,
    error: Option<anyhow::Error>,
}

impl<W: Write> Printer<W> {
    fn done(&self) -> bool {
        self.error.is_some() || self.limit.is_some_and(|n| self.printed >= n)
    }

    /// The ring-buffer callback: a negative return stops this poll's consumption.
    fn record(&mut self, data: &[u8]) -> i32 {
        if self.done() {
            return -1;
        }
        let result = decode(data, self.clock).and_then(|ev| {
            write_event(&mut self.out, &ev, self.style).map_err(anyhow::Error::from)
        });
        match result {
            Ok(()) => self.printed += 1,
            Err(e) => self.error = Some(e),
        }
        if self.done() {
            -1
        } else {
            0
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

/// What the summary line reports.
pub struct Summary {
    pub outcome: Outcome,
    pub printed: u64,
    pub lost: u64,
    pub untracked: u64,
}

/// Reports lost events at most once a second while they happen.
struct LossReport {
    last_check: Instant,
    lost: u64,
    untracked: u64,
}

impl LossReport {
    fn check(&mut self, tracer: &Tracer, force: bool) -> Result<()> {
        if !force && self.last_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_check = Instant::now();
        let lost = tracer.counter(counter::CTR_LOST)?;
        if lost > self.lost {
            note!(
                "sockwatch: {} lost (the event buffer was full); {lost} in all",
                count(lost - self.lost, "event")
            );
            self.lost = lost;
        }
        let untracked = tracer.counter(counter::CTR_UNTRACKED)?;
        if untracked > self.untracked {
            note!(
                "sockwatch: {} untracked (the socket table was full): their CLOSE lines will be missing",
                count(untracked - self.untracked, "socket")
            );
            self.untracked = untracked;
        }
        Ok(())
    }
}

/// Prints events until a signal, --count, --duration, --timeout, or a closed output.
pub fn run(cfg: &Config, tracer: &mut Tracer, style: Style, clock: Clock) -> Result<Summary> {
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    if cfg.header {
        write_header(&mut out).context("writing the header")?;
    }
    let printer = RefCell::new(Printer {
        out,
        style,
        clock,
        printed: 0,
        limit: cfg.count,
        error: None,
    });
    let mut builder = RingBufferBuilder::new();
    builder
        .add(&tracer.skel.maps.events, |data| {
            printer.borrow_mut().record(data)
        })
        .context("setting up the event buffer")?;
    let ring = builder.build().context("setting up the event buffer")?;

    let start = Instant::now();
    let duration_end = cfg.duration.map(|d| start + d);
    let timeout_end = cfg.timeout.map(|d| start + d);
    let mut losses = LossReport {
        last_check: start,
        lost: 0,
        untracked: 0,
    };
    let outcome = loop {
        let now = Instant::now();
        if STOP.load(Ordering::Relaxed) {
            break Outcome::Interrupted;
        }
        if duration_end.is_some_and(|t| now >= t) {
            break Outcome::DurationElapsed;
        }
        if timeout_end.is_some_and(|t| now >= t) {
            break Outcome::TimedOut;
        }
        let wait = [duration_end, timeout_end]
            .into_iter()
            .flatten()
            .map(|t| t - now)
            .fold(POLL, Duration::min);
        // EINTR (a signal) and a stop from the callback both land at the checks above.
        let batch = ring.poll_raw(wait);
        let mut p = printer.borrow_mut();
        p.flush();
        if p.check()? || output_closed() {
            break Outcome::OutputClosed;
        }
        if p.done() {
            break Outcome::CountReached;
        }
        drop(p);
        losses.check(tracer, false)?;
        if batch > 0 {
            std::thread::sleep(GATHER);
        }
    };

    // Detach, then print what already happened (unless the reader is gone or the count is met).
    tracer.links.clear();
    let mut outcome = outcome;
    if matches!(
        outcome,
        Outcome::Interrupted | Outcome::DurationElapsed | Outcome::TimedOut
    ) {
        ring.consume_raw();
        let mut p = printer.borrow_mut();
        p.flush();
        if p.check()? {
            outcome = Outcome::OutputClosed;
        } else if p.done() {
            outcome = Outcome::CountReached;
        }
    }
    drop(ring);
    losses.check(tracer, true)?;
    Ok(Summary {
        outcome,
        printed: printer.into_inner().printed,
        lost: losses.lost,
        untracked: losses.untracked,
    })
}
