//! The kernel's event buffer as read: the ring buffer, or the per-CPU perf buffers
//! with their records put back in time order.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::{PerfBufferBuilder, RingBufferBuilder};

use crate::kernel::{EventBuffer, Live};

/// How long perf-buffer records wait to be put in time order with other CPUs'.
/// Each CPU's buffer is in order; a record can only be overtaken by one another
/// CPU wrote at about the same moment, which the next poll reads.
pub(super) const REORDER_NS: u64 = 10_000_000;

/// Per-CPU perf buffer pages (a power of two) for about `bytes` in all.
fn perf_pages(bytes: u64) -> usize {
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1).max(1) as u64;
    (bytes / 4096 / cpus).max(1).next_power_of_two() as usize
}

/// Records from the per-CPU perf buffers, released in time order.
#[derive(Default)]
pub(super) struct Reorder {
    heap: BinaryHeap<Reverse<(u64, u64, Vec<u8>)>>,
    /// Records pushed so far.
    pub(super) seq: u64,
}

/// A record's CLOCK_BOOTTIME stamp: every record starts with it.
pub(super) fn stamp(data: &[u8]) -> u64 {
    data.get(..8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap()))
}

impl Reorder {
    pub(super) fn push(&mut self, data: &[u8]) {
        let ts = stamp(data);
        self.seq += 1;
        self.heap.push(Reverse((ts, self.seq, data.to_vec())));
    }

    /// The oldest record, if it is stamped before `until`.
    pub(super) fn next(&mut self, until: u64) -> Option<Vec<u8>> {
        if self
            .heap
            .peek()
            .is_some_and(|Reverse((ts, _, _))| *ts <= until)
        {
            return self.heap.pop().map(|r| r.0 .2);
        }
        None
    }

    /// The oldest record's stamp.
    pub(super) fn oldest(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((ts, _, _))| *ts)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

/// The kernel's event buffer, as read.
pub(super) enum Source<'a> {
    Ring(libbpf_rs::RingBuffer<'a>),
    Perf(libbpf_rs::PerfBuffer<'a>),
}

impl<'a> Source<'a> {
    /// The buffer `tracer` writes to: ring-buffer records go to `record` as they are
    /// read; perf records wait in `reorder`, and the perf buffers' losses add up in
    /// `perf_lost`.
    pub(super) fn open(
        live: &Live,
        buffer_size: u64,
        record: impl FnMut(&[u8]) -> i32 + 'a,
        reorder: &'a RefCell<Reorder>,
        perf_lost: &'a Cell<u64>,
    ) -> Result<Source<'a>> {
        Ok(match live.event_buffer() {
            EventBuffer::Ring(map) => {
                let mut builder = RingBufferBuilder::new();
                builder
                    .add(map, record)
                    .context("setting up the event buffer")?;
                Source::Ring(builder.build().context("setting up the event buffer")?)
            }
            EventBuffer::Perf(map) => Source::Perf(
                PerfBufferBuilder::new(map)
                    .pages(perf_pages(buffer_size))
                    .sample_cb(|_cpu, data: &[u8]| reorder.borrow_mut().push(data))
                    .lost_cb(|_cpu, n| perf_lost.set(perf_lost.get() + n))
                    .build()
                    .context("setting up the perf buffer")?,
            ),
        })
    }

    /// Waits for records up to `wait`; true when any came.
    pub(super) fn poll(&self, wait: Duration, reorder: &RefCell<Reorder>) -> Result<bool> {
        match self {
            Source::Ring(ring) => Ok(ring.poll_raw(wait) > 0),
            Source::Perf(perf) => {
                let before = reorder.borrow().seq;
                match perf.poll(wait) {
                    Ok(()) => {}
                    Err(e) if e.kind() == libbpf_rs::ErrorKind::Interrupted => {}
                    Err(e) => return Err(anyhow::Error::new(e).context("reading the perf buffer")),
                }
                Ok(reorder.borrow().seq > before)
            }
        }
    }

    /// Takes whatever is already there; true when the ring-buffer callback stopped
    /// it before the end (the output must catch up, or the run is over).
    pub(super) fn consume(&self) -> Result<bool> {
        Ok(match self {
            Source::Ring(ring) => ring.consume_raw() < 0,
            Source::Perf(perf) => {
                perf.consume().context("reading the perf buffer")?;
                false
            }
        })
    }
}
