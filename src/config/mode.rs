//! The kernel mechanism a run attaches with, and where its events go: the choices
//! `--probe` and `--buffer` make.

use std::fmt;

/// The kernel mechanism a run attaches with. Each mode loads one variant of each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// fentry/fexit on the kernel's socket functions (5.5+, needs BTF)
    Fentry,
    /// kprobes on the same functions
    Kprobe,
    /// tracepoints: the 6.3 send/receive tracepoints and syscall tracepoints
    Tracepoint,
}

impl Mode {
    /// The order `--probe auto` tries them in: cheapest first.
    pub const PREFERENCE: [Mode; 3] = [Mode::Fentry, Mode::Kprobe, Mode::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Fentry => "fentry",
            Mode::Kprobe => "kprobe",
            Mode::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where events go: the ring buffer (5.8+), or per-CPU perf buffers before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Buffer {
    /// one ring buffer shared by all CPUs
    Ring,
    /// per-CPU perf buffers, merged into time order by sockwatch
    Perf,
}

impl Buffer {
    pub fn name(self) -> &'static str {
        match self {
            Buffer::Ring => "ring buffer",
            Buffer::Perf => "perf buffer",
        }
    }
}
