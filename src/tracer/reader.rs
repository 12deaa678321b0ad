//! The reader: the event buffer and what reads it, with the end's drain. Records
//! go to the printer; perf records once they are in time order.

use std::cell::RefCell;
use std::ops::Range;
use std::time::Duration;

use anyhow::Result;

use super::limits::POLL;
use super::outcome::Drained;
use super::printer::Printer;
use super::source::{Reorder, Source, REORDER_NS};
use crate::kernel::Live;
use crate::model::event::{boot_now_ns, Clock};

/// The event buffer and what reads it: records go to the printer, perf records
/// once they are in time order.
pub(super) struct Reader<'a> {
    pub(super) source: Source<'a>,
    pub(super) printer: &'a RefCell<Printer>,
    pub(super) reorder: &'a RefCell<Reorder>,
    /// The --forbid rules' indexes among the kernel's rules.
    pub(super) forbid_rules: Range<usize>,
}

impl Reader<'_> {
    /// Prints the perf records stamped up to `until`, while the printer takes them
    /// (the rest wait in order).
    pub(super) fn print_ordered(&self, until: u64) {
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
    pub(super) fn before_forbidden(&self) -> Result<()> {
        self.source.consume()?;
        self.print_ordered(u64::MAX);
        self.printer.borrow_mut().flush();
        Ok(())
    }

    /// The kernel matches --forbid before the buffer, which may lose the event: a
    /// rule's first match found there and not among the events read stops the run.
    pub(super) fn forbidden_in_kernel(&self, live: &Live) -> Result<()> {
        for rule in self.forbid_rules.clone() {
            if self.printer.borrow().assertions.forbidden_seen() {
                break;
            }
            let Some(record) = live.first_hit(rule)? else {
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
    pub(super) fn poll(&self, wait: Duration, live: &Live) -> Result<bool> {
        // EINTR (a signal) and a stop from the callback both end the wait.
        let batch = self.source.poll(wait, self.reorder)?;
        // The wall clock may have been set since: stamps follow it.
        self.printer.borrow_mut().clock = Clock::now()?;
        if matches!(self.source, Source::Perf(_)) {
            self.print_ordered(boot_now_ns()?.saturating_sub(REORDER_NS));
        }
        self.forbidden_in_kernel(live)?;
        Ok(batch)
    }

    /// Prints what is left in the buffer, once the programs are detached, waiting
    /// for the output while `keep_waiting` (asked with the lines written so far)
    /// says so; after that, what the output cannot take is dropped and counted.
    pub(super) fn drain(
        &self,
        live: &Live,
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
        self.forbidden_in_kernel(live)?;
        let mut p = self.printer.borrow_mut();
        p.flush();
        Ok(Drained {
            output_closed: p.check()?,
            forbidden: p.assertions.forbidden_seen(),
            count_reached: p.done(),
        })
    }
}
