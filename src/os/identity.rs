//! Who a process is: its cgroup's path, from the id the kernel gives (a cgroup v2
//! directory's inode number). What the path names is `model::owner`'s.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::os::cgroup::cgroup2_mount;

/// Cgroup ids to paths, from walks of the cgroup2 tree. An id not found walks it
/// again once (a cgroup made since); one still not found (already removed) is
/// remembered as such.
#[derive(Debug, Default)]
pub struct CgroupPaths {
    root: Option<PathBuf>,
    known: HashMap<u64, String>,
    missing: HashSet<u64>,
}

/// Directories one walk reads at most: a bound for a machine with very many cgroups.
const MAX_DIRS: usize = 100_000;

impl CgroupPaths {
    pub fn new() -> CgroupPaths {
        CgroupPaths {
            root: cgroup2_mount(),
            ..CgroupPaths::default()
        }
    }

    /// The path of cgroup `id` under the cgroup2 mount (`/` for its root).
    pub fn path(&mut self, id: u64) -> Option<String> {
        if !self.known.contains_key(&id) && !self.missing.contains(&id) {
            self.walk();
            if !self.known.contains_key(&id) {
                self.missing.insert(id);
            }
        }
        self.known.get(&id).cloned()
    }

    fn walk(&mut self) {
        let Some(root) = &self.root else {
            return;
        };
        let mut dirs = vec![(root.clone(), "/".to_string())];
        let mut read = 0;
        while let Some((dir, path)) = dirs.pop() {
            read += 1;
            if read > MAX_DIRS {
                break;
            }
            if let Ok(meta) = std::fs::metadata(&dir) {
                self.known.insert(meta.ino(), path.clone());
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = match path.as_str() {
                        "/" => format!("/{name}"),
                        _ => format!("{path}/{name}"),
                    };
                    dirs.push((entry.path(), child));
                }
            }
        }
    }
}
