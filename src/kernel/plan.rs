//! The plan: which programs this kernel and these options load, from the probe
//! table and what the running kernel's BTF says it has.

use anyhow::{bail, Result};
use libbpf_rs::btf::types::{Func, FuncProto, Typedef};
use libbpf_rs::btf::Btf;

use super::probes::{self, Only, Probe};
use crate::config::mode::Mode;
use crate::config::Config;
use crate::model::event::ProtoFamily;
use crate::os::system;

/// What the running kernel's BTF says about the hooks.
pub(super) struct Kernel {
    pub(super) btf: Option<Btf<'static>>,
}

impl Kernel {
    pub(super) fn read() -> Kernel {
        Kernel {
            btf: Btf::from_vmlinux().ok(),
        }
    }

    pub(super) fn has_function(&self, name: &str) -> bool {
        self.btf
            .as_ref()
            .is_some_and(|b| b.type_by_name::<Func>(name).is_some())
    }

    /// A BTF-typed tracepoint exists when its `btf_trace_` typedef does.
    pub(super) fn has_tp_btf(&self, tracepoint: &str) -> bool {
        let name = tracepoint.rsplit('/').next().unwrap_or(tracepoint);
        self.btf.as_ref().is_some_and(|b| {
            b.type_by_name::<Typedef>(&format!("btf_trace_{name}"))
                .is_some()
        })
    }

    /// Before 5.19 the receive functions took `nonblock` before `flags` (kernel commit
    /// ec095263a965; src/bpf/lib/compat.h lists every such difference).
    pub(super) fn recv_has_nonblock(&self) -> bool {
        self.params("tcp_recvmsg") == Some(6)
    }

    /// Whether a kprobe's perf link reports its misses (kernel commit 3acf8ace6823,
    /// 6.7, which gave bpf_get_kprobe_info a `missed` argument).
    pub(super) fn kprobe_links_count_misses(&self) -> bool {
        self.params("bpf_get_kprobe_info").is_some_and(|n| n >= 7)
    }

    fn params(&self, function: &str) -> Option<usize> {
        let btf = self.btf.as_ref()?;
        let func = btf.type_by_name::<Func>(function)?;
        let proto = FuncProto::try_from(func.next_type()?).ok()?;
        Some(proto.len())
    }
}

/// Whether processes are traced by descent: COMMAND's tree, or --follow.
pub(super) fn follows(cfg: &Config) -> bool {
    !cfg.command.is_empty() || cfg.follow
}

/// The program the unit tests run the filters and rules through (src/bpf/steps/selftest.h).
pub(super) const SELFTEST: &str = "selftest";

/// The programs one mode loads, after checking that the kernel has their hooks.
pub(super) fn programs(cfg: &Config, mode: Mode, kernel: &Kernel) -> Result<Vec<&'static Probe>> {
    let unix = cfg.proto.is_empty() || cfg.proto.contains(&ProtoFamily::Unix);
    let wanted: Vec<&Probe> = probes::needed(
        mode,
        cfg.events,
        kernel.recv_has_nonblock(),
        follows(cfg),
        unix,
    )
    .collect();
    // --deny's hooks are the cgroup's, the same in every mode.
    let deciding = probes::deciding().filter(|_| cfg.deciding());
    if mode == Mode::Tracepoint {
        system::check_tracepoints(wanted.iter().map(|p| p.target))?;
        return Ok(wanted.into_iter().chain(deciding).collect());
    }
    if kernel.btf.is_none() {
        bail!("this kernel has no BTF");
    }
    let mut chosen = Vec::new();
    for p in wanted {
        let present = if p.attach.is_tracepoint() {
            kernel.has_tp_btf(p.target)
        } else {
            kernel.has_function(p.target)
        };
        match (present, p.only) {
            (true, _) => chosen.push(p),
            (false, Only::WithFunction) => {}
            (false, _) => bail!("this kernel lacks {}", probes::describe(p)),
        }
    }
    chosen.extend(deciding);
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    use super::*;
    use crate::model::abi::SockwatchSkelBuilder;

    #[test]
    fn every_program_is_in_the_table_and_back() {
        let mut object = MaybeUninit::uninit();
        let open = SockwatchSkelBuilder::default().open(&mut object).unwrap();
        let names: Vec<String> = open
            .open_object()
            .progs()
            .map(|p| p.name().to_string_lossy().into_owned())
            .collect();
        for p in probes::PROBES {
            assert!(
                names.iter().any(|n| n == p.program),
                "{} is not in the object",
                p.program
            );
        }
        assert_eq!(names.len(), probes::PROBES.len() + 1);
        assert!(names.iter().any(|n| n == SELFTEST));
    }
}
