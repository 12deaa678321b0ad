//! What the loop adds to a decoded event: the peer process's name on a unix-domain
//! CONNECT or ACCEPT (the kernel gives its pid), and the path of the process's
//! cgroup (the kernel gives its id).

use crate::model::event::{Event, Kind};
use crate::os::identity::CgroupPaths;
use crate::os::procs::name_of;

/// The names of the processes a unix-domain socket's peer may be: those sockwatch
/// saw listen, connect or accept (a peer that has exited by the time its line is
/// printed), else /proc's.
#[derive(Debug, Default)]
struct PeerNames {
    seen: std::collections::HashMap<u32, Vec<u8>>,
}

/// Names kept before the oldest are forgotten.
const MAX_PEER_NAMES: usize = 65536;

impl PeerNames {
    fn note(&mut self, ev: &Event) {
        if matches!(
            ev.kind(),
            Kind::Listen | Kind::Connect | Kind::Accept | Kind::Exec | Kind::Fork
        ) {
            if self.seen.len() >= MAX_PEER_NAMES {
                self.seen.clear();
            }
            self.seen.insert(ev.pid, ev.process.clone());
        }
    }

    fn name(&self, pid: u32) -> Option<Vec<u8>> {
        self.seen.get(&pid).cloned().or_else(|| name_of(pid))
    }
}

/// Fills in what a decoded event names only by number.
pub(super) struct Enricher {
    peer_names: PeerNames,
    /// With JSON and -W: each process's cgroup path.
    pub(super) cgroups: Option<CgroupPaths>,
}

impl Enricher {
    /// `cgroups`: look up the cgroup paths too.
    pub(super) fn new(cgroups: bool) -> Enricher {
        Enricher {
            peer_names: PeerNames::default(),
            cgroups: cgroups.then(CgroupPaths::new),
        }
    }

    pub(super) fn add(&mut self, ev: &mut Event) {
        self.peer_names.note(ev);
        if matches!(ev.kind(), Kind::Connect | Kind::Accept) {
            if let Some(s) = &mut ev.socket {
                if let Some(pid) = s.peer_pid {
                    s.peer_process = self.peer_names.name(pid);
                }
            }
        }
        if let (Some(paths), Some(who)) = (&mut self.cgroups, &mut ev.who) {
            who.cgroup = paths.path(who.cgroup_id);
        }
    }
}
