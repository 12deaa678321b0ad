//! Loading: in the mode asked for, or the first of fentry, kprobe and tracepoint
//! that this kernel loads and attaches; each attempt opens, writes the knobs,
//! chooses the programs, loads and attaches. Loading is finished when `start`
//! returns: COMMAND is followed and its cgroup's hooks are attached by then.

use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapType, OpenObject};

use super::attach::{attach, Attached};
use super::live::Live;
use super::plan::{programs, Kernel, SELFTEST};
use super::{knobs, probes};
use crate::config::mode::{Buffer, Mode};
use crate::config::Config;
use crate::model::abi::SockwatchSkelBuilder;

/// What the run sets up before the kernel side starts: COMMAND's process, held
/// until tracing is ready, and its own cgroup for --deny, --allow and --audit.
#[derive(Default)]
pub struct Setup<'a> {
    pub command: Option<u32>,
    pub cgroup: Option<&'a std::fs::File>,
}

/// The buffer to use: the one asked for, else the ring buffer where the kernel has it.
pub fn choose_buffer(cfg: &Config) -> Buffer {
    cfg.buffer.unwrap_or_else(|| {
        if MapType::RingBuf.is_supported().unwrap_or(false) {
            Buffer::Ring
        } else {
            Buffer::Perf
        }
    })
}

/// Loads and attaches in the mode asked for, or the first that works here.
pub fn start(cfg: &Config, start_ns: u64, setup: &Setup) -> Result<Live> {
    let kernel = Kernel::read();
    let buffer = choose_buffer(cfg);
    if let Some(mode) = cfg.probe {
        return start_mode(cfg, mode, buffer, start_ns, &kernel, setup);
    }
    let mut failures = Vec::new();
    for mode in Mode::PREFERENCE {
        if buffer == Buffer::Perf && mode == Mode::Tracepoint {
            continue;
        }
        match start_mode(cfg, mode, buffer, start_ns, &kernel, setup) {
            Ok(tracer) => return Ok(tracer),
            // Every mode needs the same maps: no other mode would get them either.
            Err(e) if out_of_memory(&e) => return Err(e),
            Err(e) => failures.push(format!("{mode}: {e:#}")),
        }
    }
    bail!(
        "no attach mode works on this kernel: {}",
        failures.join("; ")
    )
}

/// One attempt in one mode. Each opens its own object, which the skeleton borrows
/// for as long as sockwatch runs; a failed attempt frees it.
fn start_mode(
    cfg: &Config,
    mode: Mode,
    buffer: Buffer,
    start_ns: u64,
    kernel: &Kernel,
    setup: &Setup,
) -> Result<Live> {
    let object = Box::into_raw(Box::new(MaybeUninit::<OpenObject>::uninit()));
    // SAFETY: `object` is a fresh allocation, borrowed only by this attempt.
    let result = start_in(
        unsafe { &mut *object },
        cfg,
        mode,
        buffer,
        start_ns,
        kernel,
        setup,
    );
    if result.is_err() {
        // SAFETY: what borrowed it (the open and the loaded skeleton) was dropped
        // inside start_in, and its error is 'static: nothing refers to it now.
        drop(unsafe { Box::from_raw(object) });
    }
    result
}

fn start_in(
    object: &'static mut MaybeUninit<OpenObject>,
    cfg: &Config,
    mode: Mode,
    buffer: Buffer,
    start_ns: u64,
    kernel: &Kernel,
    setup: &Setup,
) -> Result<Live> {
    if mode == Mode::Tracepoint && buffer == Buffer::Perf {
        bail!("the tracepoint mode needs the ring buffer (Linux 5.8; its tracepoints are 6.3)");
    }
    let chosen = programs(cfg, mode, kernel)?;
    let mut open = SockwatchSkelBuilder::default()
        .open(object)
        .context("opening the BPF object")?;
    knobs::write(&mut open, cfg, mode, buffer, start_ns, kernel)?;
    for mut prog in open.open_object_mut().progs_mut() {
        let name = prog.name().to_string_lossy().into_owned();
        if name == SELFTEST {
            prog.set_autoload(false);
            continue;
        }
        if !probes::PROBES.iter().any(|p| p.program == name) {
            bail!("BPF program {name} has no entry in the probe table");
        }
        prog.set_autoload(chosen.iter().any(|p| p.program == name));
    }

    let skel = open.load().map_err(|e| load_error(e, cfg, mode))?;
    if let Some(dir) = &cfg.cgroup {
        let fd = std::fs::File::open(dir)
            .with_context(|| format!("opening the cgroup {}", dir.display()))?;
        skel.maps
            .cgroups
            .update(
                &0u32.to_ne_bytes(),
                &fd.as_raw_fd().to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("setting the cgroup filter")?;
    }
    let Attached {
        links,
        returns,
        return_misses,
    } = attach(&skel, &chosen, kernel)?;
    let mut live = Live {
        skel,
        links,
        returns,
        return_misses,
        missed_at_detach: None,
        mode,
        buffer,
    };
    if let Some(pid) = setup.command {
        live.follow(pid)?;
    }
    if let Some(cgroup) = setup.cgroup {
        live.decide_in(cgroup)?;
    }
    Ok(live)
}

fn out_of_memory(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<libbpf_rs::Error>()
            .is_some_and(|e| e.kind() == libbpf_rs::ErrorKind::OutOfMemory)
    })
}

/// A load error, with the likely cause.
fn load_error(e: libbpf_rs::Error, cfg: &Config, mode: Mode) -> anyhow::Error {
    match e.kind() {
        libbpf_rs::ErrorKind::OutOfMemory => anyhow::Error::new(e).context(format!(
            "the kernel could not allocate the event buffer ({} bytes) and socket table ({} sockets) (a memory cgroup's limit counts them): try a smaller --buffer-size or --max-sockets",
            cfg.buffer_size, cfg.max_sockets
        )),
        libbpf_rs::ErrorKind::PermissionDenied if mode == Mode::Fentry => anyhow::Error::new(e)
            .context("the kernel refused fentry/fexit programs (a lockdown or LSM may forbid them)"),
        _ => anyhow::Error::new(e).context("loading the BPF programs (try --verbose)"),
    }
}
