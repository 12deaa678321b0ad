//! Attaching the loaded programs: links for most, return probes made in tracefs
//! for the kprobe mode where sockwatch may, and COMMAND's cgroup for --deny; and
//! why an attach failed.

use anyhow::{anyhow, Context, Result};
use libbpf_rs::skel::Skel;

use super::kretprobe;
use super::live::ReturnMisses;
use super::plan::Kernel;
use super::probes::{self, Attach, Probe};
use crate::model::abi::SockwatchSkel;
use crate::os::{procs, system};

/// What attaching made: the links, the tracefs return probes, and how their
/// misses are counted.
pub(super) struct Attached {
    pub(super) links: Vec<libbpf_rs::Link>,
    pub(super) returns: Vec<kretprobe::ReturnProbe>,
    pub(super) return_misses: ReturnMisses,
}

/// Attaches every loaded program of `chosen` but the cgroup hooks.
pub(super) fn attach(
    skel: &SockwatchSkel<'static>,
    chosen: &[&'static Probe],
    kernel: &Kernel,
) -> Result<Attached> {
    let tracefs = std::path::Path::new(system::TRACEFS);
    let has_returns = chosen.iter().any(|p| p.attach == Attach::Kretprobe);
    let return_misses = if !has_returns {
        ReturnMisses::None
    } else if system::tracefs_for_probes().is_some_and(kretprobe::available) {
        kretprobe::remove_stale(tracefs, procs::alive);
        ReturnMisses::Tracefs
    } else if kernel.kprobe_links_count_misses() {
        ReturnMisses::Links
    } else {
        ReturnMisses::Uncounted
    };
    let mut links = Vec::new();
    let mut returns = Vec::new();
    for prog in skel.object().progs_mut() {
        if !prog.autoload() {
            continue;
        }
        let name = prog.name().to_string_lossy().into_owned();
        let p = chosen.iter().find(|p| p.program == name).unwrap();
        // Attached to COMMAND's cgroup once it has one (Tracer::decide_in).
        if p.attach == Attach::Cgroup {
            continue;
        }
        if p.attach == Attach::Kretprobe && return_misses == ReturnMisses::Tracefs {
            let probe = kretprobe::attach(tracefs, &prog, p.target)
                .with_context(|| format!("attaching {name} ({})", probes::describe(p)))?;
            returns.push(probe);
            continue;
        }
        let link = prog.attach().map_err(|e| {
            let hint = attach_hint(p.attach, e.kind());
            anyhow!("attaching {name} ({}){hint}: {e}", probes::describe(p))
        })?;
        links.push(link);
    }
    Ok(Attached {
        links,
        returns,
        return_misses,
    })
}

/// The likely cause of an attach error, for the message.
fn attach_hint(attach: Attach, kind: libbpf_rs::ErrorKind) -> String {
    use libbpf_rs::ErrorKind::{NotFound, PermissionDenied};
    let perf_event = matches!(
        attach,
        Attach::Kprobe | Attach::Kretprobe | Attach::Tracepoint
    );
    match kind {
        NotFound if matches!(attach, Attach::Kprobe | Attach::Kretprobe) => {
            " (kprobes need CONFIG_KPROBES)".into()
        }
        // Debian's and Ubuntu's kernels refuse perf events above level 2 without CAP_SYS_ADMIN.
        PermissionDenied if perf_event => match system::perf_event_paranoid() {
            Some(level) if level > 2 => format!(
                " (kernel.perf_event_paranoid is {level}: set it to 2, or grant CAP_SYS_ADMIN)"
            ),
            _ => String::new(),
        },
        _ => String::new(),
    }
}
