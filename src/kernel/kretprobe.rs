//! Return probes with room for every waiting thread. A kretprobe made through
//! perf (libbpf's default) gets the kernel's default maxactive, max(10, 2 x CPUs):
//! with more threads waiting in the function at once, their returns are missed.
//! One defined through tracefs takes a maxactive of its own (`r4096:`), and its
//! misses are counted in `kprobe_profile`. sockwatch makes them there when it may
//! write tracefs (root), attaches its programs to them by their event ids, and
//! removes them when it detaches.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use libbpf_rs::{Link, ProgramMut};
use nix::libc;

/// The most the kernel allows (KRETPROBE_MAXACTIVE_MAX).
pub const MAXACTIVE: u32 = 4096;
/// Our events' group in tracefs, and the start of their names.
const GROUP: &str = "sockwatch";

fn kprobe_events(tracefs: &Path) -> PathBuf {
    tracefs.join("kprobe_events")
}

/// The event name for `function` in the process `pid`.
pub fn event_name(pid: u32, function: &str) -> String {
    format!("p{pid}_{function}")
}

fn write_events(tracefs: &Path, line: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(kprobe_events(tracefs))?
        .write_all(line.as_bytes())
}

/// Whether this process may define kprobe events in tracefs.
pub fn available(tracefs: &Path) -> bool {
    let path = kprobe_events(tracefs);
    nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// Removes the events that sockwatch processes no longer running left behind
/// (one that was killed before it could remove its own).
pub fn remove_stale(tracefs: &Path, alive: impl Fn(u32) -> bool) {
    let Ok(entries) = fs::read_dir(tracefs.join("events").join(GROUP)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = name
            .strip_prefix('p')
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = write_events(tracefs, &format!("-:{GROUP}/{name}\n"));
        }
    }
}

/// A tracefs return probe with our program attached. Dropping it detaches the
/// program, then removes the event.
pub struct ReturnProbe {
    /// Dropped first: the event cannot be removed while a perf event uses it.
    link: Option<Link>,
    tracefs: PathBuf,
    name: String,
}

impl Drop for ReturnProbe {
    fn drop(&mut self) {
        drop(self.link.take());
        let _ = write_events(&self.tracefs, &format!("-:{GROUP}/{}\n", self.name));
    }
}

impl ReturnProbe {
    /// The return probe's name in tracefs and `kprobe_profile`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// perf_event_open(2) for a tracepoint event `id`, on CPU 0 for every process (a
/// kprobe event fires wherever it is hit; the CPU only names the perf event).
fn open_tracepoint(id: u64) -> Result<OwnedFd> {
    use libbpf_rs::libbpf_sys::perf_event_attr;
    let mut attr = perf_event_attr {
        type_: libbpf_rs::libbpf_sys::PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<perf_event_attr>() as u32,
        config: id,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.__bindgen_anon_2.wakeup_events = 1;
    // SAFETY: `attr` is a perf_event_attr of the size it states.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const perf_event_attr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            libbpf_rs::libbpf_sys::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("perf_event_open");
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Defines a return probe on `function` with room for `MAXACTIVE` waiting
/// threads and attaches `prog` to it.
pub fn attach(tracefs: &Path, prog: &ProgramMut, function: &str) -> Result<ReturnProbe> {
    let name = event_name(std::process::id(), function);
    write_events(
        tracefs,
        &format!("r{MAXACTIVE}:{GROUP}/{name} {function}\n"),
    )
    .with_context(|| format!("defining a return probe on {function} in tracefs"))?;
    // From here on, dropping `probe` removes the event again.
    let mut probe = ReturnProbe {
        link: None,
        tracefs: tracefs.to_path_buf(),
        name,
    };
    let id_path = tracefs
        .join("events")
        .join(GROUP)
        .join(&probe.name)
        .join("id");
    let id: u64 = fs::read_to_string(&id_path)
        .with_context(|| format!("reading {}", id_path.display()))?
        .trim()
        .parse()
        .map_err(|e| anyhow!("reading {}: {e}", id_path.display()))?;
    let fd = open_tracepoint(id)?;
    // The link owns the perf event from now on and closes it when dropped.
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    match prog.attach_perf_event(raw) {
        Ok(link) => probe.link = Some(link),
        Err(e) => {
            // SAFETY: attaching failed, so `raw` is still ours alone.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
            return Err(e.into());
        }
    }
    Ok(probe)
}

/// Misses of our return probes so far, from tracefs's `kprobe_profile`: calls
/// whose return no instance was free for.
pub fn misses(tracefs: &Path, probes: &[ReturnProbe]) -> u64 {
    let Ok(profile) = fs::read_to_string(tracefs.join("kprobe_profile")) else {
        return 0;
    };
    profile_misses(&profile, probes.iter().map(ReturnProbe::name))
}

/// The misses `kprobe_profile` gives for the events named `names`.
fn profile_misses<'a>(profile: &str, names: impl Iterator<Item = &'a str>) -> u64 {
    let names: Vec<&str> = names.collect();
    profile
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let event = fields.next()?;
            let _hits = fields.next()?;
            let missed: u64 = fields.next()?.parse().ok()?;
            // Newer kernels print the group too.
            let event = event.rsplit('/').next()?;
            names.contains(&event).then_some(missed)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_read_for_our_events_only() {
        let profile = "  p7_tcp_recvmsg                                     120             3\n\
                       p7_udp_recvmsg  10 0\n\
                       other_probe  5 9\n\
                       sockwatch/p7_tcp_sendmsg 4 2\n";
        let names = ["p7_tcp_recvmsg", "p7_udp_recvmsg", "p7_tcp_sendmsg"];
        assert_eq!(profile_misses(profile, names.into_iter()), 5);
        assert_eq!(profile_misses(profile, ["nothing"].into_iter()), 0);
    }

    #[test]
    fn event_names_carry_the_pid() {
        assert_eq!(event_name(42, "tcp_recvmsg"), "p42_tcp_recvmsg");
    }
}
