//! What is written before load: the read-only knobs (who is traced, which events,
//! the filters and rules) and the sizes of the maps the operator chose.

use anyhow::{Context, Result};

use super::plan::{follows, Kernel};
use crate::config::mode::{Buffer, Mode};
use crate::config::{Config, MAX_NAMES, MAX_PEERS, MAX_PIDS, MAX_PORTS};
use crate::model::abi::{types, OpenSockwatchSkel};
use crate::model::assertion::Assertions;

/// Processes with sockets are fewer than sockets, but a tiny socket table must not
/// leave a process's sockets unreleased at its exit.
const MIN_OWNERS: u32 = 4096;

/// Most processes traced by descent at once.
const MAX_FOLLOWED: u32 = 16384;

/// Writes the knobs and sizes the maps of the opened object.
pub(super) fn write(
    open: &mut OpenSockwatchSkel<'_>,
    cfg: &Config,
    mode: Mode,
    buffer: Buffer,
    start_ns: u64,
    kernel: &Kernel,
) -> Result<()> {
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .context("the BPF object has no read-only data")?;
    assert!(cfg.names.len() <= MAX_NAMES && cfg.pids.len() <= MAX_PIDS);
    for (i, name) in cfg.names.iter().enumerate() {
        rodata.names[i] = crate::model::names::name_words(name);
        rodata.names_mask[i] = crate::model::names::name_mask(name);
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

    Ok(())
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

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use libbpf_rs::skel::{OpenSkel, SkelBuilder};
    use libbpf_rs::{MapCore, MapFlags};

    use super::super::plan::SELFTEST;
    use super::*;
    use crate::model::abi::SockwatchSkelBuilder;
    use crate::model::event::ProtoFamily;

    /// The kernel's socket filter, on the raw event: IPv4-mapped peers count as IPv4;
    /// a unix-domain socket (its path from the decoded event) has no port or peer.
    fn passes(cfg: &Config, e: &types::event, ev: &crate::model::event::Event) -> bool {
        if e.family == 0 {
            return true;
        }
        let kind = crate::model::event::Protocol::from_raw(e.family, e.protocol).unwrap();
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
        let ip = crate::model::event::ip(e.family, &e.remote.addr);
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
            let args = <crate::config::Args as clap::Parser>::try_parse_from(argv).unwrap();
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
            let clock = crate::model::event::Clock { offset_ns: 0 };
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
                let ev = crate::model::event::decode(raw, clock).unwrap();
                let matched = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| crate::model::assertion::model::matches(r, &ev))
                    .fold(0, |m, (i, _)| m | 1 << i);
                let want = u32::from(passes(&cfg, &x.base, &ev)) | matched << 1;
                assert_eq!(got, want, "{case:?}: {ev:?}");
            }
        }
    }
}
