//! Checks of what the kernel and our privileges allow, before anything is loaded.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

const BTF: &str = "/sys/kernel/btf/vmlinux";
pub const TRACEFS: &str = "/sys/kernel/tracing";

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set, from capget(2): /proc/self may be closed to a
/// process that changed its user (setpriv), as it is on older kernels.
fn effective_caps() -> Result<u64> {
    use nix::libc;
    // struct __user_cap_header_struct, _LINUX_CAPABILITY_VERSION_3 and this process.
    let mut header: [u32; 2] = [0x2008_0522, 0];
    // Two struct __user_cap_data_struct: effective, permitted, inheritable (32 bits each).
    let mut data = [[0u32; 3]; 2];
    // SAFETY: both buffers have the layout and size capget(2) writes for version 3.
    let rc = unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("reading our capabilities");
    }
    Ok(u64::from(data[0][0]) | (u64::from(data[1][0]) << 32))
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// What a non-root user needs, for error messages.
const CAPS_HINT: &str =
    "run as root, or grant CAP_BPF and CAP_PERFMON (and CAP_DAC_READ_SEARCH for the tracepoint mode)";

/// The capabilities, of those loading and attaching need, that `caps` lacks.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, as the kernel allows.
fn missing_caps(caps: u64) -> Vec<&'static str> {
    let admin = has(caps, CAP_SYS_ADMIN);
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !admin && !has(caps, cap))
        .map(|(_, name)| name)
        .collect()
}

/// Fails with one line naming what every mode needs and is missing: privileges, BTF.
pub fn preflight() -> Result<()> {
    let missing = missing_caps(effective_caps()?);
    if !missing.is_empty() {
        bail!(
            "permission denied: missing {} ({CAPS_HINT})",
            missing.join(" and ")
        );
    }
    if !Path::new(BTF).exists() {
        bail!("this kernel has no BTF ({BTF} is missing): sockwatch needs CONFIG_DEBUG_INFO_BTF=y");
    }
    Ok(())
}

/// The tracepoint mode's checks: tracefs readable (mounting it if need be), and
/// every tracepoint present. Perf tracepoints are attached by the id tracefs holds.
pub fn check_tracepoints<'a>(tracepoints: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let caps = effective_caps()?;
    let events = Path::new(TRACEFS).join("events");
    match fs::metadata(&events) {
        Ok(_) => {}
        // tracefs is mode 0700: mounted, but closed to a non-root user.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!(
            "permission denied reading {TRACEFS}: missing CAP_DAC_READ_SEARCH{} ({CAPS_HINT})",
            if has(caps, CAP_DAC_READ_SEARCH) {
                " or a mount that lets it in"
            } else {
                ""
            }
        ),
        Err(_) if !has(caps, CAP_SYS_ADMIN) => bail!(
            "tracefs is not mounted, and mounting it needs CAP_SYS_ADMIN: as root, run `mount -t tracefs nodev {TRACEFS}` once"
        ),
        Err(_) => mount_tracefs()?,
    }
    for tracepoint in tracepoints {
        if !events.join(tracepoint).exists() {
            let (cat, name) = tracepoint.split_once('/').unwrap_or(("", tracepoint));
            bail!(
                "this kernel lacks the tracepoint {cat}:{name}{}",
                if name.starts_with("sock_") {
                    " (added in Linux 6.3; --probe fentry or kprobe hook the socket functions instead)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// tracefs, for the kprobe mode's return probes: mounted if it is not and we may
/// (CAP_SYS_ADMIN); None when it cannot be had.
pub fn tracefs_for_probes() -> Option<&'static Path> {
    let tracefs = Path::new(TRACEFS);
    if !tracefs.join("kprobe_events").exists() {
        let admin = effective_caps().is_ok_and(|caps| has(caps, CAP_SYS_ADMIN));
        if !admin || mount_tracefs().is_err() {
            return None;
        }
    }
    Some(tracefs)
}

/// kernel.perf_event_paranoid, where it can be read.
pub fn perf_event_paranoid() -> Option<i32> {
    fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_capabilities() {
        let bit = |c: u32| 1u64 << c;
        assert_eq!(missing_caps(0), ["CAP_BPF", "CAP_PERFMON"]);
        assert_eq!(missing_caps(bit(CAP_BPF)), ["CAP_PERFMON"]);
        assert_eq!(missing_caps(bit(CAP_PERFMON)), ["CAP_BPF"]);
        assert!(missing_caps(bit(CAP_BPF) | bit(CAP_PERFMON)).is_empty());
        assert!(missing_caps(bit(CAP_SYS_ADMIN)).is_empty());
    }
}
