//! The output queue: lines reach stdout or the --output file on a thread of their
//! own, so a reader that stops reading never holds up the tracer's own control
//! (signals, --duration, COMMAND's exit). What the queue has no room for is
//! counted and reported, like lost events, never waited for.

use std::fs::File;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Most bytes waiting for a slow reader; a batch that would go beyond is dropped.
pub const QUEUE_LIMIT: usize = 16 << 20;

enum Message {
    Lines(Vec<u8>, u64),
    /// Write from now on to this file (the old one was rotated away).
    Switch(File),
}

#[derive(Default)]
struct Shared {
    queued_bytes: AtomicUsize,
    queued_lines: AtomicU64,
    written_lines: AtomicU64,
    /// The first write error; nothing is written after it.
    error: Mutex<Option<io::Error>>,
}

/// Buffers lines until `flush`, which queues them for the writing thread.
pub struct Writer {
    tx: Option<Sender<Message>>,
    done: Receiver<()>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    dropped_lines: u64,
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

fn write_lines(dest: &mut File, rx: Receiver<Message>, shared: &Shared) {
    for message in rx {
        match message {
            Message::Switch(file) => *dest = file,
            Message::Lines(bytes, lines) => {
                let failed = shared.error.lock().unwrap().is_some();
                if !failed {
                    match dest.write_all(&bytes) {
                        Ok(()) => {
                            shared.written_lines.fetch_add(lines, Ordering::Relaxed);
                        }
                        Err(e) => *shared.error.lock().unwrap() = Some(e),
                    }
                }
                shared
                    .queued_bytes
                    .fetch_sub(bytes.len(), Ordering::Relaxed);
            }
        }
    }
}

impl Writer {
    /// Starts the writing thread for `dest`.
    pub fn start(mut dest: File) -> io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let shared = Arc::new(Shared::default());
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
        })
    }

    /// Writes go to `file` from now on, after everything already queued.
    pub fn switch_to(&mut self, file: File) -> io::Result<()> {
        self.flush()?;
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Switch(file));
        }
        Ok(())
    }

    /// Lines dropped so far because the output was not read.
    pub fn dropped(&self) -> u64 {
        self.dropped_lines
    }

    /// Queues what is buffered, then waits for the writing thread to finish while
    /// `keep_waiting` says so (asked every 50 ms with the lines written so far).
    pub fn finish(mut self, mut keep_waiting: impl FnMut(u64) -> bool) -> Finished {
        let _ = self.flush();
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

    /// Hands the buffered lines to the writing thread, or drops and counts them
    /// when the queue is full. Reports a write error the thread met.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.shared.error.lock().unwrap().as_ref() {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let lines = self.buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let s = &self.shared;
        if s.queued_bytes.load(Ordering::Relaxed) + self.buf.len() > QUEUE_LIMIT {
            self.dropped_lines += lines;
            self.buf.clear();
            return Ok(());
        }
        s.queued_bytes.fetch_add(self.buf.len(), Ordering::Relaxed);
        s.queued_lines.fetch_add(lines, Ordering::Relaxed);
        let bytes = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 16));
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Lines(bytes, lines));
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

    #[test]
    fn a_reader_that_stops_costs_lines_not_time() {
        let (r, w) = pipe();
        let mut out = Writer::start(w).unwrap();
        let line = [b'x'; 99];
        // 40 MB into a pipe nobody reads: the queue takes 16 MiB, the rest is counted.
        for _ in 0..400_000 {
            out.write_all(&line).unwrap();
            out.write_all(b"\n").unwrap();
            out.flush().unwrap();
        }
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
        let finished = out.finish(|_| true);
        assert!(finished.closed);
        assert_eq!(finished.unwritten, 0);
    }
}
