//! What /proc says about running processes: threads given as pids, and hints for
//! names that match nothing.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Result};

use crate::model::names::COMM_LEN;
use crate::model::text::escape;

/// The thread-group id of a task id, and the process's name; None when no such task.
fn task(tid: u32) -> Option<(u32, Vec<u8>)> {
    let status = fs::read(format!("/proc/{tid}/status")).ok()?;
    let status = String::from_utf8_lossy(&status);
    let tgid = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()?;
    Some((tgid, comm(tgid).unwrap_or_default()))
}

/// A process's name: its main thread's, as `pgrep -x` matches it.
fn comm(pid: u32) -> Option<Vec<u8>> {
    let mut name = fs::read(format!("/proc/{pid}/comm")).ok()?;
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    Some(name)
}

/// The processes `--pid` names: a thread id stands for its process, with a note.
pub fn resolve_pids(pids: &[u32], notes: &mut Vec<String>) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for &pid in pids {
        let Some((tgid, name)) = task(pid) else {
            bail!("no process has pid {pid}");
        };
        if tgid != pid {
            notes.push(format!(
                "note: {pid} is a thread of process {tgid} ({}): tracing process {tgid}",
                escape(&name)
            ));
        }
        out.push(tgid);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A process's name as /proc has it (its group leader's), without the newline.
pub fn name_of(pid: u32) -> Option<Vec<u8>> {
    let mut name = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    if name.last() == Some(&b'\n') {
        name.pop();
    }
    Some(name)
}

/// The inodes of the sockets some process holds a descriptor to.
pub fn held_socket_inodes() -> std::collections::HashSet<u64> {
    let mut held = std::collections::HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return held;
    };
    for p in procs.flatten() {
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let ino: Option<u64> = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|n| n.parse().ok());
            held.extend(ino);
        }
    }
    held
}

/// Whether a process is alive: it exists and is not a zombie waiting to be reaped.
pub fn alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| stat.get(i + 2));
        state.is_some_and(|&s| s != b'Z' && s != b'X')
    })
}

/// Names of running processes (each once).
fn running_names() -> Vec<Vec<u8>> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut names: Vec<Vec<u8>> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(comm)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Notes for names no running process has: it may start later, but a path or a
/// prefix of a real name is the usual mistake.
pub fn name_hints(names: &[Vec<u8>], given: &[Vec<u8>]) -> Vec<String> {
    // Reading every process's name is start-up work only a NAME needs.
    if names.is_empty() {
        return Vec::new();
    }
    let running = running_names();
    names
        .iter()
        .zip(given)
        .filter(|(name, _)| !running.contains(name))
        .map(|(name, given)| hint(name, given, &running))
        .collect()
}

/// The note for one name that matched no running process.
fn hint(name: &[u8], given: &[u8], running: &[Vec<u8>]) -> String {
    let mut note = format!(
        "note: no running process is named \"{}\" (waiting for one to start)",
        escape(name)
    );
    if given.contains(&b'/') {
        let base = Path::new(std::ffi::OsStr::from_bytes(given))
            .file_name()
            .map_or(&[][..], |b| b.as_bytes());
        let base = &base[..base.len().min(COMM_LEN)];
        if !base.is_empty() {
            note += &format!(
                "; NAME is a process name, not a path: try \"{}\"",
                escape(base)
            );
        }
        return note;
    }
    let similar: Vec<String> = running
        .iter()
        .filter(|r| r.starts_with(name))
        .take(3)
        .map(|r| format!("\"{}\"", escape(r)))
        .collect();
    if !similar.is_empty() {
        note += &format!("; did you mean {}?", similar.join(" or "));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Vec<Vec<u8>> {
        ["bash", "nginx", "redis-server", "redis-sentinel"]
            .map(|s| s.as_bytes().to_vec())
            .to_vec()
    }

    #[test]
    fn a_prefix_suggests_the_full_names() {
        assert_eq!(
            hint(b"redis", b"redis", &running()),
            "note: no running process is named \"redis\" (waiting for one to start); \
             did you mean \"redis-server\" or \"redis-sentinel\"?"
        );
        assert_eq!(
            hint(b"postgres", b"postgres", &running()),
            "note: no running process is named \"postgres\" (waiting for one to start)"
        );
    }

    #[test]
    fn a_path_suggests_its_last_part() {
        assert_eq!(
            hint(b"/usr/sbin/nginx", b"/usr/sbin/nginx", &running()),
            "note: no running process is named \"/usr/sbin/nginx\" (waiting for one to \
             start); NAME is a process name, not a path: try \"nginx\""
        );
    }

    #[test]
    fn this_test_is_running_and_its_threads_stand_for_it() {
        let me = std::process::id();
        assert!(running_names().contains(&comm(me).unwrap()));
        let mut notes = Vec::new();
        assert_eq!(resolve_pids(&[me], &mut notes).unwrap(), [me]);
        assert!(notes.is_empty());
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            tx.send(nix::unistd::gettid().as_raw() as u32).unwrap();
            done_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        assert_eq!(resolve_pids(&[tid], &mut notes).unwrap(), [me]);
        assert!(notes[0].contains(&format!("{tid} is a thread of process {me}")));
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
