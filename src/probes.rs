//! The BPF skeleton: choosing programs, setting filters, loading and attaching.

use std::mem::MaybeUninit;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};

use crate::cli::{Config, EventSet, MAX_NAMES, MAX_PIDS};
use crate::event::Kind;

mod skel {
    #![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/sockwatch.skel.rs"));
}

pub use skel::types;
use skel::{SockwatchSkel, SockwatchSkelBuilder};

// SAFETY: these are repr(C) structs of integers and byte arrays generated from the
// BPF ABI header; every bit pattern is a valid value.
unsafe impl plain::Plain for types::event {}
unsafe impl plain::Plain for types::exec_event {}

/// One BPF program: the tracepoint it hooks and the events that need it.
pub struct Probe {
    pub program: &'static str,
    /// `category/name` under tracefs' events directory.
    pub tracepoint: &'static str,
    pub serves: &'static [Kind],
}

/// Every program in the object. CLOSE needs the byte counts and socket births;
/// CLOSE and CONNECT need close, exec and exit to retire socket state.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "process_exec",
        tracepoint: "sched/sched_process_exec",
        serves: &[Kind::Exec, Kind::Close, Kind::Connect],
    },
    Probe {
        program: "process_fork",
        tracepoint: "sched/sched_process_fork",
        serves: &[Kind::Fork, Kind::Close, Kind::Connect],
    },
    Probe {
        program: "process_exit",
        tracepoint: "sched/sched_process_exit",
        serves: &[Kind::Exit, Kind::Close, Kind::Connect],
    },
    Probe {
        program: "sock_set_state",
        tracepoint: "sock/inet_sock_set_state",
        serves: &[Kind::Connect],
    },
    Probe {
        program: "enter_connect",
        tracepoint: "syscalls/sys_enter_connect",
        serves: &[Kind::Connect],
    },
    Probe {
        program: "exit_connect",
        tracepoint: "syscalls/sys_exit_connect",
        serves: &[Kind::Connect],
    },
    Probe {
        program: "exit_listen",
        tracepoint: "syscalls/sys_exit_listen",
        serves: &[Kind::Listen],
    },
    Probe {
        program: "exit_bind",
        tracepoint: "syscalls/sys_exit_bind",
        serves: &[Kind::Listen],
    },
    Probe {
        program: "exit_accept4",
        tracepoint: "syscalls/sys_exit_accept4",
        serves: &[Kind::Accept, Kind::Close],
    },
    Probe {
        program: "exit_accept",
        tracepoint: "syscalls/sys_exit_accept",
        serves: &[Kind::Accept, Kind::Close],
    },
    Probe {
        program: "send_length",
        tracepoint: "sock/sock_send_length",
        serves: &[Kind::Send, Kind::Close],
    },
    Probe {
        program: "recv_length",
        tracepoint: "sock/sock_recv_length",
        serves: &[Kind::Recv, Kind::Close],
    },
    Probe {
        program: "exit_recvfrom",
        tracepoint: "syscalls/sys_exit_recvfrom",
        serves: &[Kind::Recv],
    },
    Probe {
        program: "exit_recvmsg",
        tracepoint: "syscalls/sys_exit_recvmsg",
        serves: &[Kind::Recv],
    },
    Probe {
        program: "exit_socket",
        tracepoint: "syscalls/sys_exit_socket",
        serves: &[Kind::Close],
    },
    Probe {
        program: "enter_close",
        tracepoint: "syscalls/sys_enter_close",
        serves: &[Kind::Close, Kind::Connect],
    },
];

/// The probes the selected events need.
pub fn needed(events: EventSet) -> impl Iterator<Item = &'static Probe> {
    PROBES
        .iter()
        .filter(move |p| p.serves.iter().any(|k| events.contains(*k)))
}

/// The loaded and attached BPF object. Dropping it detaches everything.
pub struct Tracer<'obj> {
    pub skel: SockwatchSkel<'obj>,
    /// Dropping a link detaches its program.
    pub links: Vec<Link>,
}

impl Tracer<'_> {
    /// Sums a per-CPU counter (`enum counter`).
    pub fn counter(&self, which: types::counter) -> Result<u64> {
        let key = which.0.to_ne_bytes();
        let per_cpu = self
            .skel
            .maps
            .counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading the event counters")?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .filter_map(|v| {
                v.get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
            })
            .sum())
    }
}

/// Processes with sockets are fewer than sockets, but a tiny socket table must not
/// leave a process's sockets unreleased at its exit.
const MIN_OWNERS: u32 = 4096;

/// A load error, with the likely cause when the kernel could not allocate the maps.
fn load_error(e: libbpf_rs::Error, cfg: &Config) -> anyhow::Error {
    if e.kind() == libbpf_rs::ErrorKind::OutOfMemory {
        return anyhow::Error::new(e).context(format!(
            "the kernel could not allocate the event buffer ({} bytes) and socket table ({} sockets): try a smaller --buffer-size or --max-sockets",
            cfg.buffer_size, cfg.max_sockets
        ));
    }
    anyhow::Error::new(e).context("loading the BPF programs (try --verbose)")
}

/// Packs names the way the kernel stores comm: 16 NUL-padded bytes as two words.
fn name_words(name: &[u8]) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    bytes[..name.len()].copy_from_slice(name);
    [
        u64::from_ne_bytes(bytes[..8].try_into().unwrap()),
        u64::from_ne_bytes(bytes[8..].try_into().unwrap()),
    ]
}

/// Opens the object, sets the read-only filters, loads the needed programs and attaches them.
pub fn start<'obj>(
    cfg: &Config,
    start_ns: u64,
    object: &'obj mut MaybeUninit<OpenObject>,
) -> Result<Tracer<'obj>> {
    let mut open = SockwatchSkelBuilder::default()
        .open(object)
        .context("opening the BPF object")?;

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the BPF object has no read-only data")?;
    assert!(cfg.names.len() <= MAX_NAMES && cfg.pids.len() <= MAX_PIDS);
    for (slot, name) in rodata.names.iter_mut().zip(&cfg.names) {
        *slot = name_words(name);
    }
    rodata.n_names = cfg.names.len() as u32;
    rodata.pids[..cfg.pids.len()].copy_from_slice(&cfg.pids);
    rodata.n_pids = cfg.pids.len() as u32;
    rodata.selected = cfg.events.0;
    rodata.start_ns = start_ns;

    // Sizes the operator chose; the kernel allocates them at load.
    let maps = &mut open.maps;
    maps.events
        .set_max_entries(cfg.buffer_size as u32)
        .context("sizing the event buffer")?;
    maps.socks
        .set_max_entries(cfg.max_sockets)
        .context("sizing the socket table")?;
    maps.owners
        .set_max_entries(cfg.max_sockets.max(MIN_OWNERS))
        .context("sizing the owner table")?;

    let wanted: Vec<&str> = needed(cfg.events).map(|p| p.program).collect();
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if !PROBES.iter().any(|p| p.program == name) {
            bail!("BPF program {name} has no entry in the probe table");
        }
        prog.set_autoload(wanted.contains(&name.as_str()));
    }

    let skel = open.load().map_err(|e| load_error(e, cfg))?;
    let mut links = Vec::new();
    for prog in skel.object().progs_mut() {
        if !prog.autoload() {
            continue;
        }
        let name = prog.name().to_string_lossy().into_owned();
        let tp = PROBES
            .iter()
            .find(|p| p.program == name)
            .map_or("?", |p| p.tracepoint);
        links.push(
            prog.attach()
                .with_context(|| format!("attaching {name} to tracepoint {tp}"))?,
        );
    }
    Ok(Tracer { skel, links })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_is_in_the_table_and_back() {
        let mut object = MaybeUninit::uninit();
        let open = SockwatchSkelBuilder::default().open(&mut object).unwrap();
        let names: Vec<String> = open
            .open_object()
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        for p in PROBES {
            assert!(
                names.iter().any(|n| n == p.program),
                "{} is not in the object",
                p.program
            );
        }
        assert_eq!(names.len(), PROBES.len());
        for n in &names {
            assert!(n.len() <= 15, "{n} is longer than the kernel keeps");
        }
    }

    #[test]
    fn deselected_events_load_nothing_of_theirs() {
        let only_exec: Vec<_> = needed(EventSet(Kind::Exec.bit()))
            .map(|p| p.program)
            .collect();
        assert_eq!(only_exec, ["process_exec"]);
        let accept: Vec<_> = needed(EventSet(Kind::Accept.bit()))
            .map(|p| p.program)
            .collect();
        assert_eq!(accept, ["exit_accept4", "exit_accept"]);
        // CLOSE's totals need the byte counters even when SEND/RECV are not shown.
        let close: Vec<_> = needed(EventSet(Kind::Close.bit()))
            .map(|p| p.program)
            .collect();
        assert!(close.contains(&"send_length") && close.contains(&"recv_length"));
        assert_eq!(needed(EventSet::ALL).count(), PROBES.len());
    }

    #[test]
    fn names_pack_like_comm() {
        let w = name_words(b"redis-server");
        let mut bytes = w[0].to_ne_bytes().to_vec();
        bytes.extend(w[1].to_ne_bytes());
        assert_eq!(&bytes[..12], b"redis-server");
        assert!(bytes[12..].iter().all(|&b| b == 0));
    }
}
