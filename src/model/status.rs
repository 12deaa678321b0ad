//! sockwatch's exit statuses: one table for the code, `--help`, the man page and
//! the README's table (which a test compares).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success, or COMMAND's own status.
    Success,
    /// Privileges, kernel support, BPF load or attach.
    Error,
    /// Bad arguments.
    Usage,
    /// --timeout before --count.
    Timeout,
    /// An assertion failed.
    Assertion,
    /// Nothing failed, but not everything could be seen.
    Undecided,
    /// COMMAND could not be run.
    CannotRun,
    /// COMMAND was not found.
    NotFound,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Success,
        Status::Error,
        Status::Usage,
        Status::Timeout,
        Status::Assertion,
        Status::Undecided,
        Status::CannotRun,
        Status::NotFound,
    ];

    pub const fn code(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Error => 1,
            Status::Usage => 2,
            Status::Timeout => 3,
            Status::Assertion => 4,
            Status::Undecided => 5,
            Status::CannotRun => 126,
            Status::NotFound => 127,
        }
    }

    /// What it means, as `--help` and the README say it.
    pub fn meaning(self) -> &'static str {
        match self {
            Status::Success => "success: interrupted (Ctrl-C, SIGTERM, SIGHUP without -o), --count reached, --duration elapsed, or the output was closed; with COMMAND, COMMAND's own status instead once its tree has exited (128+N if signal N ended it)",
            Status::Error => "error: privileges, kernel support, BPF load or attach",
            Status::Usage => "bad arguments",
            Status::Timeout => "--timeout elapsed before --count events were printed",
            Status::Assertion => "an assertion failed: an --expect matched no event, or a --forbid event was seen",
            Status::Undecided => "assertions undecided: none failed, but the kernel may not have seen an event (hook runs skipped, processes or calls not followed, processes left running; for an assertion about CLOSE, sockets untracked or CLOSE lines missed)",
            Status::CannotRun => "COMMAND could not be run (permissions, --user)",
            Status::NotFound => "COMMAND was not found",
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status.code())
    }
}
