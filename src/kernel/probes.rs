//! The probe table: every BPF program, what it hooks, the lifecycle step it serves
//! and the attach mode that loads it. Choosing a mode is a filter over this table.

use crate::config::mode::Mode;
use crate::model::event::{EventSet, Kind};

/// How a program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// A perf tracepoint (its id is read from tracefs).
    Tracepoint,
    /// A BTF-typed raw tracepoint.
    TpBtf,
    Fentry,
    Fexit,
    Kprobe,
    Kretprobe,
    /// A cgroup socket-address hook, attached to COMMAND's cgroup for --deny.
    Cgroup,
}

impl Attach {
    /// The variant family: programs of one step in one mode share it.
    #[cfg(test)]
    fn family(self) -> &'static str {
        match self {
            Attach::Tracepoint | Attach::TpBtf => "tracepoint",
            Attach::Fentry | Attach::Fexit => "fentry",
            Attach::Kprobe | Attach::Kretprobe => "kprobe",
            Attach::Cgroup => "cgroup",
        }
    }

    /// BTF-typed tracepoints and perf tracepoints are the same hook to the user.
    pub fn is_tracepoint(self) -> bool {
        matches!(self, Attach::Tracepoint | Attach::TpBtf)
    }
}

/// A step of the socket lifecycle, or of the process around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fork,
    Exec,
    Exit,
    /// A socket is created (for its lifetime).
    Born,
    /// connect() starts and returns.
    Connect,
    /// The TCP handshake settles.
    Outcome,
    Listen,
    /// A UDP server binds its port.
    Bind,
    Accept,
    Send,
    Recv,
    /// The sender of a datagram, read at syscall exit (tracepoint mode).
    Peer,
    /// The socket goes away.
    Release,
    /// A TCP socket retransmits, or a reset comes or goes (opt-in).
    Incident,
    /// --deny and --allow decide a connect or datagram send (every mode's own).
    Deny,
}

#[cfg(test)]
impl Step {
    const ALL: [Step; 14] = [
        Step::Fork,
        Step::Exec,
        Step::Exit,
        Step::Born,
        Step::Connect,
        Step::Outcome,
        Step::Listen,
        Step::Bind,
        Step::Accept,
        Step::Send,
        Step::Recv,
        Step::Peer,
        Step::Release,
        Step::Incident,
    ];
}

/// One BPF program.
#[derive(Debug)]
pub struct Probe {
    pub program: &'static str,
    pub attach: Attach,
    /// The tracepoint (`category/name`) or kernel function it hooks.
    pub target: &'static str,
    /// What it serves; the unit tests check each mode has one variant per step.
    #[cfg_attr(not(test), allow(dead_code))]
    pub step: Step,
    pub modes: &'static [Mode],
    /// The events that need it; it is not loaded when none of them is selected.
    pub serves: &'static [Kind],
    /// Which kernels load it.
    pub only: Only,
    /// It hooks unix-domain sockets alone: not loaded when --proto leaves them out.
    pub unix: bool,
}

/// Kernels a program is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Every kernel the mode runs on.
    All,
    /// Those that have its function (sendpage, before 6.5).
    WithFunction,
    /// Receive functions with (true) or without (false) the `nonblock` argument (before 5.19).
    RecvNonblock(bool),
}

const ALL_MODES: &[Mode] = &[Mode::Fentry, Mode::Kprobe, Mode::Tracepoint];
const TP: &[Mode] = &[Mode::Tracepoint];
const FX: &[Mode] = &[Mode::Fentry];
const KP: &[Mode] = &[Mode::Kprobe];
const FX_KP: &[Mode] = &[Mode::Fentry, Mode::Kprobe];

const SEND: &[Kind] = &[Kind::Send, Kind::Close];
const RECV: &[Kind] = &[Kind::Recv, Kind::Close];
const ACCEPT: &[Kind] = &[Kind::Accept, Kind::Close];
const RELEASE: &[Kind] = &[Kind::Close, Kind::Connect];

const fn probe(
    program: &'static str,
    attach: Attach,
    target: &'static str,
    step: Step,
    modes: &'static [Mode],
    serves: &'static [Kind],
) -> Probe {
    Probe {
        program,
        attach,
        target,
        step,
        modes,
        serves,
        only: Only::All,
        unix: false,
    }
}

const fn unix(p: Probe) -> Probe {
    Probe { unix: true, ..p }
}

const fn only(only: Only, p: Probe) -> Probe {
    Probe { only, ..p }
}

const fn optional(p: Probe) -> Probe {
    only(Only::WithFunction, p)
}

const NONBLOCK: Only = Only::RecvNonblock(true);
const NO_NONBLOCK: Only = Only::RecvNonblock(false);

use Attach::*;

/// Every program in the object, by step; within a step, one variant per mode.
#[rustfmt::skip]
pub const PROBES: &[Probe] = &[
    probe("tp_fork", TpBtf, "sched/sched_process_fork", Step::Fork, ALL_MODES, &[Kind::Fork, Kind::Close, Kind::Connect]),
    probe("tp_exec_fds", TpBtf, "sched/sched_process_exec", Step::Exec, TP, &[Kind::Exec, Kind::Close, Kind::Connect]),
    probe("tp_execve", Tracepoint, "syscalls/sys_enter_execve", Step::Exec, TP, RELEASE),
    probe("tp_execveat", Tracepoint, "syscalls/sys_enter_execveat", Step::Exec, TP, RELEASE),
    probe("tp_exec", TpBtf, "sched/sched_process_exec", Step::Exec, FX_KP, &[Kind::Exec]),
    probe("tp_exit_fds", TpBtf, "sched/sched_process_exit", Step::Exit, TP, &[Kind::Exit, Kind::Close, Kind::Connect]),
    probe("tp_exit", TpBtf, "sched/sched_process_exit", Step::Exit, FX_KP, &[Kind::Exit]),
    // Only where processes are followed by descent: they leave the tree when reaped.
    probe("tp_free", TpBtf, "sched/sched_process_free", Step::Exit, ALL_MODES, &[]),
    // Born: for lifetimes.
    probe("tp_socket", Tracepoint, "syscalls/sys_exit_socket", Step::Born, TP, &[Kind::Close]),
    probe("fx_socket", Fentry, "security_socket_post_create", Step::Born, FX, &[Kind::Close]),
    probe("kp_socket", Kprobe, "security_socket_post_create", Step::Born, KP, &[Kind::Close]),
    unix(probe("tp_socketpair", Tracepoint, "syscalls/sys_exit_socketpair", Step::Born, TP, &[Kind::Close])),
    // Connect: started and returned in the process; the handshake settles it.
    probe("tp_connect", Tracepoint, "syscalls/sys_enter_connect", Step::Connect, TP, &[Kind::Connect]),
    probe("tp_connect_r", Tracepoint, "syscalls/sys_exit_connect", Step::Connect, TP, &[Kind::Connect]),
    probe("fx_connect", Fentry, "inet_stream_connect", Step::Connect, FX, &[Kind::Connect]),
    probe("fx_connect_r", Fexit, "inet_stream_connect", Step::Connect, FX, &[Kind::Connect]),
    probe("fx_dconnect", Fentry, "inet_dgram_connect", Step::Connect, FX, &[Kind::Connect]),
    probe("fx_dconnect_r", Fexit, "inet_dgram_connect", Step::Connect, FX, &[Kind::Connect]),
    probe("kp_connect", Kprobe, "inet_stream_connect", Step::Connect, KP, &[Kind::Connect]),
    probe("kp_connect_r", Kretprobe, "inet_stream_connect", Step::Connect, KP, &[Kind::Connect]),
    probe("kp_dconnect", Kprobe, "inet_dgram_connect", Step::Connect, KP, &[Kind::Connect]),
    probe("kp_dconnect_r", Kretprobe, "inet_dgram_connect", Step::Connect, KP, &[Kind::Connect]),
    unix(probe("fx_uconn", Fentry, "unix_stream_connect", Step::Connect, FX, &[Kind::Connect])),
    unix(probe("fx_uconn_r", Fexit, "unix_stream_connect", Step::Connect, FX, &[Kind::Connect])),
    unix(probe("fx_udconn", Fentry, "unix_dgram_connect", Step::Connect, FX, &[Kind::Connect])),
    unix(probe("fx_udconn_r", Fexit, "unix_dgram_connect", Step::Connect, FX, &[Kind::Connect])),
    unix(probe("kp_uconn", Kprobe, "unix_stream_connect", Step::Connect, KP, &[Kind::Connect])),
    unix(probe("kp_uconn_r", Kretprobe, "unix_stream_connect", Step::Connect, KP, &[Kind::Connect])),
    unix(probe("kp_udconn", Kprobe, "unix_dgram_connect", Step::Connect, KP, &[Kind::Connect])),
    unix(probe("kp_udconn_r", Kretprobe, "unix_dgram_connect", Step::Connect, KP, &[Kind::Connect])),
    // Also TCP's release in the tracepoint mode.
    probe("tp_set_state", TpBtf, "sock/inet_sock_set_state", Step::Outcome, ALL_MODES, RELEASE),
    // Listen, and a UDP server's bind.
    probe("tp_listen", Tracepoint, "syscalls/sys_exit_listen", Step::Listen, TP, &[Kind::Listen]),
    probe("fx_listen", Fexit, "inet_listen", Step::Listen, FX, &[Kind::Listen]),
    probe("kp_listen", Kprobe, "inet_listen", Step::Listen, KP, &[Kind::Listen]),
    probe("kp_listen_r", Kretprobe, "inet_listen", Step::Listen, KP, &[Kind::Listen]),
    unix(probe("fx_ulisten", Fexit, "unix_listen", Step::Listen, FX, &[Kind::Listen])),
    unix(probe("kp_ulisten", Kprobe, "unix_listen", Step::Listen, KP, &[Kind::Listen])),
    unix(probe("kp_ulisten_r", Kretprobe, "unix_listen", Step::Listen, KP, &[Kind::Listen])),
    probe("tp_bind", Tracepoint, "syscalls/sys_exit_bind", Step::Bind, TP, &[Kind::Listen]),
    probe("fx_bind", Fexit, "inet_bind", Step::Bind, FX, &[Kind::Listen]),
    probe("fx_bind6", Fexit, "inet6_bind", Step::Bind, FX, &[Kind::Listen]),
    probe("kp_bind", Kprobe, "inet_bind", Step::Bind, KP, &[Kind::Listen]),
    probe("kp_bind_r", Kretprobe, "inet_bind", Step::Bind, KP, &[Kind::Listen]),
    probe("kp_bind6", Kprobe, "inet6_bind", Step::Bind, KP, &[Kind::Listen]),
    probe("kp_bind6_r", Kretprobe, "inet6_bind", Step::Bind, KP, &[Kind::Listen]),
    unix(probe("fx_unix_bind", Fexit, "unix_bind", Step::Bind, FX, &[Kind::Listen])),
    unix(probe("kp_unix_bind", Kprobe, "unix_bind", Step::Bind, KP, &[Kind::Listen])),
    unix(probe("kp_unix_bind_r", Kretprobe, "unix_bind", Step::Bind, KP, &[Kind::Listen])),
    // Accept.
    probe("tp_accept4", Tracepoint, "syscalls/sys_exit_accept4", Step::Accept, TP, ACCEPT),
    probe("tp_accept", Tracepoint, "syscalls/sys_exit_accept", Step::Accept, TP, ACCEPT),
    probe("fx_accept", Fentry, "security_sock_graft", Step::Accept, FX, ACCEPT),
    probe("kp_accept", Kprobe, "security_sock_graft", Step::Accept, KP, ACCEPT),
    // Send.
    probe("tp_send", TpBtf, "sock/sock_send_length", Step::Send, TP, SEND),
    probe("fx_tcp_send", Fexit, "tcp_sendmsg", Step::Send, FX, SEND),
    probe("fx_udp_send", Fexit, "udp_sendmsg", Step::Send, FX, SEND),
    probe("fx_udp6_send", Fexit, "udpv6_sendmsg", Step::Send, FX, SEND),
    optional(probe("fx_tcp_page", Fexit, "tcp_sendpage", Step::Send, FX, SEND)),
    optional(probe("fx_udp_page", Fexit, "udp_sendpage", Step::Send, FX, SEND)),
    probe("kp_tcp_send", Kprobe, "tcp_sendmsg", Step::Send, KP, SEND),
    probe("kp_tcp_send_r", Kretprobe, "tcp_sendmsg", Step::Send, KP, SEND),
    probe("kp_udp_send", Kprobe, "udp_sendmsg", Step::Send, KP, SEND),
    probe("kp_udp_send_r", Kretprobe, "udp_sendmsg", Step::Send, KP, SEND),
    probe("kp_udp6_send", Kprobe, "udpv6_sendmsg", Step::Send, KP, SEND),
    probe("kp_udp6_send_r", Kretprobe, "udpv6_sendmsg", Step::Send, KP, SEND),
    optional(probe("kp_tcp_page", Kprobe, "tcp_sendpage", Step::Send, KP, SEND)),
    optional(probe("kp_tcp_page_r", Kretprobe, "tcp_sendpage", Step::Send, KP, SEND)),
    optional(probe("kp_udp_page", Kprobe, "udp_sendpage", Step::Send, KP, SEND)),
    optional(probe("kp_udp_page_r", Kretprobe, "udp_sendpage", Step::Send, KP, SEND)),
    unix(probe("fx_unix_send", Fexit, "unix_stream_sendmsg", Step::Send, FX, SEND)),
    unix(probe("fx_unix_dsend", Fexit, "unix_dgram_sendmsg", Step::Send, FX, SEND)),
    unix(probe("fx_unix_psend", Fexit, "unix_seqpacket_sendmsg", Step::Send, FX, SEND)),
    unix(optional(probe("fx_unix_page", Fexit, "unix_stream_sendpage", Step::Send, FX, SEND))),
    unix(probe("kp_unix_send", Kprobe, "unix_stream_sendmsg", Step::Send, KP, SEND)),
    unix(probe("kp_unix_send_r", Kretprobe, "unix_stream_sendmsg", Step::Send, KP, SEND)),
    unix(probe("kp_unix_dsend", Kprobe, "unix_dgram_sendmsg", Step::Send, KP, SEND)),
    unix(probe("kp_unix_dsend_r", Kretprobe, "unix_dgram_sendmsg", Step::Send, KP, SEND)),
    unix(probe("kp_unix_psend", Kprobe, "unix_seqpacket_sendmsg", Step::Send, KP, SEND)),
    unix(probe("kp_unix_psend_r", Kretprobe, "unix_seqpacket_sendmsg", Step::Send, KP, SEND)),
    unix(optional(probe("kp_unix_page", Kprobe, "unix_stream_sendpage", Step::Send, KP, SEND))),
    unix(optional(probe("kp_unix_page_r", Kretprobe, "unix_stream_sendpage", Step::Send, KP, SEND))),
    // Receive.
    probe("tp_recv", TpBtf, "sock/sock_recv_length", Step::Recv, TP, RECV),
    only(NO_NONBLOCK, probe("fx_tcp_recv", Fexit, "tcp_recvmsg", Step::Recv, FX, RECV)),
    only(NONBLOCK, probe("fx_tcp_recv_nb", Fexit, "tcp_recvmsg", Step::Recv, FX, RECV)),
    only(NO_NONBLOCK, probe("fx_udp_recv", Fexit, "udp_recvmsg", Step::Recv, FX, RECV)),
    only(NONBLOCK, probe("fx_udp_recv_nb", Fexit, "udp_recvmsg", Step::Recv, FX, RECV)),
    only(NO_NONBLOCK, probe("fx_udp6_recv", Fexit, "udpv6_recvmsg", Step::Recv, FX, RECV)),
    only(NONBLOCK, probe("fx_udp6_recv_nb", Fexit, "udpv6_recvmsg", Step::Recv, FX, RECV)),
    probe("fx_tcp_splice", Fexit, "tcp_splice_read", Step::Recv, FX, RECV),
    probe("kp_tcp_recv", Kprobe, "tcp_recvmsg", Step::Recv, KP, RECV),
    probe("kp_tcp_recv_r", Kretprobe, "tcp_recvmsg", Step::Recv, KP, RECV),
    probe("kp_udp_recv", Kprobe, "udp_recvmsg", Step::Recv, KP, RECV),
    probe("kp_udp_recv_r", Kretprobe, "udp_recvmsg", Step::Recv, KP, RECV),
    probe("kp_udp6_recv", Kprobe, "udpv6_recvmsg", Step::Recv, KP, RECV),
    probe("kp_udp6_recv_r", Kretprobe, "udpv6_recvmsg", Step::Recv, KP, RECV),
    probe("kp_tcp_splice", Kprobe, "tcp_splice_read", Step::Recv, KP, RECV),
    probe("kp_tcp_splice_r", Kretprobe, "tcp_splice_read", Step::Recv, KP, RECV),
    unix(probe("fx_unix_recv", Fexit, "unix_stream_recvmsg", Step::Recv, FX, RECV)),
    unix(probe("fx_unix_drecv", Fexit, "unix_dgram_recvmsg", Step::Recv, FX, RECV)),
    unix(probe("fx_unix_precv", Fexit, "unix_seqpacket_recvmsg", Step::Recv, FX, RECV)),
    unix(probe("fx_usplice", Fexit, "unix_stream_splice_read", Step::Recv, FX, RECV)),
    unix(probe("kp_unix_recv", Kprobe, "unix_stream_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_unix_recv_r", Kretprobe, "unix_stream_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_unix_drecv", Kprobe, "unix_dgram_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_unix_drecv_r", Kretprobe, "unix_dgram_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_unix_precv", Kprobe, "unix_seqpacket_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_unix_precv_r", Kretprobe, "unix_seqpacket_recvmsg", Step::Recv, KP, RECV)),
    unix(probe("kp_usplice", Kprobe, "unix_stream_splice_read", Step::Recv, KP, RECV)),
    unix(probe("kp_usplice_r", Kretprobe, "unix_stream_splice_read", Step::Recv, KP, RECV)),
    unix(probe("fx_rights", Fentry, "scm_detach_fds", Step::Recv, FX, &[Kind::Recv])),
    unix(probe("kp_rights", Kprobe, "scm_detach_fds", Step::Recv, KP, &[Kind::Recv])),
    probe("tp_recvfrom_r", Tracepoint, "syscalls/sys_exit_recvfrom", Step::Peer, TP, &[Kind::Recv]),
    probe("tp_recvmsg_r", Tracepoint, "syscalls/sys_exit_recvmsg", Step::Peer, TP, &[Kind::Recv]),
    probe("tp_splice_r", Tracepoint, "syscalls/sys_exit_splice", Step::Recv, TP, RECV),
    // Release.
    probe("tp_close", Tracepoint, "syscalls/sys_enter_close", Step::Release, TP, RELEASE),
    probe("tp_dup2", Tracepoint, "syscalls/sys_enter_dup2", Step::Release, TP, RELEASE),
    probe("tp_dup3", Tracepoint, "syscalls/sys_enter_dup3", Step::Release, TP, RELEASE),
    probe("tp_close_range", Tracepoint, "syscalls/sys_enter_close_range", Step::Release, TP, RELEASE),
    probe("tp_destroy", TpBtf, "tcp/tcp_destroy_sock", Step::Release, TP, RELEASE),
    probe("fx_release", Fentry, "inet_release", Step::Release, FX, RELEASE),
    probe("kp_release", Kprobe, "inet_release", Step::Release, KP, RELEASE),
    unix(probe("fx_unix_release", Fentry, "unix_release", Step::Release, FX, RELEASE)),
    unix(probe("kp_unix_release", Kprobe, "unix_release", Step::Release, KP, RELEASE)),
    // Incident: what -e retrans,reset asks for.
    probe("tp_retransmit", TpBtf, "tcp/tcp_retransmit_skb", Step::Incident, ALL_MODES, &[Kind::Retrans]),
    probe("tp_rtx_synack", TpBtf, "tcp/tcp_retransmit_synack", Step::Incident, ALL_MODES, &[Kind::Retrans]),
    probe("tp_reset_in", TpBtf, "tcp/tcp_receive_reset", Step::Incident, ALL_MODES, &[Kind::Reset]),
    probe("tp_reset_out", TpBtf, "tcp/tcp_send_reset", Step::Incident, ALL_MODES, &[Kind::Reset]),
    // Deny: loaded with --deny, --allow or --audit only.
    probe("cg_connect4", Cgroup, "connect4", Step::Deny, ALL_MODES, &[]),
    probe("cg_connect6", Cgroup, "connect6", Step::Deny, ALL_MODES, &[]),
    probe("cg_sendmsg4", Cgroup, "sendmsg4", Step::Deny, ALL_MODES, &[]),
    probe("cg_sendmsg6", Cgroup, "sendmsg6", Step::Deny, ALL_MODES, &[]),
];

/// The programs --deny, --allow and --audit attach to COMMAND's cgroup.
pub fn deciding() -> impl Iterator<Item = &'static Probe> {
    PROBES.iter().filter(|p| p.step == Step::Deny)
}

/// The probes a mode loads for the selected events, on a kernel whose receive
/// functions do or do not take `nonblock`.
/// Following processes by descent needs their forks and exits whatever is printed.
pub fn needed(
    mode: Mode,
    events: EventSet,
    nonblock: bool,
    follow: bool,
    unix: bool,
) -> impl Iterator<Item = &'static Probe> {
    PROBES.iter().filter(move |p| {
        p.modes.contains(&mode)
            && (unix || !p.unix)
            && (p.serves.iter().any(|k| events.contains(*k))
                || (follow && matches!(p.step, Step::Fork | Step::Exit)))
            && p.only != Only::RecvNonblock(!nonblock)
    })
}

/// Where the probe table says a program is, for messages.
pub fn describe(p: &Probe) -> String {
    match p.attach {
        Attach::Tracepoint | Attach::TpBtf => {
            let (cat, name) = p.target.split_once('/').unwrap_or(("", p.target));
            format!("the tracepoint {cat}:{name}")
        }
        Attach::Fentry => format!("fentry on {}", p.target),
        Attach::Fexit => format!("fexit on {}", p.target),
        Attach::Kprobe => format!("a kprobe on {}", p.target),
        Attach::Kretprobe => format!("a kretprobe on {}", p.target),
        Attach::Cgroup => format!("the cgroup hook {}", p.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programs(mode: Mode, events: EventSet) -> Vec<&'static str> {
        needed(mode, events, false, false, true)
            .map(|p| p.program)
            .collect()
    }

    #[test]
    fn each_mode_loads_one_variant_of_each_step() {
        for mode in Mode::PREFERENCE {
            let chosen: Vec<&Probe> = needed(mode, EventSet::ALL, false, false, true).collect();
            for step in Step::ALL {
                let mut families: Vec<&str> = chosen
                    .iter()
                    .filter(|p| p.step == step)
                    .map(|p| p.attach.family())
                    .collect();
                families.dedup();
                let expected = match (mode, step) {
                    // The datagram sender comes with the socket functions' msghdr.
                    (Mode::Fentry | Mode::Kprobe, Step::Peer) => 0,
                    _ => 1,
                };
                assert_eq!(families.len(), expected, "{mode} {step:?}: {families:?}");
                // Shared steps are tracepoints in every mode; the rest are the mode's own.
                if let [family] = families[..] {
                    let shared = matches!(
                        step,
                        Step::Fork | Step::Exec | Step::Exit | Step::Outcome | Step::Incident
                    );
                    let own = if shared { "tracepoint" } else { mode.name() };
                    assert_eq!(family, own, "{mode} {step:?}");
                }
            }
            // No program hooks the same target twice in one mode.
            for p in &chosen {
                let twins = chosen
                    .iter()
                    .filter(|q| q.target == p.target && q.attach == p.attach)
                    .count();
                assert_eq!(twins, 1, "{mode}: {} is hooked twice", p.target);
            }
        }
    }

    #[test]
    fn every_program_belongs_to_a_mode_and_fits_the_kernels_name_length() {
        for p in PROBES {
            assert!(!p.modes.is_empty(), "{}", p.program);
            assert!(
                p.program.len() <= 15,
                "{} is longer than the kernel keeps",
                p.program
            );
            let prefix = &p.program[..3];
            let expected = match p.attach.family() {
                "tracepoint" => "tp_",
                "fentry" => "fx_",
                "cgroup" => "cg_",
                _ => "kp_",
            };
            assert_eq!(prefix, expected, "{}", p.program);
        }
    }

    #[test]
    fn deselected_events_load_nothing_of_theirs() {
        let exec = EventSet(Kind::Exec.bit());
        assert_eq!(programs(Mode::Tracepoint, exec), ["tp_exec_fds"]);
        assert_eq!(programs(Mode::Fentry, exec), ["tp_exec"]);
        let accept = EventSet(Kind::Accept.bit());
        assert_eq!(
            programs(Mode::Tracepoint, accept),
            ["tp_accept4", "tp_accept"]
        );
        assert_eq!(programs(Mode::Kprobe, accept), ["kp_accept"]);
        // CLOSE's totals need the byte counters even when SEND/RECV are not shown.
        let close = programs(Mode::Fentry, EventSet(Kind::Close.bit()));
        for p in ["fx_tcp_send", "fx_udp6_recv", "fx_release", "fx_socket"] {
            assert!(close.contains(&p), "{p}: {close:?}");
        }
        assert!(!close.contains(&"fx_listen"));
    }

    #[test]
    fn leaving_unix_sockets_out_loads_none_of_their_hooks() {
        for mode in Mode::PREFERENCE {
            let names = |unix| -> Vec<&str> {
                needed(mode, EventSet::ALL, false, false, unix)
                    .map(|p| p.target)
                    .collect()
            };
            let (with, without) = (names(true), names(false));
            assert!(without.len() < with.len(), "{mode}");
            for target in without {
                assert!(!target.starts_with("unix_"), "{mode}: {target}");
                assert!(!target.contains("socketpair"), "{mode}: {target}");
            }
        }
    }

    #[test]
    fn following_loads_fork_and_exit_whatever_is_printed() {
        for mode in Mode::PREFERENCE {
            let send = EventSet(Kind::Send.bit());
            let steps = |follow| -> Vec<Step> {
                needed(mode, send, false, follow, true)
                    .map(|p| p.step)
                    .collect()
            };
            assert!(!steps(false).contains(&Step::Fork), "{mode}");
            assert!(steps(true).contains(&Step::Fork), "{mode}");
            assert!(steps(true).contains(&Step::Exit), "{mode}");
        }
    }

    #[test]
    fn each_kernel_gets_one_receive_signature() {
        for nonblock in [false, true] {
            let recv: Vec<&str> = needed(
                Mode::Fentry,
                EventSet(Kind::Recv.bit()),
                nonblock,
                false,
                true,
            )
            .filter(|p| p.target == "tcp_recvmsg")
            .map(|p| p.program)
            .collect();
            let expected = if nonblock {
                "fx_tcp_recv_nb"
            } else {
                "fx_tcp_recv"
            };
            assert_eq!(recv, [expected]);
        }
    }

    #[test]
    fn modes_by_preference() {
        assert_eq!(
            Mode::PREFERENCE.map(Mode::name),
            ["fentry", "kprobe", "tracepoint"]
        );
    }
}
