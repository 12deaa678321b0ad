//! Checks of what the kernel and our privileges allow, before anything is loaded.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::probes::Probe;

const BTF: &str = "/sys/kernel/btf/vmlinux";
pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set from /proc/self/status.
fn effective_caps() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/self/status")?;
    u64::from_str_radix(hex.trim(), 16).context("parsing CapEff")
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Fails with one line naming what is missing: privileges, BTF, tracefs, tracepoints.
pub fn preflight<'a>(probes: impl IntoIterator<Item = &'a Probe>) -> Result<()> {
    let caps = effective_caps()?;
    let may_trace = has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
    if !may_trace {
        bail!("permission denied: run as root (or with CAP_BPF and CAP_PERFMON)");
    }
    if !Path::new(BTF).exists() {
        bail!("this kernel has no BTF ({BTF} is missing): sockwatch needs CONFIG_DEBUG_INFO_BTF=y");
    }
    let events = Path::new(TRACEFS).join("events");
    if !events.exists() {
        mount_tracefs()?;
    }
    for p in probes {
        if !events.join(p.tracepoint).exists() {
            let (cat, name) = p.tracepoint.split_once('/').unwrap_or(("", p.tracepoint));
            bail!(
                "this kernel lacks the tracepoint {cat}:{name}{}",
                if name.starts_with("sock_") {
                    " (added in Linux 6.3; older kernels can run --events exec,exit,listen,connect,accept)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

fn mount_tracefs() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some("nodev"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("tracefs is not mounted and mounting it on {TRACEFS} failed"))
}

/// The first of these pids that names no running process.
pub fn missing_pid(pids: &[u32]) -> Option<u32> {
    pids.iter()
        .copied()
        .find(|pid| !Path::new("/proc").join(pid.to_string()).exists())
}
