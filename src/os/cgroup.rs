//! COMMAND's own cgroup for --deny, --allow and --audit: made beside sockwatch's
//! own, joined by COMMAND before it runs, removed once its tree has exited. A
//! sockwatch killed before that leaves it, its hooks attached: the tree stays
//! refused, and the next run removes it once it is empty.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use anyhow::bail;

pub struct Cgroup {
    dir: PathBuf,
    file: File,
}

impl Cgroup {
    /// A new cgroup v2 directory under sockwatch's own, named after sockwatch's pid.
    pub fn create() -> Result<Cgroup> {
        let root = cgroup2_mount().ok_or_else(|| {
            anyhow!(
                "--deny, --allow and --audit need cgroup v2, and no cgroup2 file system is mounted"
            )
        })?;
        let own = own_cgroup().ok_or_else(|| {
            anyhow!("--deny, --allow and --audit need cgroup v2, and sockwatch is in none (/proc/self/cgroup)")
        })?;
        let parent = root.join(own.trim_start_matches('/'));
        remove_stale(&parent);
        let dir = parent.join(format!("sockwatch-{}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating the cgroup {}", dir.display()))?;
        let file = File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        Ok(Cgroup { dir, file })
    }

    /// Moves a process in; what it starts then starts inside.
    pub fn add(&self, pid: u32) -> Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving COMMAND into {}", self.dir.display()))
    }

    /// The directory, for attaching programs to.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for Cgroup {
    /// Removed once empty: a process that has just exited may take a moment to leave.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Removes the cgroups a killed sockwatch left: those whose sockwatch is gone and
/// whose tree has exited (the kernel refuses to remove one that still has
/// processes, which its hooks still refuse).
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("sockwatch-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "sockwatch" {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

/// sockwatch's own cgroup v2 path, from `0::/path` in /proc/self/cgroup.
fn own_cgroup() -> Option<String> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// A cgroup v2 directory, as given or relative to where cgroup v2 is mounted.
pub fn cgroup_dir(path: &std::path::Path) -> Result<PathBuf> {
    let mut candidates = vec![path.to_path_buf()];
    if path.is_relative() {
        if let Some(root) = cgroup2_mount() {
            candidates.push(root.join(path));
        }
    }
    for p in candidates {
        if let Ok(fs) = nix::sys::statfs::statfs(&p) {
            if p.is_dir() && fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
                return Ok(p);
            }
            bail!("--cgroup {}: not a cgroup v2 directory", p.display());
        }
    }
    bail!("--cgroup {}: no such directory", path.display())
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid systems.
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}
