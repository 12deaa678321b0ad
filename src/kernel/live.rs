//! The loaded object at run time: what the poll loop asks of the kernel (the event
//! buffer, losses, a rule's first hit, COMMAND's tree), how the run settles (the
//! last sweep, then detaching) and what it harvests after the drain.

use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore, MapFlags};

use super::kretprobe;
use super::probes;
use crate::config::mode::{Buffer, Mode};
use crate::model::abi::{types, SockwatchSkel};
use crate::model::event::{Tally, UnixAddr, UnixEnds};
use crate::model::losses::{Loss, Losses};
use crate::os::{procs, system};

/// The `followed` map's mark for COMMAND's tree (`enum followed_by`, one byte).
const FROM_COMMAND: u8 = types::followed_by::FOLLOWED_FROM_COMMAND.0 as u8;

/// The loaded and attached BPF object, the only way the poll loop reaches the
/// kernel. Dropping it detaches everything.
pub struct Live {
    pub(super) skel: SockwatchSkel<'static>,
    /// Dropping a link detaches its program.
    pub(super) links: Vec<Link>,
    /// The kprobe mode's return probes made in tracefs, with room for every
    /// waiting thread (when sockwatch may write tracefs).
    pub(super) returns: Vec<kretprobe::ReturnProbe>,
    /// How the misses of the kprobe mode's return probes are counted.
    pub return_misses: ReturnMisses,
    /// Their misses when they were detached (the counts go with the probes).
    pub(super) missed_at_detach: Option<u64>,
    pub mode: Mode,
    pub buffer: Buffer,
}

/// How the misses of return probes are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMisses {
    /// No return probes: nothing to miss.
    None,
    /// Return probes in tracefs: `kprobe_profile` counts their misses.
    Tracefs,
    /// Return probes through perf: their links report misses (6.7+).
    Links,
    /// Return probes through perf on a kernel that does not count their misses.
    Uncounted,
}

/// What the run harvests from the kernel once the buffer is drained.
pub struct Harvest {
    /// How many events each --expect and --forbid rule matched, in their order.
    pub rule_hits: Vec<u64>,
    /// What the kernel added up for -c, and what the last sweep found in sockets
    /// released unseen.
    pub tallies: Vec<Tally>,
    /// Connects and sends --deny or --allow refused.
    pub denied: u64,
    /// --audit's destinations, and how many its table had no room for.
    pub destinations: Vec<types::destination>,
    pub unaudited: u64,
}

/// The event buffer's map, as the reader opens it.
pub enum EventBuffer<'a> {
    Ring(&'a libbpf_rs::MapMut<'static>),
    Perf(&'a libbpf_rs::MapMut<'static>),
}

impl Live {
    /// The event buffer to read.
    pub fn event_buffer(&self) -> EventBuffer<'_> {
        match self.buffer {
            Buffer::Ring => EventBuffer::Ring(&self.skel.maps.events),
            Buffer::Perf => EventBuffer::Perf(&self.skel.maps.perf_events),
        }
    }

    /// What the kernel could not see so far: its counters, the runs it skipped,
    /// the returns the kprobe mode missed.
    pub fn losses(&self) -> Result<Losses> {
        let mut now = Losses::default();
        for kind in Loss::ALL {
            if let Some(c) = kind.counter() {
                now.set(kind, self.counter(c)?);
            }
        }
        now.set(Loss::Skipped, self.skipped_runs());
        now.set(Loss::ReturnsMissed, self.returns_missed());
        Ok(now)
    }

    /// Ends tracing: the tracepoint mode's last look for releases no hook saw (while
    /// the exit hook still runs, so that a process exiting now is no miss), then
    /// detaching every program. Returns what -c had added up in those sockets.
    pub fn settle(&mut self) -> Result<Vec<Tally>> {
        let swept = self.sweep()?;
        self.detach();
        Ok(swept)
    }

    /// What the run leaves in the kernel's tables, once the buffer is drained;
    /// `rules`: how many --expect and --forbid rules there are.
    pub fn harvest(&self, rules: usize, swept: Vec<Tally>) -> Result<Harvest> {
        let (destinations, unaudited) = self.destinations()?;
        let mut tallies = swept;
        tallies.extend(self.tallies()?);
        Ok(Harvest {
            rule_hits: self.rule_hits(rules)?,
            tallies,
            denied: self.denied()?,
            destinations,
            unaudited,
        })
    }

    /// Detaches every program. Each detach waits for the kernel's grace period
    /// (about 70 ms here): done side by side, they share it, instead of adding up
    /// to seconds before a stop request is done.
    fn detach(&mut self) {
        self.missed_at_detach = Some(self.returns_missed());
        std::thread::scope(|scope| {
            for link in self.links.drain(..) {
                scope.spawn(move || drop(link));
            }
            for probe in self.returns.drain(..) {
                scope.spawn(move || drop(probe));
            }
        });
    }

    /// Calls whose return a return probe missed so far (0 where they are not counted).
    fn returns_missed(&self) -> u64 {
        if let Some(n) = self.missed_at_detach {
            return n;
        }
        match self.return_misses {
            ReturnMisses::Tracefs => {
                kretprobe::misses(std::path::Path::new(system::TRACEFS), &self.returns)
            }
            ReturnMisses::Links => self
                .links
                .iter()
                .filter_map(|l| libbpf_rs::query::LinkInfo::from_fd(l.as_fd()).ok())
                .map(|info| match info.info {
                    libbpf_rs::query::LinkTypeInfo::PerfEvent(p) => match p.event_type {
                        libbpf_rs::query::PerfEventType::Kprobe { missed, .. } => missed,
                        _ => 0,
                    },
                    _ => 0,
                })
                .sum(),
            ReturnMisses::None | ReturnMisses::Uncounted => 0,
        }
    }

    /// Runs of our programs the kernel skipped because one was already running on
    /// that CPU (it does so to avoid recursion; preemptible tracepoints make it
    /// happen under load on recent kernels). Each may have been an event.
    fn skipped_runs(&self) -> u64 {
        use libbpf_rs::libbpf_sys::{bpf_prog_get_info_by_fd, bpf_prog_info};
        use std::os::fd::{AsFd, AsRawFd};
        self.skel
            .object()
            .progs()
            .filter(|p| p.autoload())
            .map(|p| {
                let mut info = bpf_prog_info::default();
                let mut len = std::mem::size_of::<bpf_prog_info>() as u32;
                // SAFETY: `info` is a bpf_prog_info of `len` bytes; the fd is the program's.
                let rc =
                    unsafe { bpf_prog_get_info_by_fd(p.as_fd().as_raw_fd(), &mut info, &mut len) };
                if rc == 0 {
                    info.recursion_misses
                } else {
                    0
                }
            })
            .sum()
    }

    /// Traces COMMAND's `pid` and, as it forks, its descendants.
    pub(super) fn follow(&self, pid: u32) -> Result<()> {
        self.skel
            .maps
            .followed
            .update(&pid.to_ne_bytes(), &[FROM_COMMAND], MapFlags::ANY)
            .context("adding COMMAND to the traced processes")
    }

    /// The live processes of COMMAND's tree, as the kernel follows them: each is
    /// added at its fork, before it runs, and removed at its exit (while attached).
    pub fn command_tree(&self) -> Vec<u32> {
        let map = &self.skel.maps.followed;
        map.keys()
            .filter(|k| {
                map.lookup(k, MapFlags::ANY).ok().flatten().as_deref() == Some(&[FROM_COMMAND][..])
            })
            .filter_map(|k| Some(u32::from_ne_bytes(k.as_slice().try_into().ok()?)))
            .filter(|&pid| procs::alive(pid))
            .collect()
    }

    /// The tracepoint mode's last look for releases no hook saw: an entry whose
    /// owner has exited, with no other holder known, was let go unseen (a UDP
    /// socket's last reference in another thread's call). Counts them as missed,
    /// and returns what -c had added up in them.
    fn sweep(&self) -> Result<Vec<Tally>> {
        let mut tallies = Vec::new();
        if self.mode != Mode::Tracepoint {
            return Ok(tallies);
        }
        let socks = &self.skel.maps.socks;
        let names = self.unix_ends()?;
        let mut missed = 0u64;
        let mut held = None;
        for key in socks.keys() {
            let Some(st) = self.sock(&key)? else {
                continue;
            };
            let gone = if st.unowned != 0 {
                // Let go by its owner while another process held it: released where
                // no hook saw it (a unix-domain socket an untraced process closed)
                // once no process holds it any more.
                !held
                    .get_or_insert_with(procs::held_socket_inodes)
                    .contains(&st.ino)
            } else {
                // A zombie owner counts as gone: its exit walk has already run.
                !procs::alive(st.pid)
            };
            if gone {
                socks.delete(&key)?;
                missed += 1;
                tallies.extend(Tally::of_socket(&st, &names)?);
            }
        }
        if missed > 0 {
            self.add_to_counter(types::counter::CTR_MISSED, missed)?;
        }
        Ok(tallies)
    }

    fn add_to_counter(&self, which: types::counter, n: u64) -> Result<()> {
        let key = which.0.to_ne_bytes();
        let counters = &self.skel.maps.counters;
        let mut per_cpu = counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading the event counters")?
            .unwrap_or_default();
        if let Some(first) = per_cpu.first_mut() {
            let v = u64::from_ne_bytes(first[..8].try_into().unwrap()) + n;
            first[..8].copy_from_slice(&v.to_ne_bytes());
        }
        counters
            .update_percpu(&key, &per_cpu, MapFlags::ANY)
            .context("updating the event counters")
    }

    /// Sums a per-CPU counter (`enum counter`).
    fn counter(&self, which: types::counter) -> Result<u64> {
        let key = which.0.to_ne_bytes();
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading the event counters")?
            .unwrap_or_default();
        Ok(per_cpu.iter().map(|v| u64_at(v)).sum())
    }

    /// Attaches the --deny, --allow and --audit hooks to `cgroup` (a directory).
    /// Attached to the cgroup itself rather than through links, they stay with it
    /// if sockwatch is killed: COMMAND's tree stays refused until the cgroup goes.
    pub(super) fn decide_in(&mut self, cgroup: &std::fs::File) -> Result<()> {
        for prog in self.skel.object().progs() {
            let name = prog.name().to_string_lossy().into_owned();
            let Some(p) = probes::deciding().find(|p| p.program == name) else {
                continue;
            };
            if !prog.autoload() {
                continue;
            }
            // SAFETY: both descriptors are open for the call; the kernel checks the rest.
            let err = unsafe {
                libbpf_rs::libbpf_sys::bpf_prog_attach(
                    prog.as_fd().as_raw_fd(),
                    cgroup.as_raw_fd(),
                    prog.attach_type() as u32,
                    libbpf_rs::libbpf_sys::BPF_F_ALLOW_MULTI,
                )
            };
            if err != 0 {
                let e = std::io::Error::last_os_error();
                bail!("attaching {name} ({}): {e}", probes::describe(p));
            }
        }
        Ok(())
    }

    /// The connects and sends --deny or --allow refused.
    fn denied(&self) -> Result<u64> {
        self.counter(types::counter::CTR_DENIED)
    }

    /// --audit's destinations, and how many its table had no room for.
    fn destinations(&self) -> Result<(Vec<types::destination>, u64)> {
        let map = &self.skel.maps.destinations;
        let mut found = Vec::new();
        for key in map.keys() {
            let mut d = types::destination::default();
            if plain::copy_from_bytes(&mut d, &key).is_ok() {
                found.push(d);
            }
        }
        Ok((found, self.counter(types::counter::CTR_UNAUDITED)?))
    }

    /// How many events each --expect and --forbid rule matched, in their order.
    fn rule_hits(&self, rules: usize) -> Result<Vec<u64>> {
        (0..rules as u32)
            .map(|i| {
                let per_cpu = self
                    .skel
                    .maps
                    .rule_hits
                    .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                    .context("reading the assertions' matches")?
                    .unwrap_or_default();
                Ok(per_cpu.iter().map(|v| u64_at(v)).sum())
            })
            .collect()
    }

    /// What the kernel added up for -c: its rows (the totals of every CPU), and
    /// what sockets still open hold in their entries.
    fn tallies(&self) -> Result<Vec<Tally>> {
        let map = &self.skel.maps.tallies;
        let names = self.unix_ends()?;
        let mut rows = Vec::new();
        for raw in map.keys() {
            let mut key = types::tally_key::default();
            let Some(per_cpu) = map
                .lookup_percpu(&raw, MapFlags::ANY)
                .context("reading the summary's table")?
            else {
                continue;
            };
            if plain::copy_from_bytes(&mut key, &raw).is_err() {
                continue;
            }
            let mut total = types::tally::default();
            for value in per_cpu {
                let mut t = types::tally::default();
                if plain::copy_from_bytes(&mut t, &value).is_ok() {
                    total.sent += t.sent;
                    total.received += t.received;
                    total.events += t.events;
                }
            }
            rows.push(Tally::decode(&key, &total, &names)?);
        }
        for key in self.skel.maps.socks.keys() {
            if let Some(st) = self.sock(&key)? {
                rows.extend(Tally::of_socket(&st, &names)?);
            }
        }
        Ok(rows)
    }

    /// The unix-domain addresses of -c's rows, by the hash that stands for them.
    fn unix_ends(&self) -> Result<UnixEnds> {
        let map = &self.skel.maps.unix_ends;
        let mut names = UnixEnds::new();
        for raw in map.keys() {
            let name: Option<types::unix_name> =
                lookup_plain(map, &raw).context("reading the summary's unix-domain addresses")?;
            if let (Some(name), Ok(id)) = (name, <[u8; 8]>::try_from(raw.as_slice())) {
                names.insert(u64::from_ne_bytes(id), UnixAddr::from_raw(&name));
            }
        }
        Ok(names)
    }

    /// The socket table's entry under `key`, if it is still there.
    fn sock(&self, key: &[u8]) -> Result<Option<types::sock_state>> {
        Ok(lookup_plain(&self.skel.maps.socks, key)?)
    }

    /// The record of the first event rule `i` matched, once one has.
    pub fn first_hit(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.skel
            .maps
            .first_hits
            .lookup(&(i as u32).to_ne_bytes(), MapFlags::ANY)
            .context("reading the assertions' first matches")
    }
}

/// A per-CPU value's u64.
fn u64_at(value: &[u8]) -> u64 {
    value
        .get(..8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap()))
}

/// A map's value under `key` as the generated type `T`, if it is there.
pub(super) fn lookup_plain<T: plain::Plain + Default>(
    map: &impl MapCore,
    key: &[u8],
) -> libbpf_rs::Result<Option<T>> {
    let mut value = T::default();
    Ok(match map.lookup(key, MapFlags::ANY)? {
        Some(bytes) if plain::copy_from_bytes(&mut value, &bytes).is_ok() => Some(value),
        _ => None,
    })
}
