//! `-c`/`-C`: a table of connects, accepts, bytes and closes per process and remote
//! end. What it counts; the sinks in `output/` write it.

use std::collections::BTreeMap;

use crate::model::event::{
    remote_end, ConnectResult, Detail, Event, EventSet, Identity, Kind, Tally, Who,
};

/// The events a summary counts, which the kernel must report.
pub const KINDS: EventSet = EventSet(
    Kind::Connect.bit()
        | Kind::Accept.bit()
        | Kind::Send.bit()
        | Kind::Recv.bit()
        | Kind::Close.bit()
        | Kind::Deny.bit()
        | Kind::Retrans.bit()
        | Kind::Reset.bit(),
);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub connects_ok: u64,
    pub connects_failed: u64,
    pub accepts: u64,
    pub sent: u64,
    pub received: u64,
    pub closed: u64,
    pub denied: u64,
    pub retrans: u64,
    pub resets: u64,
}

/// Totals by (process name, remote end), and by who the process is (uid and
/// cgroup) when that is asked for. An accepted connection's remote end is the
/// client's address with its port left out (`127.0.0.1:*`): a server gets one row
/// per client host, not one per connection, whichever of its processes holds the
/// connection (a fork-per-connection server's child too).
#[derive(Debug)]
pub struct Summary {
    /// The kinds counted (`--events`); the others' columns are `-` (absent in JSON).
    counted: EventSet,
    rows: BTreeMap<(Vec<u8>, Option<Identity>, String), Row>,
    /// With --deny or --allow: a DENIED column.
    denials: bool,
    /// -W or --json: rows by who the process is, and, once named before the
    /// table is written, each cgroup id's path (None: the cgroup was gone).
    cgroups: Option<BTreeMap<u64, Option<String>>>,
}

/// One row of the table: `cells` are the columns after REMOTE, None where its kind
/// is not counted (`--events`).
pub struct TableRow<'a> {
    pub process: &'a [u8],
    /// When rows are kept apart by identity: who, or None where the kernel could not say.
    pub who: Option<Who>,
    pub remote: &'a str,
    pub cells: Vec<Option<u64>>,
}

/// A column after PROCESS and REMOTE: title, JSON key, the kind it counts, its value.
type Column = (&'static str, &'static str, Kind, fn(&Row) -> u64);

const COLUMNS: [Column; 6] = [
    ("CONN-OK", "connects_ok", Kind::Connect, |r| r.connects_ok),
    ("CONN-FAIL", "connects_failed", Kind::Connect, |r| {
        r.connects_failed
    }),
    ("ACCEPTS", "accepts", Kind::Accept, |r| r.accepts),
    ("SENT", "sent", Kind::Send, |r| r.sent),
    ("RECEIVED", "received", Kind::Recv, |r| r.received),
    ("CLOSED", "closed", Kind::Close, |r| r.closed),
];

const DENIED: Column = ("DENIED", "denied", Kind::Deny, |r| r.denied);
/// Opt-in (`-e retrans,reset`): there only when asked for.
const RETRANS: Column = ("RETRANS", "retrans", Kind::Retrans, |r| r.retrans);
const RESETS: Column = ("RESETS", "resets", Kind::Reset, |r| r.resets);

impl Summary {
    /// A summary of the events of `counted` kinds (those of `KINDS` among them);
    /// `denials`: the run refuses calls, and the table says how many.
    /// `by_identity`: rows are kept apart by uid and cgroup too (-W, --json).
    pub fn new(counted: EventSet, denials: bool, by_identity: bool) -> Summary {
        Summary {
            counted,
            rows: BTreeMap::new(),
            denials,
            cgroups: by_identity.then(BTreeMap::new),
        }
    }

    /// Whether rows are kept apart by who the process is.
    pub fn by_identity(&self) -> bool {
        self.cgroups.is_some()
    }

    /// Names the cgroup of each row kept apart by who (None: gone) through `path`,
    /// before the table is written: the paths are looked up where events get
    /// theirs, and kept there.
    pub fn name_cgroups(&mut self, mut path: impl FnMut(u64) -> Option<String>) {
        let Some(cgroups) = &mut self.cgroups else {
            return;
        };
        for (_, identity, _) in self.rows.keys() {
            if let Some(id) = identity {
                cgroups
                    .entry(id.cgroup_id)
                    .or_insert_with(|| path(id.cgroup_id));
            }
        }
    }

    /// The columns after PROCESS and REMOTE.
    fn columns(&self) -> Vec<Column> {
        let mut columns = COLUMNS.to_vec();
        if self.denials {
            columns.push(DENIED);
        }
        for extra in [RETRANS, RESETS] {
            if self.counted.contains(extra.2) {
                columns.push(extra);
            }
        }
        columns
    }

    /// The row of a process, who it is, and a remote end (`Socket::summary_end`).
    fn row(&mut self, process: &[u8], identity: Option<Identity>, end: String) -> &mut Row {
        let identity = identity.filter(|_| self.by_identity());
        self.rows
            .entry((process.to_vec(), identity, end))
            .or_default()
    }

    pub fn add(&mut self, ev: &Event) {
        let Some(socket) = &ev.socket else {
            return;
        };
        if !KINDS.contains(ev.kind()) || !self.counted.contains(ev.kind()) {
            return;
        }
        let identity = ev.who.as_ref().map(Who::identity);
        let row = self.row(&ev.process, identity, socket.summary_end());
        match &ev.detail {
            Detail::Connect {
                result: ConnectResult::Ok,
                ..
            } => row.connects_ok += 1,
            Detail::Connect { .. } => row.connects_failed += 1,
            Detail::Accept => row.accepts += 1,
            Detail::Send { bytes } => row.sent += bytes,
            Detail::Recv { bytes } => row.received += bytes,
            Detail::Close { .. } => row.closed += 1,
            Detail::Deny { .. } => row.denied += 1,
            Detail::Retrans { segs } => row.retrans += segs,
            Detail::Reset { .. } => row.resets += 1,
            _ => {}
        }
    }

    /// Sends and receives the kernel added up (of counted kinds only: see `Config::tallied`).
    pub fn add_tally(&mut self, t: &Tally) {
        let end = remote_end(t.remote.as_ref(), t.accepted);
        let row = self.row(&t.process, t.identity, end);
        row.sent += t.sent;
        row.received += t.received;
    }

    #[cfg(test)]
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&[u8], &str, &Row)> {
        self.rows
            .iter()
            .map(|((p, _, r), row)| (p.as_slice(), r.as_str(), row))
    }

    /// The titles and JSON keys of the columns after PROCESS and REMOTE.
    pub fn titles(&self) -> Vec<(&'static str, &'static str)> {
        self.columns().iter().map(|c| (c.0, c.1)).collect()
    }

    /// The rows in order, a cell per column of `titles`.
    pub fn table(&self) -> impl Iterator<Item = TableRow<'_>> {
        let columns = self.columns();
        self.rows
            .iter()
            .map(move |((process, identity, remote), row)| {
                let cells = columns
                    .iter()
                    .map(|(_, _, kind, value)| self.counted.contains(*kind).then(|| value(row)))
                    .collect();
                let who = identity.zip(self.cgroups.as_ref()).map(|(id, paths)| Who {
                    uid: id.uid,
                    ppid: 0,
                    cgroup_id: id.cgroup_id,
                    cgroup: paths.get(&id.cgroup_id).cloned().flatten(),
                });
                TableRow {
                    process,
                    who,
                    remote,
                    cells,
                }
            })
    }
}
