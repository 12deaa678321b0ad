//! The printer: decodes records, checks them against the assertions, counts them
//! for the summary and writes them through the output's sink.

use std::io::{self, Write};

use anyhow::Result;

use super::enrich::Enricher;
use super::outcome::Outcome;
use super::source::stamp;
use crate::config::{Config, Format, SummaryMode};
use crate::model::assertion::Assertions;
use crate::model::event::{decode, Clock, EventSet, Tally};
use crate::model::summary::Summary;
use crate::output::writer::Writer;
use crate::output::Sink;

/// Decodes records, checks them against the assertions, counts them for the
/// summary and prints them; stops taking them once the count is reached or a
/// forbidden event is seen.
pub(super) struct Printer {
    pub(super) out: Writer,
    pub(super) sink: Box<dyn Sink>,
    pub(super) clock: Clock,
    /// Events of these kinds count toward --count, and are printed unless `lines` is off.
    print: EventSet,
    lines: bool,
    pub(super) printed: u64,
    limit: Option<u64>,
    pub(super) assertions: Assertions,
    pub(super) summary: Option<Summary>,
    /// Peer names and cgroup paths.
    pub(super) enrich: Enricher,
    error: Option<anyhow::Error>,
    /// The stamp of the forbidden event that ended the run.
    forbidden_ts: Option<u64>,
}

impl Printer {
    pub(super) fn new(cfg: &Config, out: Writer, sink: Box<dyn Sink>, clock: Clock) -> Printer {
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
            enrich: Enricher::new(by_identity),
            error: None,
            forbidden_ts: None,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.error.is_some()
            || self.assertions.forbidden_seen()
            || self.limit.is_some_and(|n| self.printed >= n)
    }

    /// Whether a record stamped `ts` is past the end: after an error or the count,
    /// or after the forbidden event (those before it are still printed: perf
    /// buffers deliver other CPUs' records late).
    pub(super) fn closed_to(&self, ts: u64) -> bool {
        self.error.is_some()
            || self.limit.is_some_and(|n| self.printed >= n)
            || self.forbidden_ts.is_some_and(|f| ts > f)
    }

    /// The ring-buffer callback: a negative return stops this poll's consumption.
    pub(super) fn record(&mut self, data: &[u8]) -> i32 {
        let ts = stamp(data);
        if self.closed_to(ts) {
            return -1;
        }
        let result = decode(data, self.clock).and_then(|mut ev| {
            self.enrich.add(&mut ev);
            let forbidden = self.assertions.observe(&ev);
            if forbidden && self.forbidden_ts.is_none() {
                self.forbidden_ts = Some(ts);
            }
            if let Some(summary) = &mut self.summary {
                summary.add(&ev);
            }
            let shown = self.print.contains(ev.kind());
            // The forbidden event is printed whatever the options: it is the evidence,
            // and a line printed counts.
            if forbidden || (shown && self.lines) {
                self.sink.event(&mut self.out, &ev)?;
            }
            Ok(shown || forbidden)
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
    pub(super) fn paused_at(&self, ts: u64) -> bool {
        self.closed_to(ts) || self.out.must_wait()
    }

    /// After a poll: the end the output calls for (closed, or `gone`: stdout's
    /// reader went away), a forbidden event, or the count met.
    pub(super) fn ended(&mut self, gone: impl FnOnce() -> bool) -> Result<Option<Outcome>> {
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
    pub(super) fn write_summary(&mut self, titles: bool) -> io::Result<()> {
        if let Some(summary) = &mut self.summary {
            if let Some(paths) = &mut self.enrich.cgroups {
                summary.name_cgroups(|id| paths.path(id));
            }
            self.sink.summary(&mut self.out, summary, titles)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Sends and receives the kernel added up instead of sending: counted as if read.
    pub(super) fn add_tally(&mut self, t: &Tally) {
        self.printed += t.events;
        if let Some(summary) = &mut self.summary {
            summary.add_tally(t);
        }
    }

    /// A forbidden event the kernel matched to rule `rule` that the buffer did not
    /// deliver (it was lost): its record from the rule's first match is the evidence.
    pub(super) fn forbidden_in_kernel(&mut self, rule: usize, record: &[u8]) {
        let result = decode(record, self.clock).and_then(|mut ev| {
            ev.matched = 1 << rule;
            self.assertions.observe(&ev);
            self.forbidden_ts.get_or_insert(stamp(record));
            Ok(self.sink.event(&mut self.out, &ev)?)
        });
        match result {
            Ok(()) => self.printed += 1,
            Err(e) => self.error = Some(e),
        }
    }

    pub(super) fn flush(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.flush() {
                self.error = Some(e.into());
            }
        }
    }

    /// Ok(true) when the output was closed: the quiet, successful end.
    pub(super) fn check(&mut self) -> Result<bool> {
        match self.error.take() {
            None => Ok(false),
            Some(e) if e.downcast_ref::<io::Error>().is_some_and(is_broken_pipe) => Ok(true),
            Some(e) => Err(e.context("writing events")),
        }
    }
}

pub(super) fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}
