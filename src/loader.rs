//! Opening the BPF object, setting its filters and sizes, loading and attaching it
//! in one attach mode: the one asked for, or the first of fentry, kprobe and
//! tracepoint that this kernel loads and attaches.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::btf::types::{Func, FuncProto, Typedef};
use libbpf_rs::btf::Btf;
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapType, OpenObject};

use crate::assertion::Assertions;
use crate::cli::{Config, MAX_NAMES, MAX_PEERS, MAX_PIDS, MAX_PORTS};
use crate::event::{ProtoFamily, Tally, UnixAddr, UnixEnds};
use crate::kretprobe;
use crate::probes::{self, Attach, Buffer, Mode, Only, Probe};
use crate::procs;
use crate::skel::{types, SockwatchSkel, SockwatchSkelBuilder};
use crate::system;

/// The `followed` map's mark for COMMAND's tree (`enum followed_by`, one byte).
const FROM_COMMAND: u8 = types::followed_by::FOLLOWED_FROM_COMMAND.0 as u8;

/// The loaded and attached BPF object. Dropping it detaches everything.
pub struct Tracer {
    pub skel: SockwatchSkel<'static>,
    /// Dropping a link detaches its program.
    pub links: Vec<Link>,
    /// The kprobe mode's return probes made in tracefs, with room for every
    /// waiting thread (when sockwatch may write tracefs).
    pub returns: Vec<kretprobe::ReturnProbe>,
    /// How the misses of the kprobe mode's return probes are counted.
    pub return_misses: ReturnMisses,
    /// Their misses when they were detached (the counts go with the probes).
    missed_at_detach: Option<u64>,
    pub mode: Mode,
    pub buffer: Buffer,
}

/// How the misses of return probes are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMisses {
    /// No return probes: nothing to miss.
    None,
    /// Return probes in tracefs: `kprobe_profile` counts their misses.
    Tracefs,
    /// Return probes through perf: their links report misses (6.7+).
    Links,
    /// Return probes through perf on a kernel that does not count their misses.
    Uncounted,
}

impl Tracer {
    /// Detaches every program. Each detach waits for the kernel's grace period
    /// (about 70 ms here): done side by side, they share it, instead of adding up
    /// to seconds before a stop request is done.
    pub fn detach(&mut self) {
        self.missed_at_detach = Some(self.returns_missed());
        std::thread::scope(|scope| {
            for link in self.links.drain(..) {
                scope.spawn(move || drop(link));
            }
            for probe in self.returns.drain(..) {
                scope.spawn(move || drop(probe));
            }
        });
    }

    /// Calls whose return a return probe missed so far (0 where they are not counted).
    pub fn returns_missed(&self) -> u64 {
        if let Some(n) = self.missed_at_detach {
            return n;
        }
        match self.return_misses {
            ReturnMisses::Tracefs => {
                kretprobe::misses(std::path::Path::new(system::TRACEFS), &self.returns)
            }
            ReturnMisses::Links => self
                .links
                .iter()
                .filter_map(|l| libbpf_rs::query::LinkInfo::from_fd(l.as_fd()).ok())
                .map(|info| match info.info {
                    libbpf_rs::query::LinkTypeInfo::PerfEvent(p) => match p.event_type {
                        libbpf_rs::query::PerfEventType::Kprobe { missed, .. } => missed,
                        _ => 0,
                    },
                    _ => 0,
                })
                .sum(),
            ReturnMisses::None | ReturnMisses::Uncounted => 0,
        }
    }

    /// Runs of our programs the kernel skipped because one was already running on
    /// that CPU (it does so to avoid recursion; preemptible tracepoints make it
    /// happen under load on recent kernels). Each may have been an event.
    pub fn skipped_runs(&self) -> u64 {
        use libbpf_rs::libbpf_sys::{bpf_prog_get_info_by_fd, bpf_prog_info};
        use std::os::fd::{AsFd, AsRawFd};
        self.skel
            .object()
            .progs()
            .filter(|p| p.autoload())
            .map(|p| {
                let mut info = bpf_prog_info::default();
                let mut len = std::mem::size_of::<bpf_prog_info>() as u32;
                // SAFETY: `info` is a bpf_prog_info of `len` bytes; the fd is the program's.
                let rc =
                    unsafe { bpf_prog_get_info_by_fd(p.as_fd().as_raw_fd(), &mut info, &mut len) };
                if rc == 0 {
                    info.recursion_misses
                } else {
                    0
                }
            })
            .sum()
    }

    /// Traces COMMAND's `pid` and, as it forks, its descendants.
    pub fn follow(&self, pid: u32) -> Result<()> {
        self.skel
            .maps
            .followed
            .update(&pid.to_ne_bytes(), &[FROM_COMMAND], MapFlags::ANY)
            .context("adding COMMAND to the traced processes")
    }

    /// The live processes of COMMAND's tree, as the kernel follows them: each is
    /// added at its fork, before it runs, and removed at its exit (while attached).
    pub fn command_tree(&self) -> Vec<u32> {
        let map = &self.skel.maps.followed;
        map.keys()
            .filter(|k| {
                map.lookup(k, MapFlags::ANY).ok().flatten().as_deref() == Some(&[FROM_COMMAND][..])
            })
            .filter_map(|k| Some(u32::from_ne_bytes(k.as_slice().try_into().ok()?)))
            .filter(|&pid| procs::alive(pid))
            .collect()
    }

    /// The tracepoint mode's last look for releases no hook saw: an entry whose
    /// owner has exited, with no other holder known, was let go unseen (a UDP
    /// socket's last reference in another thread's call). Counts them as missed,
    /// and returns what -c had added up in them.
    pub fn sweep(&self) -> Result<Vec<Tally>> {
        let mut tallies = Vec::new();
        if self.mode != Mode::Tracepoint {
            return Ok(tallies);
        }
        let socks = &self.skel.maps.socks;
        let names = self.unix_ends()?;
        let mut missed = 0u64;
        let mut held = None;
        for key in socks.keys() {
            let Some(st) = self.sock(&key)? else {
                continue;
            };
            let gone = if st.unowned != 0 {
                // Let go by its owner while another process held it: released where
                // no hook saw it (a unix-domain socket an untraced process closed)
                // once no process holds it any more.
                !held
                    .get_or_insert_with(procs::held_socket_inodes)
                    .contains(&st.ino)
            } else {
                // A zombie owner counts as gone: its exit walk has already run.
                !procs::alive(st.pid)
            };
            if gone {
                socks.delete(&key)?;
                missed += 1;
                tallies.extend(Tally::of_socket(&st, &names)?);
            }
        }
        if missed > 0 {
            self.add_to_counter(types::counter::CTR_MISSED, missed)?;
        }
        Ok(tallies)
    }

    fn add_to_counter(&self, which: types::counter, n: u64) -> Result<()> {
        let key = which.0.to_ne_bytes();
        let counters = &self.skel.maps.counters;
        let mut per_cpu = counters
            .lookup_percpu(&key, MapFlags::ANY)
            .context("reading the event counters")?
            .unwrap_or_default();
        if let Some(first) = per_cpu.first_mut() {
            let v = u64::from_ne_bytes(first[..8].try_into().unwrap()) + n;
            first[..8].copy_from_slice(&v.to_ne_bytes());
        }
        counters
            .update_percpu(&key, &per_cpu, MapFlags::ANY)
            .context("updating the event counters")
    }

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
        Ok(per_cpu.iter().map(|v| u64_at(v)).sum())
    }

    /// Attaches the --deny, --allow and --audit hooks to `cgroup` (a directory).
    /// Attached to the cgroup itself rather than through links, they stay with it
    /// if sockwatch is killed: COMMAND's tree stays refused until the cgroup goes.
    pub fn decide_in(&mut self, cgroup: &std::fs::File) -> Result<()> {
        for prog in self.skel.object().progs() {
            let name = prog.name().to_string_lossy().into_owned();
            let Some(p) = probes::deciding().find(|p| p.program == name) else {
                continue;
            };
            if !prog.autoload() {
                continue;
            }
            // SAFETY: both descriptors are open for the call; the kernel checks the rest.
            let err = unsafe {
                libbpf_rs::libbpf_sys::bpf_prog_attach(
                    prog.as_fd().as_raw_fd(),
                    cgroup.as_raw_fd(),
                    prog.attach_type() as u32,
                    libbpf_rs::libbpf_sys::BPF_F_ALLOW_MULTI,
                )
            };
            if err != 0 {
                let e = std::io::Error::last_os_error();
                bail!("attaching {name} ({}): {e}", probes::describe(p));
            }
        }
        Ok(())
    }

    /// The connects and sends --deny or --allow refused.
    pub fn denied(&self) -> Result<u64> {
        self.counter(types::counter::CTR_DENIED)
    }

    /// --audit's destinations, and how many its table had no room for.
    pub fn destinations(&self) -> Result<(Vec<types::destination>, u64)> {
        let map = &self.skel.maps.destinations;
        let mut found = Vec::new();
        for key in map.keys() {
            let mut d = types::destination::default();
            if plain::copy_from_bytes(&mut d, &key).is_ok() {
                found.push(d);
            }
        }
        Ok((found, self.counter(types::counter::CTR_UNAUDITED)?))
    }

    /// How many events each --expect and --forbid rule matched, in their order.
    pub fn rule_hits(&self, rules: usize) -> Result<Vec<u64>> {
        (0..rules as u32)
            .map(|i| {
                let per_cpu = self
                    .skel
                    .maps
                    .rule_hits
                    .lookup_percpu(&i.to_ne_bytes(), MapFlags::ANY)
                    .context("reading the assertions' matches")?
                    .unwrap_or_default();
                Ok(per_cpu.iter().map(|v| u64_at(v)).sum())
            })
            .collect()
    }

    /// What the kernel added up for -c: its rows (the totals of every CPU), and
    /// what sockets still open hold in their entries.
    pub fn tallies(&self) -> Result<Vec<Tally>> {
        let map = &self.skel.maps.tallies;
        let names = self.unix_ends()?;
        let mut rows = Vec::new();
        for raw in map.keys() {
            let mut key = types::tally_key::default();
            let Some(per_cpu) = map
                .lookup_percpu(&raw, MapFlags::ANY)
                .context("reading the summary's table")?
            else {
                continue;
            };
            if plain::copy_from_bytes(&mut key, &raw).is_err() {
                continue;
            }
            let mut total = types::tally::default();
            for value in per_cpu {
                let mut t = types::tally::default();
                if plain::copy_from_bytes(&mut t, &value).is_ok() {
                    total.sent += t.sent;
                    total.received += t.received;
                    total.events += t.events;
                }
            }
            rows.push(Tally::decode(&key, &total, &names)?);
        }
        for key in self.skel.maps.socks.keys() {
            if let Some(st) = self.sock(&key)? {
                rows.extend(Tally::of_socket(&st, &names)?);
            }
        }
        Ok(rows)
    }

    /// The unix-domain addresses of -c's rows, by the hash that stands for them.
    fn unix_ends(&self) -> Result<UnixEnds> {
        let map = &self.skel.maps.unix_ends;
        let mut names = UnixEnds::new();
        for raw in map.keys() {
            let name: Option<types::unix_name> =
                lookup_plain(map, &raw).context("reading the summary's unix-domain addresses")?;
            if let (Some(name), Ok(id)) = (name, <[u8; 8]>::try_from(raw.as_slice())) {
                names.insert(u64::from_ne_bytes(id), UnixAddr::from_raw(&name));
            }
        }
        Ok(names)
    }

    /// The socket table's entry under `key`, if it is still there.
    fn sock(&self, key: &[u8]) -> Result<Option<types::sock_state>> {
        Ok(lookup_plain(&self.skel.maps.socks, key)?)
    }

    /// The record of the first event rule `i` matched, once one has.
    pub fn first_hit(&self, i: usize) -> Result<Option<Vec<u8>>> {
        self.skel
            .maps
            .first_hits
            .lookup(&(i as u32).to_ne_bytes(), MapFlags::ANY)
            .context("reading the assertions' first matches")
    }
}

/// A per-CPU value's u64.
fn u64_at(value: &[u8]) -> u64 {
    value
        .get(..8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap()))
}

/// What the running kernel's BTF says about the hooks.
struct Kernel {
    btf: Option<Btf<'static>>,
}

impl Kernel {
    fn read() -> Kernel {
        Kernel {
            btf: Btf::from_vmlinux().ok(),
        }
    }

    fn has_function(&self, name: &str) -> bool {
        self.btf
            .as_ref()
            .is_some_and(|b| b.type_by_name::<Func>(name).is_some())
    }

    /// A BTF-typed tracepoint exists when its `btf_trace_` typedef does.
    fn has_tp_btf(&self, tracepoint: &str) -> bool {
        let name = tracepoint.rsplit('/').next().unwrap_or(tracepoint);
        self.btf.as_ref().is_some_and(|b| {
            b.type_by_name::<Typedef>(&format!("btf_trace_{name}"))
                .is_some()
        })
    }

    /// Before 5.19 the receive functions took `nonblock` before `flags` (kernel commit
    /// ec095263a965; src/bpf/compat.h lists every such difference).
    fn recv_has_nonblock(&self) -> bool {
        self.params("tcp_recvmsg") == Some(6)
    }

    /// Whether a kprobe's perf link reports its misses (kernel commit 3acf8ace6823,
    /// 6.7, which gave bpf_get_kprobe_info a `missed` argument).
    fn kprobe_links_count_misses(&self) -> bool {
        self.params("bpf_get_kprobe_info").is_some_and(|n| n >= 7)
    }

    fn params(&self, function: &str) -> Option<usize> {
        let btf = self.btf.as_ref()?;
        let func = btf.type_by_name::<Func>(function)?;
        let proto = FuncProto::try_from(func.next_type()?).ok()?;
        Some(proto.len())
    }
}

/// The socket filters, the assertions' rules and the policies', as knobs.
fn set_filters_and_rules(rodata: &mut types::rodata, cfg: &Config) {
    assert!(cfg.ports.len() <= MAX_PORTS && cfg.peers.len() <= MAX_PEERS);
    rodata.ports[..cfg.ports.len()].copy_from_slice(&cfg.ports);
    rodata.n_ports = cfg.ports.len() as u32;
    for (i, peer) in cfg.peers.iter().enumerate() {
        let (addr, mask, family) = peer.words();
        rodata.peers[i].addr = addr;
        rodata.peers[i].mask = mask;
        rodata.peers[i].family = family;
    }
    rodata.n_peers = cfg.peers.len() as u32;
    rodata.protocols = cfg.proto.iter().fold(0, |bits, p| bits | p.bit());
    assert!(cfg.paths.len() <= rodata.paths.len());
    for (i, path) in cfg.paths.iter().enumerate() {
        (rodata.paths[i].words, rodata.paths[i].mask) = path.words();
    }
    rodata.n_paths = cfg.paths.len() as u32;
    let rules = Assertions::new(cfg.expect.clone(), cfg.forbid.clone()).rules();
    rodata.rules[..rules.len()].copy_from_slice(&rules);
    rodata.n_rules = rules.len() as u32;
    for (i, expr) in cfg.deny.iter().enumerate() {
        rodata.deny_rules[i] = expr.rule();
    }
    rodata.n_deny = cfg.deny.len() as u32;
    for (i, expr) in cfg.allow.iter().enumerate() {
        rodata.allow_rules[i] = expr.rule();
    }
    rodata.n_allow = cfg.allow.len() as u32;
    rodata.audit = cfg.audit;
}

/// The program the unit tests run the filters and rules through (src/bpf/selftest.h).
const SELFTEST: &str = "selftest";

/// Processes with sockets are fewer than sockets, but a tiny socket table must not
/// leave a process's sockets unreleased at its exit.
const MIN_OWNERS: u32 = 4096;

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
pub fn start(cfg: &Config, start_ns: u64) -> Result<Tracer> {
    let kernel = Kernel::read();
    let buffer = choose_buffer(cfg);
    if let Some(mode) = cfg.probe {
        return start_mode(cfg, mode, buffer, start_ns, &kernel);
    }
    let mut failures = Vec::new();
    for mode in Mode::PREFERENCE {
        if buffer == Buffer::Perf && mode == Mode::Tracepoint {
            continue;
        }
        match start_mode(cfg, mode, buffer, start_ns, &kernel) {
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

/// Whether processes are traced by descent: COMMAND's tree, or --follow.
fn follows(cfg: &Config) -> bool {
    !cfg.command.is_empty() || cfg.follow
}

/// Most processes traced by descent at once.
const MAX_FOLLOWED: u32 = 16384;

/// The programs one mode loads, after checking that the kernel has their hooks.
fn programs(cfg: &Config, mode: Mode, kernel: &Kernel) -> Result<Vec<&'static Probe>> {
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

/// A map's value under `key` as the generated type `T`, if it is there.
fn lookup_plain<T: plain::Plain + Default>(
    map: &impl MapCore,
    key: &[u8],
) -> libbpf_rs::Result<Option<T>> {
    let mut value = T::default();
    Ok(match map.lookup(key, MapFlags::ANY)? {
        Some(bytes) if plain::copy_from_bytes(&mut value, &bytes).is_ok() => Some(value),
        _ => None,
    })
}

/// One attempt in one mode. Each opens its own object, which the skeleton borrows
/// for as long as sockwatch runs; a failed attempt frees it.
fn start_mode(
    cfg: &Config,
    mode: Mode,
    buffer: Buffer,
    start_ns: u64,
    kernel: &Kernel,
) -> Result<Tracer> {
    let object = Box::into_raw(Box::new(MaybeUninit::<OpenObject>::uninit()));
    // SAFETY: `object` is a fresh allocation, borrowed only by this attempt.
    let result = start_in(unsafe { &mut *object }, cfg, mode, buffer, start_ns, kernel);
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
) -> Result<Tracer> {
    if mode == Mode::Tracepoint && buffer == Buffer::Perf {
        bail!("the tracepoint mode needs the ring buffer (Linux 5.8; its tracepoints are 6.3)");
    }
    let chosen = programs(cfg, mode, kernel)?;
    let mut open = SockwatchSkelBuilder::default()
        .open(object)
        .context("opening the BPF object")?;

    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the BPF object has no read-only data")?;
    assert!(cfg.names.len() <= MAX_NAMES && cfg.pids.len() <= MAX_PIDS);
    for (i, name) in cfg.names.iter().enumerate() {
        rodata.names[i] = procs::name_words(name);
        rodata.names_mask[i] = procs::name_mask(name);
    }
    rodata.n_names = cfg.names.len() as u32;
    rodata.pids[..cfg.pids.len()].copy_from_slice(&cfg.pids);
    rodata.n_pids = cfg.pids.len() as u32;
    rodata.selected = cfg.events.kernel_bits();
    rodata.shipped = cfg.shipped().kernel_bits();
    rodata.tallied = cfg.tallied().0;
    rodata.start_ns = start_ns;
    rodata.use_ringbuf = buffer == Buffer::Ring;
    rodata.no_release_hook = mode == Mode::Tracepoint;
    rodata.recv_has_nonblock = kernel.recv_has_nonblock();
    rodata.self_pid = std::process::id();
    rodata.use_followed = follows(cfg);
    rodata.follow_children = cfg.follow;
    rodata.in_cgroup = cfg.cgroup.is_some();
    rodata.every_process = cfg.every_process;
    set_filters_and_rules(rodata, cfg);

    // Sizes the operator chose; the kernel allocates them at load.
    let maps = &mut open.maps;
    maps.events
        .set_max_entries(cfg.buffer_size as u32)
        .context("sizing the event buffer")?;
    maps.events.set_autocreate(buffer == Buffer::Ring)?;
    maps.perf_events.set_autocreate(buffer == Buffer::Perf)?;
    maps.socks
        .set_max_entries(cfg.max_sockets)
        .context("sizing the socket table")?;
    // Closed connections stay there only while the kernel still sends for them.
    maps.orphans
        .set_max_entries((cfg.max_sockets / 8).max(1024))
        .context("sizing the table of closed connections")?;
    maps.owners
        .set_max_entries(if mode == Mode::Tracepoint {
            cfg.max_sockets.max(MIN_OWNERS)
        } else {
            1
        })
        .context("sizing the owner table")?;
    if cfg.tallied().0 == 0 {
        maps.tallies
            .set_max_entries(1)
            .context("sizing the summary's table")?;
        maps.unix_ends
            .set_max_entries(1)
            .context("sizing the summary's table")?;
    }
    maps.followed
        .set_max_entries(if follows(cfg) { MAX_FOLLOWED } else { 1 })
        .context("sizing the table of followed processes")?;

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
    Ok(Tracer {
        skel,
        links,
        returns,
        return_misses,
        missed_at_detach: None,
        mode,
        buffer,
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

    /// The kernel's socket filter, on the raw event: IPv4-mapped peers count as IPv4;
    /// a unix-domain socket (its path from the decoded event) has no port or peer.
    fn passes(cfg: &Config, e: &types::event, ev: &crate::event::Event) -> bool {
        if e.family == 0 {
            return true;
        }
        let kind = crate::event::Protocol::from_raw(e.family, e.protocol).unwrap();
        if !cfg.proto.is_empty() && !cfg.proto.contains(&ProtoFamily::of(kind)) {
            return false;
        }
        if kind.unix_type().is_some() {
            let path = ev.socket.as_ref().and_then(|s| s.path());
            return cfg.ports.is_empty()
                && cfg.peers.is_empty()
                && (cfg.paths.is_empty()
                    || path.is_some_and(|p| cfg.paths.iter().any(|f| f.matches(p))));
        }
        let ip = crate::event::ip(e.family, &e.remote.addr);
        cfg.paths.is_empty()
            && (cfg.ports.is_empty()
                || cfg
                    .ports
                    .iter()
                    .any(|&p| p == e.local.port || p == e.remote.port))
            && (cfg.peers.is_empty() || cfg.peers.iter().any(|p| p.contains(ip)))
    }

    /// Events of every kind the rules can be about, in many shapes, as the kernel
    /// writes them.
    fn events() -> Vec<types::exec_event> {
        use types::{event_flag, event_kind};
        let kinds = [
            (event_kind::EV_CONNECT, 0, 0),
            (event_kind::EV_CONNECT, -111, 0),
            (event_kind::EV_CONNECT, 0, event_flag::EF_ABORTED.0),
            (event_kind::EV_SEND, 5, 0),
            (event_kind::EV_RECV, 5, event_flag::EF_PEER_UNKNOWN.0),
            (event_kind::EV_LISTEN, 64, 0),
            (event_kind::EV_ACCEPT, 0, event_flag::EF_ACCEPTED.0),
            (event_kind::EV_CLOSE, 0, 0),
            (event_kind::EV_DENY, -1, 0),
            (event_kind::EV_EXEC, 0, 0),
        ];
        let peers: [(u8, [u8; 16]); 5] = [
            (2, [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (2, [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            (2, [0; 16]),
            (10, std::net::Ipv6Addr::LOCALHOST.octets()),
            (
                10,
                "::ffff:10.1.2.3"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            ),
        ];
        let mut out = Vec::new();
        for (kind, value, flags) in kinds {
            for (family, raddr) in peers {
                for (protocol, lport, rport) in [(6, 40000, 53), (17, 53, 0), (6, 80, 5432)] {
                    for comm in [&b"curl"[..], b"fifteen-bytes-x"] {
                        let mut e = types::event {
                            kind: kind.0 as u8,
                            value,
                            flags: flags as u8,
                            ..Default::default()
                        };
                        for (d, s) in e.comm.iter_mut().zip(comm) {
                            *d = *s as _;
                        }
                        if kind != event_kind::EV_EXEC {
                            (e.family, e.remote.addr, e.protocol) = (family, raddr, protocol);
                            (e.local.port, e.remote.port) = (lport, rport);
                        }
                        out.push(types::exec_event {
                            base: e,
                            ..Default::default()
                        });
                    }
                }
            }
            // Unix-domain sockets of each type, with paths, abstract names and none.
            let names: [(&[u8], &[u8], u8); 6] = [
                (b"", b"/run/docker.sock\0", 1),
                (b"/run/docker.sock\0", b"", 1),
                (b"\0abs", b"", 0),
                (b"", b"", 1),
                (b"", b"/run/docker.sock2\0", 1),
                (b"/var/run/x\0", b"", 0),
            ];
            for (local, remote, has_remote) in names {
                for protocol in [1, 2, 5] {
                    let mut u = types::unix_event {
                        base: types::event {
                            kind: kind.0 as u8,
                            value,
                            flags: flags as u8,
                            family: 1,
                            protocol,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    for (d, s) in u.base.comm.iter_mut().zip(b"curl") {
                        *d = *s as _;
                    }
                    // The kernel names no remote end it does not know.
                    let unknown = flags & event_flag::EF_PEER_UNKNOWN.0 != 0;
                    let remote = if unknown { &b""[..] } else { remote };
                    u.has_remote = has_remote & u8::from(!unknown);
                    for (name, bytes) in [(&mut u.local, local), (&mut u.remote, remote)] {
                        name.len = bytes.len() as u8;
                        for (d, s) in name.path.iter_mut().zip(bytes) {
                            *d = *s as _;
                        }
                    }
                    let mut x = types::exec_event::default();
                    // SAFETY: both are plain repr(C) structs; a unix_event fits in an exec_event.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            &u as *const types::unix_event as *const u8,
                            &mut x as *mut types::exec_event as *mut u8,
                            std::mem::size_of::<types::unix_event>(),
                        );
                    }
                    out.push(x);
                }
            }
        }
        out
    }

    /// The filters and the rules, run in the kernel by the self-test program on
    /// every event above, agree with the model: ports, prefixes, v4-mapped peers,
    /// protocols, results, names, negation, fields an event lacks.
    #[test]
    fn the_kernels_filters_and_rules_agree_with_the_model() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test loads a BPF program: run the unit tests as root"
        );
        let cases: [&[&str]; 5] = [
            &[
                "--expect",
                "connect peer!=127.0.0.0/8 peer!=::1",
                "--expect",
                "any port=53",
                "--expect",
                "connect result=ECONNREFUSED",
                "--expect",
                "connect result=failed",
                "--expect",
                "connect result=ok",
                "--forbid",
                "send proto=udp rport=53",
                "--forbid",
                "close process=curl",
                "--forbid",
                "any lport!=80 peer=10.0.0.0/8",
                "--expect",
                "deny rport=53 process=fifteen-bytes-x",
                "--expect",
                "listen lport=40000 proto=tcp",
                "--expect",
                "accept peer=::ffff:127.0.0.1",
                "--expect",
                "connect result=aborted peer=0.0.0.0/0",
                "--expect",
                "recv peer=10.1.2.3",
                "--expect",
                "exec process=curl",
                "--expect",
                "any rport!=53",
                "--expect",
                "connect peer=::/0",
            ],
            &["--port", "53", "--peer", "10.0.0.0/8", "--expect", "any"],
            &[
                "--proto",
                "unix",
                "--proto",
                "udp",
                "--path",
                "/run/",
                "--path",
                "@abs",
                "--expect",
                "connect path=/run/docker.sock",
                "--expect",
                "any path!=/run/docker.sock proto=unix",
                "--forbid",
                "any proto=tcp",
                "--expect",
                "any lport!=80",
                "--expect",
                "close path=/run/",
            ],
            &["--path", "/run/docker.sock", "--expect", "any proto=unix"],
            &[
                "--peer",
                "::ffff:127.0.0.1",
                "--peer",
                "::1",
                "--proto",
                "tcp",
                "--forbid",
                "any",
            ],
        ];
        for case in cases {
            let argv = ["sockwatch", "x"].iter().chain(case);
            let args = <crate::cli::Args as clap::Parser>::try_parse_from(argv).unwrap();
            let cfg = Config::from_args(args).unwrap();
            let mut object = MaybeUninit::uninit();
            let mut open = SockwatchSkelBuilder::default().open(&mut object).unwrap();
            for mut prog in open.open_object_mut().progs_mut() {
                let name = prog.name().to_string_lossy().into_owned();
                prog.set_autoload(name == SELFTEST);
            }
            set_filters_and_rules(open.maps.rodata_data.as_deref_mut().unwrap(), &cfg);
            let skel = open.load().unwrap();
            let rules = Assertions::new(cfg.expect.clone(), cfg.forbid.clone()).rules();
            let clock = crate::event::Clock { offset_ns: 0 };
            for x in events() {
                // SAFETY: a generated repr(C) struct of integers.
                let raw = unsafe {
                    std::slice::from_raw_parts(
                        &x as *const types::exec_event as *const u8,
                        std::mem::size_of::<types::exec_event>(),
                    )
                };
                skel.maps
                    .selftest_in
                    .update(&0u32.to_ne_bytes(), raw, MapFlags::ANY)
                    .unwrap();
                let mut args = [0u8; 8];
                let input = libbpf_rs::ProgramInput {
                    context_in: Some(&mut args),
                    ..Default::default()
                };
                let got = skel.progs.selftest.test_run(input).unwrap().return_value;
                // As long as an EXEC record, whose path is empty here.
                let ev = crate::event::decode(raw, clock).unwrap();
                let matched = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| crate::assertion::model::matches(r, &ev))
                    .fold(0, |m, (i, _)| m | 1 << i);
                let want = u32::from(passes(&cfg, &x.base, &ev)) | matched << 1;
                assert_eq!(got, want, "{case:?}: {ev:?}");
            }
        }
    }
}
