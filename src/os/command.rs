//! `-- COMMAND`: started once tracing is ready, watched, signalled, and its status passed on.

use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Gid, Pid, Uid, User};

use crate::model::status::Status;

/// A COMMAND checked and ready to start: its path found, its user looked up.
#[derive(Debug)]
pub struct Command {
    /// As given, for messages.
    program: String,
    path: CString,
    argv: Vec<CString>,
    /// --user: its uid, gid and groups, looked up before the fork.
    user: Option<(Uid, Gid, Vec<Gid>)>,
}

/// Why a COMMAND cannot start, with the status sockwatch exits with.
#[derive(Debug)]
pub struct CannotRun {
    pub status: Status,
    pub message: String,
}

impl Command {
    pub fn prepare(args: &[OsString], user: Option<&str>) -> Result<Command, CannotRun> {
        let program = &args[0];
        let shown = program.to_string_lossy();
        let path = find_program(Path::new(program)).ok_or_else(|| CannotRun {
            status: Status::NotFound,
            message: format!("{shown}: command not found"),
        })?;
        if !executable(&path) {
            return Err(CannotRun {
                status: Status::CannotRun,
                message: format!("{shown}: not an executable file"),
            });
        }
        let cstr = |s: &[u8]| {
            CString::new(s).map_err(|_| CannotRun {
                status: Status::CannotRun,
                message: "COMMAND and its arguments cannot contain NUL bytes".into(),
            })
        };
        let user = match user {
            None => None,
            Some(name) => {
                let found = match name.parse::<u32>() {
                    Ok(uid) => User::from_uid(Uid::from_raw(uid)),
                    Err(_) => User::from_name(name),
                };
                let u = found.ok().flatten().ok_or_else(|| CannotRun {
                    status: Status::CannotRun,
                    message: format!("--user {name}: no such user"),
                })?;
                let name = cstr(u.name.as_bytes())?;
                let groups = nix::unistd::getgrouplist(&name, u.gid).map_err(|e| CannotRun {
                    status: Status::CannotRun,
                    message: format!("--user {}: reading its groups: {}", u.name, e.desc()),
                })?;
                Some((u.uid, u.gid, groups))
            }
        };
        Ok(Command {
            program: shown.into_owned(),
            path: cstr(path.as_os_str().as_bytes())?,
            argv: args
                .iter()
                .map(|a| cstr(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            user,
        })
    }

    /// Forks the child, which waits until `Child::release` before it execs.
    pub fn spawn(&self) -> Result<Child> {
        let (gate_r, gate_w) = pipe2(OFlag::O_CLOEXEC).context("creating a pipe")?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).context("creating a pipe")?;
        // SAFETY: sockwatch has one thread here, and the child only calls
        // async-signal-safe functions before exec or _exit.
        match unsafe { fork() }.context("starting COMMAND")? {
            ForkResult::Child => {
                drop(gate_w);
                drop(err_r);
                let errno = self.exec_when_released(&gate_r);
                let _ = nix::unistd::write(&err_w, &(errno as i32).to_ne_bytes());
                // SAFETY: leaving the forked child without running the parent's exit code.
                unsafe { nix::libc::_exit(Status::CannotRun.code() as i32) }
            }
            ForkResult::Parent { child } => Ok(Child {
                program: self.program.clone(),
                pid: child,
                gate: Some(gate_w),
                errors: err_r,
                status: None,
            }),
        }
    }

    /// In the child: wait for the go, become the user, exec. Returns only on failure.
    fn exec_when_released(&self, gate: &OwnedFd) -> Errno {
        let mut byte = [0u8; 1];
        loop {
            match nix::unistd::read(gate, &mut byte) {
                Ok(1) => break,
                Err(Errno::EINTR) => continue,
                // sockwatch failed before tracing began: do not run untraced.
                // SAFETY: leaving the forked child without running the parent's exit code.
                _ => unsafe { nix::libc::_exit(Status::CannotRun.code() as i32) },
            }
        }
        // Rust ignores SIGPIPE; COMMAND expects the default, as a shell gives it.
        // SAFETY: restoring a default disposition.
        let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        if let Some((uid, gid, groups)) = &self.user {
            if let Err(e) = nix::unistd::setgroups(groups)
                .and_then(|()| nix::unistd::setgid(*gid))
                .and_then(|()| nix::unistd::setuid(*uid))
            {
                return e;
            }
        }
        match nix::unistd::execv(&self.path, &self.argv) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}

fn executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}

/// PATH lookup as a shell does it; a name with a slash is taken as a path.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return program.exists().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// A started COMMAND.
pub struct Child {
    program: String,
    pid: Pid,
    /// Writing to it lets the child exec.
    gate: Option<OwnedFd>,
    /// The child writes its errno here if exec fails; exec closes it.
    errors: OwnedFd,
    status: Option<u8>,
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the child exec, and waits until it has (or failed to).
    pub fn release(&mut self) -> Result<()> {
        let gate = self.gate.take().expect("released once");
        nix::unistd::write(&gate, b"g").context("starting COMMAND")?;
        drop(gate);
        let mut buf = [0u8; 4];
        let n = loop {
            match nix::unistd::read(&self.errors, &mut buf) {
                Err(Errno::EINTR) => continue,
                other => break other.context("starting COMMAND")?,
            }
        };
        if n == 4 {
            let errno = Errno::from_raw(i32::from_ne_bytes(buf));
            let _ = self.wait();
            bail!(CommandFailed(errno, self.program.clone()));
        }
        Ok(())
    }

    /// Its exit status as a shell reports it (128+N for signal N), once it has exited.
    /// Reaps, too, the processes of its tree that were left to sockwatch (a child
    /// subreaper): a daemon whose parent exited.
    pub fn try_wait(&mut self) -> Result<Option<u8>> {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code as u8),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as u8),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("waiting for COMMAND"),
            };
            if pid == self.pid {
                self.status = Some(status);
            }
        }
        Ok(self.status)
    }

    fn wait(&mut self) -> Result<u8> {
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to COMMAND and every process of its tree (`tree`, as it is now).
    /// A terminal's signal already reached its foreground process group: those in
    /// COMMAND's group are not sent it again.
    pub fn signal_tree(&self, sig: Signal, tree: &[u32], from_terminal: bool) {
        let group = nix::unistd::getpgid(Some(self.pid)).ok();
        let mut pids: Vec<u32> = tree.to_vec();
        if self.status.is_none() {
            pids.push(self.pid());
        }
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            let pid = Pid::from_raw(pid as i32);
            if from_terminal && group.is_some() && nix::unistd::getpgid(Some(pid)).ok() == group {
                continue;
            }
            let _ = kill(pid, sig);
        }
    }

    /// SIGTERM to it and every process of its tree (`tree` lists them as they are
    /// now), then SIGKILL to those left after `grace`. Returns its status.
    pub fn terminate(&mut self, grace: Duration, tree: impl Fn() -> Vec<u32>) -> Result<u8> {
        let start = Instant::now();
        let mut sig = Signal::SIGTERM;
        let mut signalled = HashSet::new();
        loop {
            let status = self.try_wait()?;
            // A process forked just before its parent died is listed: keep looking.
            let pids = tree();
            match status {
                Some(s) if pids.is_empty() => return Ok(s),
                // Stuck (uninterruptible) processes are left behind; COMMAND is gone.
                Some(s) if start.elapsed() > 2 * grace => return Ok(s),
                _ => {}
            }
            if sig == Signal::SIGTERM && start.elapsed() > grace {
                sig = Signal::SIGKILL;
                signalled.clear();
            }
            for pid in pids.into_iter().chain(status.is_none().then(|| self.pid())) {
                if signalled.insert(pid) {
                    let _ = kill(Pid::from_raw(pid as i32), sig);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// exec failed in the child.
#[derive(Debug)]
pub struct CommandFailed(pub Errno, pub String);

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot run {}: {}", self.1, self.0.desc())
    }
}

impl std::error::Error for CommandFailed {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path() {
        assert!(find_program(Path::new("sh")).is_some());
        assert_eq!(
            find_program(Path::new("/bin/sh")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(find_program(Path::new("/no/such/x")), None);
        assert!(find_program(Path::new("no-such-program-here")).is_none());
    }

    #[test]
    fn status_of_a_command_and_its_signal() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let mut c = Command::prepare(&args(&["sh", "-c", "exit 7"]), None)
            .unwrap()
            .spawn()
            .unwrap();
        c.release().unwrap();
        assert_eq!(c.wait().unwrap(), 7);
        let mut c = Command::prepare(&args(&["sleep", "30"]), None)
            .unwrap()
            .spawn()
            .unwrap();
        c.release().unwrap();
        assert_eq!(
            c.terminate(Duration::from_secs(5), Vec::new).unwrap(),
            128 + 15
        );
        let err = Command::prepare(&args(&["no-such-program-here"]), None).unwrap_err();
        assert_eq!(err.status, Status::NotFound);
        assert!(Command::prepare(&args(&["sh"]), Some("no-such-user-here")).is_err());
        let err = Command::prepare(&args(&["/etc/passwd"]), None).unwrap_err();
        assert_eq!(err.status, Status::CannotRun);
    }
}
