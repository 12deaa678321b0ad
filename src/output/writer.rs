//! The output queue: lines reach stdout or the --output file on a thread of their
//! own, so the tracer's own control (signals, --duration, COMMAND's exit) never
//! waits on a write. The queue is bounded: when it is full, the poll loop waits
//! for room (the kernel's buffer holds events meanwhile, and counts what it cannot
//! hold as lost) as long as the reader keeps reading. Only a reader that has
//! stopped reading loses lines: they are counted and reported, never waited for.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Most bytes waiting for the reader.
pub const QUEUE_LIMIT: usize = 16 << 20;
/// Most bytes handed to the writing thread at once: a poll that drains a large
/// buffer queues it in pieces as the reader takes them.
pub const BATCH_LIMIT: usize = 1 << 20;
/// Bytes a write asks for at once, so that progress shows while a batch is written.
const CHUNK: usize = 64 << 10;
/// A reader that has taken nothing for this long, with lines waiting, has stopped
/// reading: from then on what does not fit is dropped and counted.
pub const STALL: Duration = Duration::from_secs(1);

enum Message {
    Lines(Vec<u8>, u64),
    /// Write from now on to this file (the old one was rotated away).
    Switch(File),
}

struct Shared {
    queued_bytes: AtomicUsize,
    queued_lines: AtomicU64,
    written_lines: AtomicU64,
    /// Milliseconds after `epoch` of the last write the reader took.
    progress_ms: AtomicU64,
    epoch: Instant,
    /// The first write error; nothing is written after it.
    error: Mutex<Option<io::Error>>,
    /// Signalled after each write, for a poll loop waiting for room.
    room: (Mutex<()>, Condvar),
}

impl Shared {
    fn new() -> Shared {
        Shared {
            queued_bytes: AtomicUsize::new(0),
            queued_lines: AtomicU64::new(0),
            written_lines: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            error: Mutex::new(None),
            room: (Mutex::new(()), Condvar::new()),
        }
    }

    /// Notes that the reader took something (or that waiting for it starts now).
    fn mark(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.progress_ms.store(ms, Ordering::Relaxed);
    }

    fn progressed(&self) {
        self.mark();
        let _guard = self.room.0.lock().unwrap();
        self.room.1.notify_all();
    }

    fn since_progress(&self) -> Duration {
        let last = Duration::from_millis(self.progress_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    fn failed(&self) -> bool {
        self.error.lock().unwrap().is_some()
    }
}

/// Writes `bytes` in chunks, noting progress after each; false after an error.
fn write_batch(dest: &mut File, bytes: &[u8], shared: &Shared) -> bool {
    let mut ok = true;
    for chunk in bytes.chunks(CHUNK) {
        if let Err(e) = dest.write_all(chunk) {
            *shared.error.lock().unwrap() = Some(e);
            ok = false;
            break;
        }
        shared.progressed();
    }
    ok
}

fn write_lines(dest: &mut File, rx: Receiver<Message>, shared: &Shared) {
    for message in rx {
        match message {
            Message::Switch(file) => *dest = file,
            Message::Lines(bytes, lines) => {
                if !shared.failed() && write_batch(dest, &bytes, shared) {
                    shared.written_lines.fetch_add(lines, Ordering::Relaxed);
                }
                shared
                    .queued_bytes
                    .fetch_sub(bytes.len(), Ordering::Relaxed);
                shared.progressed();
            }
        }
    }
}

/// Buffers lines until `flush`, which queues them for the writing thread.
pub struct Writer {
    tx: Option<Sender<Message>>,
    done: Receiver<()>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    dropped_lines: u64,
    /// Set at the end when sockwatch stops waiting for the reader: what does not
    /// fit from then on is dropped.
    giving_up: bool,
}

/// How the queue ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    /// Lines that never reached the output: dropped while it was not read, or
    /// still queued when sockwatch stopped waiting.
    pub unwritten: u64,
    /// The output was closed (a broken pipe).
    pub closed: bool,
}

impl Writer {
    /// Starts the writing thread for `dest`.
    pub fn start(mut dest: File) -> io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let shared = Arc::new(Shared::new());
        let theirs = shared.clone();
        thread::Builder::new()
            .name("output".into())
            .spawn(move || {
                write_lines(&mut dest, rx, &theirs);
                drop(done_tx);
            })?;
        Ok(Writer {
            tx: Some(tx),
            done,
            shared,
            buf: Vec::with_capacity(1 << 16),
            dropped_lines: 0,
            giving_up: false,
        })
    }

    /// Writes go to `file` from now on, after everything already queued.
    pub fn switch_to(&mut self, file: File) -> io::Result<()> {
        self.flush()?;
        // What could not be queued yet goes to the old file's queue all the same:
        // its lines were meant for it.
        self.queue();
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Switch(file));
        }
        Ok(())
    }

    /// Lines the reader has taken so far.
    pub fn written(&self) -> u64 {
        self.shared.written_lines.load(Ordering::Relaxed)
    }

    /// Lines dropped so far because the output was not read.
    pub fn dropped(&self) -> u64 {
        self.dropped_lines
    }

    fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether the reader has stopped reading: lines wait, and it has taken
    /// nothing for `STALL`.
    pub fn stalled(&self) -> bool {
        self.queued_bytes() > 0 && self.shared.since_progress() >= STALL
    }

    /// Whether enough lines are buffered to hand them over (`flush`) before more.
    pub fn batch_full(&self) -> bool {
        self.buf.len() >= BATCH_LIMIT
    }

    /// Whether the poll loop should wait for room before it reads more events:
    /// buffered lines do not fit in the queue, and the reader is still reading.
    pub fn must_wait(&self) -> bool {
        !self.giving_up
            && !self.shared.failed()
            && self.queued_bytes() + self.buf.len() > QUEUE_LIMIT
            && !self.stalled()
    }

    /// Waits up to `wait` for the reader to make room, then queues what is
    /// buffered if it fits; true when the poll loop may read again.
    pub fn wait_for_room(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let (lock, cvar) = &self.shared.room;
        let mut guard = lock.lock().unwrap();
        while self.must_wait() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Woken after each write; checked at least every 50 ms for a stall.
            let step = (deadline - now).min(Duration::from_millis(50));
            guard = cvar.wait_timeout(guard, step).unwrap().0;
        }
        drop(guard);
        let _ = self.flush();
        !self.must_wait()
    }

    /// From now on, drop what does not fit instead of waiting (the end of a run
    /// that may not wait longer).
    pub fn give_up_waiting(&mut self) {
        self.giving_up = true;
    }

    /// Hands the buffered lines to the writing thread, whatever the queue holds.
    fn queue(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let lines = self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let s = &self.shared;
        // The reader's time to take them starts now.
        if s.queued_bytes.fetch_add(self.buf.len(), Ordering::Relaxed) == 0 {
            s.mark();
        }
        s.queued_lines.fetch_add(lines, Ordering::Relaxed);
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 16));
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Lines(bytes, lines));
        }
    }

    /// Queues what is buffered, then waits for the writing thread to finish while
    /// `keep_waiting` says so (asked every 50 ms with the lines written so far).
    pub fn finish(mut self, mut keep_waiting: impl FnMut(u64) -> bool) -> Finished {
        let _ = self.flush();
        self.queue();
        drop(self.tx.take());
        loop {
            match self.done.recv_timeout(Duration::from_millis(50)) {
                Err(RecvTimeoutError::Timeout)
                    if keep_waiting(self.shared.written_lines.load(Ordering::Relaxed)) =>
                {
                    continue
                }
                _ => break,
            }
        }
        let s = &self.shared;
        let queued = s.queued_lines.load(Ordering::Relaxed);
        let written = s.written_lines.load(Ordering::Relaxed);
        let error = s.error.lock().unwrap();
        let closed = error
            .as_ref()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe);
        Finished {
            // Once the output is closed, nothing more was meant to reach it.
            unwritten: if closed {
                0
            } else {
                self.dropped_lines + queued.saturating_sub(written)
            },
            closed,
        }
    }
}

impl Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    /// Hands the buffered lines to the writing thread when the queue has room for
    /// them. Without room they stay buffered (the poll loop waits, `must_wait`),
    /// unless the reader has stopped reading or sockwatch stopped waiting for it:
    /// then they are dropped and counted. Reports a write error the thread met.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.shared.error.lock().unwrap().as_ref() {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.queued_bytes() + self.buf.len() <= QUEUE_LIMIT {
            self.queue();
        } else if self.giving_up || self.stalled() {
            self.dropped_lines += self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (File, File) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    #[test]
    fn lines_arrive_in_order() {
        let (mut r, w) = pipe();
        let mut out = Writer::start(w).unwrap();
        for i in 0..1000 {
            writeln!(out, "line {i}").unwrap();
            if i % 7 == 0 {
                out.flush().unwrap();
            }
        }
        assert_eq!(out.finish(|_| true), Finished::default());
        let mut text = String::new();
        r.read_to_string(&mut text).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
    }

    /// Writes `n` lines of 100 bytes as the poll loop does: a batch, then a wait
    /// for room whenever the writer asks for one. Returns how often it waited.
    fn write_as_the_loop_does(out: &mut Writer, n: usize) -> u32 {
        let line = [b'x'; 99];
        let mut waits = 0;
        for i in 0..n {
            out.write_all(&line).unwrap();
            out.write_all(b"\n").unwrap();
            if i % 1000 == 999 {
                out.flush().unwrap();
            }
            while out.must_wait() {
                waits += 1;
                out.wait_for_room(Duration::from_millis(100));
            }
        }
        out.flush().unwrap();
        waits
    }

    #[test]
    fn a_slow_reader_gets_every_line() {
        let (mut r, w) = pipe();
        let reader = thread::spawn(move || {
            // 40 MB at about 30 MB/s, in reads of a pipe's 64 KiB with pauses.
            let mut buf = vec![0u8; 1 << 16];
            let (mut total, mut lines) = (0usize, 0usize);
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        total += n;
                        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            (total, lines)
        });
        let mut out = Writer::start(w).unwrap();
        let waits = write_as_the_loop_does(&mut out, 400_000);
        assert!(waits > 0, "the queue never filled");
        assert_eq!(out.dropped(), 0);
        assert_eq!(out.finish(|_| true), Finished::default());
        assert_eq!(reader.join().unwrap(), (40_000_000, 400_000));
    }

    #[test]
    fn a_reader_that_stops_costs_lines_not_time() {
        let (r, w) = pipe();
        let mut out = Writer::start(w).unwrap();
        let started = Instant::now();
        // 40 MB into a pipe nobody reads: the queue takes 16 MiB, the loop waits a
        // second for the reader, then what does not fit is counted.
        write_as_the_loop_does(&mut out, 400_000);
        let took = started.elapsed();
        assert!(took < STALL + Duration::from_secs(2), "{took:?}");
        assert!(out.stalled());
        assert!(out.dropped() > 200_000, "{}", out.dropped());
        let mut asked = 0;
        let finished = out.finish(|_| {
            asked += 1;
            asked < 3
        });
        assert_eq!(asked, 3);
        // Only what the pipe itself took (64 KiB at most) was written.
        assert!(finished.unwritten > 400_000 - 700, "{finished:?}");
        assert!(!finished.closed);
        drop(r);
    }

    #[test]
    fn giving_up_drops_what_does_not_fit_at_once() {
        let (r, w) = pipe();
        let mut out = Writer::start(w).unwrap();
        out.give_up_waiting();
        let started = Instant::now();
        assert_eq!(write_as_the_loop_does(&mut out, 400_000), 0);
        assert!(started.elapsed() < STALL);
        assert!(out.dropped() > 200_000, "{}", out.dropped());
        drop(r);
    }

    #[test]
    fn a_closed_reader_is_an_error_then_a_quiet_end() {
        let (r, w) = pipe();
        drop(r);
        let mut out = Writer::start(w).unwrap();
        writeln!(out, "one").unwrap();
        out.flush().unwrap();
        let mut error = None;
        for _ in 0..100 {
            writeln!(out, "more").unwrap();
            if let Err(e) = out.flush() {
                error = Some(e);
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(error.unwrap().kind(), io::ErrorKind::BrokenPipe);
        assert!(!out.must_wait());
        let finished = out.finish(|_| true);
        assert!(finished.closed);
        assert_eq!(finished.unwritten, 0);
    }
}
