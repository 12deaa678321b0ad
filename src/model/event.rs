//! Typed socket events, decoded from the records the BPF program writes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Result};

use crate::model::abi::types::{
    endpoint, event, event_flag, event_kind, exec_event, proto_bit, reset_way, sock_state, tally,
    tally_key, tcp_end, unix_event, unix_name,
};

const AF_UNIX: u8 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const SOCK_STREAM: u8 = 1;
const SOCK_DGRAM: u8 = 2;
const SOCK_SEQPACKET: u8 = 5;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fork,
    Exec,
    Exit,
    Listen,
    Connect,
    Accept,
    Send,
    Recv,
    Close,
    /// A connect or datagram send that --deny or --allow refused.
    Deny,
    /// A TCP socket sent segments again (opt-in).
    Retrans,
    /// A TCP reset sent or received (opt-in).
    Reset,
    /// A TCP connection that went on retransmitting after its CLOSE, when the kernel
    /// is done with it. It comes with CLOSE: not a kind `--events` names.
    Done,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Fork,
        Kind::Exec,
        Kind::Exit,
        Kind::Listen,
        Kind::Connect,
        Kind::Accept,
        Kind::Send,
        Kind::Recv,
        Kind::Close,
        Kind::Deny,
        Kind::Retrans,
        Kind::Reset,
    ];

    /// The kernel's number for this kind (`enum event_kind`).
    pub const fn raw(self) -> u32 {
        match self {
            Kind::Fork => event_kind::EV_FORK.0,
            Kind::Exec => event_kind::EV_EXEC.0,
            Kind::Exit => event_kind::EV_EXIT.0,
            Kind::Listen => event_kind::EV_LISTEN.0,
            Kind::Connect => event_kind::EV_CONNECT.0,
            Kind::Accept => event_kind::EV_ACCEPT.0,
            Kind::Send => event_kind::EV_SEND.0,
            Kind::Recv => event_kind::EV_RECV.0,
            Kind::Close => event_kind::EV_CLOSE.0,
            Kind::Deny => event_kind::EV_DENY.0,
            Kind::Retrans => event_kind::EV_RETRANS.0,
            Kind::Reset => event_kind::EV_RESET.0,
            Kind::Done => event_kind::EV_DONE.0,
        }
    }

    pub const fn bit(self) -> u32 {
        1 << self.raw()
    }

    fn from_raw(raw: u8) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain([Kind::Done])
            .find(|k| k.raw() == raw as u32)
    }

    /// Lower-case name, as `--events` and JSON spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fork => "fork",
            Kind::Exec => "exec",
            Kind::Exit => "exit",
            Kind::Listen => "listen",
            Kind::Connect => "connect",
            Kind::Accept => "accept",
            Kind::Send => "send",
            Kind::Recv => "recv",
            Kind::Close => "close",
            Kind::Deny => "deny",
            Kind::Retrans => "retrans",
            Kind::Reset => "reset",
            Kind::Done => "done",
        }
    }
}

/// A set of event kinds, as the bit mask the BPF program reads (`1 << kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSet(pub u32);

impl EventSet {
    pub const ALL: EventSet = {
        let mut bits = 0;
        let mut i = 0;
        while i < Kind::ALL.len() {
            bits |= Kind::ALL[i].bit();
            i += 1;
        }
        EventSet(bits)
    };

    /// What is printed when `--events` does not say: all but the opt-in kinds.
    pub const DEFAULT: EventSet =
        EventSet(EventSet::ALL.0 & !(Kind::Retrans.bit() | Kind::Reset.bit()));

    /// Whether it holds `kind`; DONE comes with CLOSE.
    pub fn contains(self, kind: Kind) -> bool {
        let kind = if kind == Kind::Done {
            Kind::Close
        } else {
            kind
        };
        self.0 & kind.bit() != 0
    }

    /// The bits the kernel reads: DONE's with CLOSE's.
    pub fn kernel_bits(self) -> u32 {
        match self.contains(Kind::Close) {
            true => self.0 | Kind::Done.bit(),
            false => self.0,
        }
    }

    pub fn names(self) -> Vec<&'static str> {
        Kind::ALL
            .iter()
            .filter(|k| self.contains(**k))
            .map(|k| k.name())
            .collect()
    }

    /// The union of the `--events` items; the default set when there are none.
    pub fn union(items: &[EventSet]) -> EventSet {
        if items.is_empty() {
            return EventSet::DEFAULT;
        }
        EventSet(items.iter().fold(0, |m, e| m | e.0))
    }
}

/// A socket's kind: an IP transport, or a unix-domain socket's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    UnixStream,
    UnixDgram,
    UnixSeqpacket,
}

impl Protocol {
    /// The PROTO column: one word, the unix-domain ones with their type.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::UnixStream => "unix/stream",
            Protocol::UnixDgram => "unix/dgram",
            Protocol::UnixSeqpacket => "unix/seqpacket",
        }
    }

    /// A unix-domain socket's type (`stream`, `dgram`, `seqpacket`).
    pub fn unix_type(self) -> Option<&'static str> {
        self.name().strip_prefix("unix/")
    }

    /// The kind of socket an event's family and protocol (a unix socket's type) name.
    pub fn from_raw(family: u8, number: u8) -> Option<Protocol> {
        match (family, number) {
            (AF_UNIX, SOCK_STREAM) => Some(Protocol::UnixStream),
            (AF_UNIX, SOCK_DGRAM) => Some(Protocol::UnixDgram),
            (AF_UNIX, SOCK_SEQPACKET) => Some(Protocol::UnixSeqpacket),
            (AF_UNIX, _) => None,
            (_, IPPROTO_TCP) => Some(Protocol::Tcp),
            (_, IPPROTO_UDP) => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// The protocol of an IPPROTO_ number, if sockwatch knows it.
    pub fn from_number(number: u8) -> Option<Protocol> {
        Protocol::from_raw(AF_INET, number)
    }

    /// The number the kernel's event carries: IPPROTO_ or a unix socket's type.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::UnixStream => SOCK_STREAM,
            Protocol::UnixDgram => SOCK_DGRAM,
            Protocol::UnixSeqpacket => SOCK_SEQPACKET,
        }
    }
}

/// `--proto` and `proto=`: a kind of socket, a unix-domain one of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProtoFamily {
    Tcp,
    Udp,
    Unix,
}

impl ProtoFamily {
    #[cfg(test)]
    pub fn of(p: Protocol) -> ProtoFamily {
        match p {
            Protocol::Tcp => ProtoFamily::Tcp,
            Protocol::Udp => ProtoFamily::Udp,
            _ => ProtoFamily::Unix,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtoFamily::Tcp => "tcp",
            ProtoFamily::Udp => "udp",
            ProtoFamily::Unix => "unix",
        }
    }

    /// Its bit in the kernel's `protocols` knob (`enum proto_bit`).
    pub fn bit(self) -> u32 {
        match self {
            ProtoFamily::Tcp => proto_bit::PROTO_TCP.0,
            ProtoFamily::Udp => proto_bit::PROTO_UDP.0,
            ProtoFamily::Unix => proto_bit::PROTO_UNIX.0,
        }
    }

    pub fn parse(text: &str) -> Result<ProtoFamily, String> {
        <ProtoFamily as clap::ValueEnum>::from_str(text, true)
            .map_err(|_| "not a protocol (tcp, udp, unix)".to_string())
    }
}

/// A unix-domain socket's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum UnixAddr {
    /// A filesystem path (its bytes, without the NUL).
    Path(Vec<u8>),
    /// An abstract name (its bytes after the leading NUL).
    Abstract(Vec<u8>),
    /// No address: a socketpair end, an unbound client.
    Unnamed,
}

impl UnixAddr {
    /// An address as the kernel keeps it: sun_path's first `len` bytes.
    pub fn from_sun_path(path: &[u8]) -> UnixAddr {
        match path {
            [] => UnixAddr::Unnamed,
            [0, name @ ..] => UnixAddr::Abstract(name.to_vec()),
            _ => UnixAddr::Path(path.iter().take_while(|&&b| b != 0).copied().collect()),
        }
    }

    /// The kernel's `struct unix_name`, in events and in `unix_ends`.
    pub(crate) fn from_raw(n: &unix_name) -> UnixAddr {
        let len = usize::from(n.len).min(n.path.len());
        let bytes: Vec<u8> = n.path[..len].iter().map(|&c| c as u8).collect();
        UnixAddr::from_sun_path(&bytes)
    }

    /// sun_path's bytes for this address (an abstract name's leading NUL included).
    #[cfg(test)]
    pub fn sun_path(&self) -> Vec<u8> {
        match self {
            UnixAddr::Path(p) => p.clone(),
            UnixAddr::Abstract(name) => [&[0][..], name].concat(),
            UnixAddr::Unnamed => Vec::new(),
        }
    }
}

/// One end of a socket. Formats, the summary, filters and assertions ask it for
/// what they need rather than take it for an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Ip(SocketAddr),
    Unix(UnixAddr),
}

impl Endpoint {
    /// An end as the kernel wrote it (`struct endpoint`), of the event's `family`.
    pub(crate) fn from_raw(family: u8, raw: &endpoint) -> Endpoint {
        Endpoint::Ip(SocketAddr::new(ip(family, &raw.addr), raw.port))
    }

    /// The port, where the end has one.
    pub fn port(&self) -> Option<u16> {
        match self {
            Endpoint::Ip(a) => Some(a.port()),
            Endpoint::Unix(_) => None,
        }
    }

    /// The address, where the end has one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Ip(a) => Some(a.ip()),
            Endpoint::Unix(_) => None,
        }
    }

    /// A unix-domain end's address.
    pub fn unix(&self) -> Option<&UnixAddr> {
        match self {
            Endpoint::Unix(u) => Some(u),
            Endpoint::Ip(_) => None,
        }
    }

    /// The end without what tells one connection from another of the same client
    /// (its port): `127.0.0.1:*`, `[::1]:*`.
    pub fn host(&self) -> String {
        match self {
            Endpoint::Ip(SocketAddr::V4(a)) => format!("{}:*", a.ip()),
            Endpoint::Ip(SocketAddr::V6(a)) => format!("[{}]:*", a.ip()),
            Endpoint::Unix(_) => self.to_string(),
        }
    }
}

/// A unix-domain address as the LOCAL and REMOTE columns show it: a path escaped as
/// process names are (so no byte can break a line or a column, and a path that
/// starts with `@` or `(` cannot pass for the others), `@name` for an abstract
/// name, `(unnamed)`.
pub fn unix_text(addr: &UnixAddr) -> String {
    match addr {
        UnixAddr::Path(p) => {
            let text = crate::model::text::escape(p);
            match text.strip_prefix(['@', '(']) {
                Some(rest) => format!("\\x{:02x}{rest}", p[0]),
                None => text,
            }
        }
        UnixAddr::Abstract(name) => format!("@{}", crate::model::text::escape(name)),
        UnixAddr::Unnamed => "(unnamed)".to_string(),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ip(a) => a.fmt(f),
            Endpoint::Unix(u) => f.write_str(&unix_text(u)),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Endpoint, Self::Err> {
        s.parse().map(Endpoint::Ip)
    }
}

/// The socket an event happened on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub protocol: Protocol,
    pub local: Endpoint,
    /// None when there is no peer (listening, unconnected UDP) or it is unknown.
    pub remote: Option<Endpoint>,
    /// The server's end of an accepted connection, whoever holds it (the kernel
    /// marks it from the accept on).
    pub accepted: bool,
    /// A unix-domain socket's peer process, from the kernel's peer credentials.
    pub peer_pid: Option<u32>,
    /// That process's name, where sockwatch could read it (`Event::name_peer`).
    pub peer_process: Option<Vec<u8>>,
    /// A unix-domain SEND's or RECV's descriptors passed with it (SCM_RIGHTS).
    pub fds: u8,
}

impl Socket {
    /// What a summary row and `path=` are about: an IP socket's remote end (a
    /// server's client without its port); a unix-domain socket's peer's address
    /// when named (a client's server), else its own (a server's); `*` without either.
    pub fn summary_end(&self) -> String {
        summary_end(&self.local, self.remote.as_ref(), self.accepted)
    }

    /// A unix-domain socket's path as --path and `path=` see it (see `summary_end`).
    #[cfg(test)]
    pub fn path(&self) -> Option<&UnixAddr> {
        fn named(e: &Endpoint) -> Option<&UnixAddr> {
            e.unix().filter(|u| **u != UnixAddr::Unnamed)
        }
        self.remote
            .as_ref()
            .and_then(named)
            .or_else(|| named(&self.local))
    }
}

pub(crate) fn summary_end(local: &Endpoint, remote: Option<&Endpoint>, accepted: bool) -> String {
    match (local, remote) {
        (Endpoint::Unix(l), r) => {
            let r = r.and_then(Endpoint::unix);
            match (l, r) {
                (_, Some(r)) if *r != UnixAddr::Unnamed => unix_text(r),
                (UnixAddr::Unnamed, Some(r)) => unix_text(r),
                (UnixAddr::Unnamed, None) => "*".to_string(),
                (l, _) => unix_text(l),
            }
        }
        (_, r) => remote_end(r, accepted),
    }
}

/// A summary row's end from the remote end alone: `*` without one, a server's
/// client without its port; a unix-domain address (the kernel's -c rows hold the
/// one summary_end picks) as it is.
pub(crate) fn remote_end(remote: Option<&Endpoint>, accepted: bool) -> String {
    match remote {
        None => "*".to_string(),
        Some(r) if accepted => r.host(),
        Some(r) => r.to_string(),
    }
}

/// How a connect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectResult {
    Ok,
    /// The errno the connect failed with (positive).
    Failed(i32),
    /// The socket was closed before the handshake had an outcome.
    Aborted,
}

/// How a process ended, from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal { signal: i32, core: bool },
}

impl ExitStatus {
    pub fn from_wait_status(status: i64) -> ExitStatus {
        let sig = (status & 0x7f) as i32;
        if sig == 0 {
            ExitStatus::Code(((status >> 8) & 0xff) as i32)
        } else {
            ExitStatus::Signal {
                signal: sig,
                core: status & 0x80 != 0,
            }
        }
    }
}

/// The part of an event that depends on its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A traced process was born by fork, from `ppid`.
    Fork {
        ppid: u32,
    },
    Exec {
        filename: Vec<u8>,
        ppid: u32,
        /// The kernel's path was longer than sockwatch reads: `filename` is its start.
        cut: bool,
    },
    Exit(ExitStatus),
    /// A TCP listen (with its backlog), or a UDP bind to a named port (none).
    Listen {
        backlog: Option<u32>,
    },
    Connect {
        result: ConnectResult,
        latency_ns: u64,
    },
    Accept,
    Send {
        bytes: u64,
    },
    Recv {
        bytes: u64,
    },
    /// A refused call: `sendmsg` for a datagram sent to an address, else a connect;
    /// `rule` the --deny it matched (0-based), None when it fitted no --allow.
    Deny {
        sendmsg: bool,
        rule: Option<usize>,
    },
    /// Segments a TCP socket sent again.
    Retrans {
        segs: u64,
    },
    /// A TCP reset: received from the peer, or sent.
    Reset {
        received: bool,
    },
    Close {
        sent: u64,
        received: u64,
        lifetime_ns: u64,
        /// Open before tracing began: totals and lifetime count from then.
        partial: bool,
        /// A TCP connection's: how it ended, its RTT and retransmits.
        health: Option<Health>,
    },
    /// The kernel is done with a TCP connection that retransmitted after its CLOSE:
    /// `health` as it ended, `after_close` of its retransmits came after CLOSE.
    Done {
        lifetime_ns: u64,
        partial: bool,
        health: Health,
        after_close: u32,
    },
}

/// How a TCP connection ended: whichever of these came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEnd {
    /// This side closed first, with a FIN.
    LocalFin,
    PeerFin,
    /// This side reset it: data left unread at close, SO_LINGER 0, an abort.
    LocalRst,
    PeerRst,
    /// The kernel gave up on a peer that stopped answering.
    Timeout,
}

impl TcpEnd {
    fn from_raw(end: u8) -> Option<TcpEnd> {
        Some(match u32::from(end) {
            e if e == tcp_end::END_LOCAL_FIN.0 => TcpEnd::LocalFin,
            e if e == tcp_end::END_PEER_FIN.0 => TcpEnd::PeerFin,
            e if e == tcp_end::END_LOCAL_RST.0 => TcpEnd::LocalRst,
            e if e == tcp_end::END_PEER_RST.0 => TcpEnd::PeerRst,
            e if e == tcp_end::END_TIMEOUT.0 => TcpEnd::Timeout,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TcpEnd::LocalFin => "local-fin",
            TcpEnd::PeerFin => "peer-fin",
            TcpEnd::LocalRst => "local-rst",
            TcpEnd::PeerRst => "peer-rst",
            TcpEnd::Timeout => "timeout",
        }
    }
}

/// A TCP connection at its CLOSE, from the socket's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub end: TcpEnd,
    /// The smoothed round-trip time.
    pub rtt_us: u32,
    /// Segments retransmitted over the connection's life.
    pub retrans: u32,
}

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The kernel's stamp (CLOCK_BOOTTIME): steady where the wall clock may step.
    pub boot_ns: u64,
    pub pid: u32,
    pub tid: u32,
    /// The process name as the kernel has it: raw bytes, untrusted.
    pub process: Vec<u8>,
    pub socket: Option<Socket>,
    pub detail: Detail,
    /// Bit i: the kernel matched it to rule i (the --expect options, then --forbid).
    pub matched: u16,
    /// Who the process is, where the kernel could say (not on lines of a socket's
    /// owner made where another task ran before the owner was known).
    pub who: Option<Who>,
}

/// A process's identity as the kernel gave it, and its cgroup's path once looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub uid: u32,
    pub ppid: u32,
    pub cgroup_id: u64,
    /// The path under the cgroup2 mount (`/system.slice/nginx.service`).
    pub cgroup: Option<String>,
}

/// Who a summary row's processes are, with -W or --json: rows are kept apart by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    pub uid: u32,
    pub cgroup_id: u64,
}

impl Who {
    pub fn identity(&self) -> Identity {
        Identity {
            uid: self.uid,
            cgroup_id: self.cgroup_id,
        }
    }
}

/// An identity the kernel knew (cgroup id 0: it did not).
fn known_identity(uid: u32, cgroup_id: u64) -> Option<Identity> {
    (cgroup_id != 0).then_some(Identity { uid, cgroup_id })
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self.detail {
            Detail::Fork { .. } => Kind::Fork,
            Detail::Exec { .. } => Kind::Exec,
            Detail::Exit(_) => Kind::Exit,
            Detail::Listen { .. } => Kind::Listen,
            Detail::Connect { .. } => Kind::Connect,
            Detail::Accept => Kind::Accept,
            Detail::Send { .. } => Kind::Send,
            Detail::Recv { .. } => Kind::Recv,
            Detail::Close { .. } => Kind::Close,
            Detail::Deny { .. } => Kind::Deny,
            Detail::Retrans { .. } => Kind::Retrans,
            Detail::Reset { .. } => Kind::Reset,
            Detail::Done { .. } => Kind::Done,
        }
    }

    /// A 0-byte receive on a stream: the peer closed its side.
    pub fn is_end_of_stream(&self) -> bool {
        matches!(self.detail, Detail::Recv { bytes: 0 })
            && matches!(&self.socket, Some(s) if s.protocol == Protocol::Tcp || s.protocol == Protocol::UnixStream)
    }
}

/// Converts kernel CLOCK_BOOTTIME stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - boottime, in nanoseconds.
    pub offset_ns: i64,
}

fn clock_ns(clock: nix::time::ClockId) -> Result<i64> {
    let t = nix::time::clock_gettime(clock)?;
    Ok(t.tv_sec() * 1_000_000_000 + t.tv_nsec())
}

impl Clock {
    /// The offset now: a stepped wall clock moves it, so the poll loop asks again.
    pub fn now() -> Result<Clock> {
        let boot = boot_now_ns()? as i64;
        let real = clock_ns(nix::time::ClockId::CLOCK_REALTIME)?;
        Ok(Clock {
            offset_ns: real - boot,
        })
    }
}

/// How far this time namespace's CLOCK_BOOTTIME is ahead of the kernel's own, which
/// stamps the events (time_namespaces(7)); 0 outside one.
fn namespace_boottime_ns() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::fs::read_to_string("/proc/self/timens_offsets")
            .map_or(0, |text| timens_boottime_ns(&text))
    })
}

fn timens_boottime_ns(text: &str) -> i64 {
    text.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "boottime" {
                return None;
            }
            let secs: i64 = words.next()?.parse().ok()?;
            let nanos: i64 = words.next()?.parse().ok()?;
            Some(secs * 1_000_000_000 + nanos)
        })
        .unwrap_or(0)
}

/// CLOCK_BOOTTIME now as the kernel keeps it, the clock of event stamps.
pub fn boot_now_ns() -> Result<u64> {
    Ok((clock_ns(nix::time::ClockId::CLOCK_BOOTTIME)? - namespace_boottime_ns()) as u64)
}

/// A C string the kernel wrote (`char[]`, as the skeleton types it), up to its NUL.
fn until_nul(chars: &[i8]) -> Vec<u8> {
    chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect()
}

/// An address as the kernel wrote it, a v4-mapped one as IPv4.
pub(crate) fn ip(family: u8, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        // A v4-mapped address (::ffff:a.b.c.d) is an IPv4 peer on a dual-stack socket.
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

fn socket(e: &event, data: &[u8]) -> Result<Option<Socket>> {
    if e.family == 0 {
        return Ok(None);
    }
    if e.family != AF_INET && e.family != AF_INET6 && e.family != AF_UNIX {
        bail!("unknown address family {}", e.family);
    }
    let Some(protocol) = Protocol::from_raw(e.family, e.protocol) else {
        bail!("unknown protocol {}", e.protocol);
    };
    let unknown = e.flags as u32 & event_flag::EF_PEER_UNKNOWN.0 != 0;
    let accepted = e.flags as u32 & event_flag::EF_ACCEPTED.0 != 0;
    if e.family == AF_UNIX {
        let mut u = unix_event::default();
        if plain::copy_from_bytes(&mut u, data).is_err() {
            bail!("short unix-domain record ({} bytes)", data.len());
        }
        let remote =
            (u.has_remote != 0 && !unknown).then(|| Endpoint::Unix(UnixAddr::from_raw(&u.remote)));
        return Ok(Some(Socket {
            protocol,
            local: Endpoint::Unix(UnixAddr::from_raw(&u.local)),
            remote,
            accepted,
            peer_pid: (u.peer_pid != 0).then_some(u.peer_pid),
            peer_process: None,
            fds: u.fds,
        }));
    }
    let local = Endpoint::from_raw(e.family, &e.local);
    let remote = Endpoint::from_raw(e.family, &e.remote);
    // Port 0 is no peer (listening, unconnected, a connect that never started),
    // except the address a CONNECT aimed at: a connect may name port 0.
    let aimed = e.kind == event_kind::EV_CONNECT.0 as u8 && e.remote.addr != [0; 16];
    let no_peer = e.remote.port == 0 && !aimed;
    Ok(Some(Socket {
        protocol,
        local,
        remote: (!no_peer && !unknown).then_some(remote),
        accepted,
        peer_pid: None,
        peer_process: None,
        fds: 0,
    }))
}

/// Sends and receives the kernel added up for `-c` instead of sending each: one
/// summary row's worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub process: Vec<u8>,
    pub identity: Option<Identity>,
    pub remote: Option<Endpoint>,
    /// The server's end of accepted connections: `remote`'s port is not kept.
    pub accepted: bool,
    pub sent: u64,
    pub received: u64,
    /// The sends and receives.
    pub events: u64,
}

/// -c's unix-domain row addresses, by the hash that stands for them in the
/// kernel's rows (`unix_ends`).
pub type UnixEnds = std::collections::HashMap<u64, UnixAddr>;

impl Tally {
    /// What a socket's owner sent and received, added up in its entry and not yet
    /// moved to its row; None when there is nothing.
    pub fn of_socket(st: &sock_state, names: &UnixEnds) -> Result<Option<Tally>> {
        if st.tally_events == 0 {
            return Ok(None);
        }
        let remote = &st.ends.remote;
        Ok(Some(Tally {
            process: until_nul(&st.comm),
            identity: known_identity(st.who.uid, st.who.cgroup),
            remote: tally_end(st.ends.family, remote, remote.port != 0, names)?,
            accepted: st.accepted != 0,
            sent: st.tally_sent,
            received: st.tally_received,
            events: st.tally_events,
        }))
    }

    pub fn decode(key: &tally_key, totals: &tally, names: &UnixEnds) -> Result<Tally> {
        Ok(Tally {
            process: until_nul(&key.comm),
            identity: known_identity(key.uid, key.cgroup),
            remote: tally_end(key.family, &key.remote, key.peer != 0, names)?,
            accepted: key.accepted != 0,
            sent: totals.sent,
            received: totals.received,
            events: totals.events,
        })
    }
}

/// A row's end: an IP address, or the unix-domain address its hash stands for.
fn tally_end(family: u8, raw: &endpoint, peer: bool, names: &UnixEnds) -> Result<Option<Endpoint>> {
    if !peer {
        return Ok(None);
    }
    if family != AF_UNIX {
        return Ok(Some(Endpoint::from_raw(family, raw)));
    }
    let id = u64::from_ne_bytes(raw.addr[..8].try_into().unwrap());
    match names.get(&id) {
        Some(name) => Ok(Some(Endpoint::Unix(name.clone()))),
        None => bail!("a summary row's unix-domain address is missing from the kernel's table"),
    }
}

/// Decodes one ring-buffer record.
pub fn decode(data: &[u8], clock: Clock) -> Result<Event> {
    let mut e = event::default();
    if plain::copy_from_bytes(&mut e, data).is_err() {
        bail!("short event record ({} bytes)", data.len());
    }
    let Some(kind) = Kind::from_raw(e.kind) else {
        bail!("unknown event kind {}", e.kind);
    };
    let flag = |f: event_flag| e.flags as u32 & f.0 != 0;
    let detail = match kind {
        Kind::Exec => {
            let mut x = exec_event::default();
            if plain::copy_from_bytes(&mut x, data).is_err() {
                bail!("short exec record ({} bytes)", data.len());
            }
            Detail::Exec {
                filename: until_nul(&x.filename),
                ppid: e.value as u32,
                cut: flag(event_flag::EF_CUT),
            }
        }
        Kind::Fork => Detail::Fork {
            ppid: e.value as u32,
        },
        Kind::Exit => Detail::Exit(ExitStatus::from_wait_status(e.value)),
        Kind::Listen => Detail::Listen {
            // A datagram server's bind has none.
            backlog: matches!(
                Protocol::from_raw(e.family, e.protocol),
                Some(Protocol::Tcp | Protocol::UnixStream | Protocol::UnixSeqpacket)
            )
            .then_some(e.value as u32),
        },
        Kind::Connect => Detail::Connect {
            result: if flag(event_flag::EF_ABORTED) {
                ConnectResult::Aborted
            } else if e.value == 0 {
                ConnectResult::Ok
            } else {
                ConnectResult::Failed(i32::try_from(e.value.saturating_neg()).unwrap_or(i32::MAX))
            },
            latency_ns: e.duration_ns,
        },
        Kind::Accept => Detail::Accept,
        Kind::Send => Detail::Send {
            bytes: e.value as u64,
        },
        Kind::Recv => Detail::Recv {
            bytes: e.value as u64,
        },
        Kind::Deny => Detail::Deny {
            sendmsg: flag(event_flag::EF_SENDMSG),
            rule: usize::try_from(e.value).ok(),
        },
        Kind::Retrans => Detail::Retrans {
            segs: e.value as u64,
        },
        Kind::Reset => Detail::Reset {
            received: e.value == i64::from(reset_way::RESET_RECEIVED.0),
        },
        Kind::Close => Detail::Close {
            sent: e.sent,
            received: e.received,
            lifetime_ns: e.duration_ns,
            partial: flag(event_flag::EF_PARTIAL),
            health: TcpEnd::from_raw(e.end).map(|end| Health {
                end,
                rtt_us: e.rtt_us,
                retrans: e.retrans,
            }),
        },
        Kind::Done => {
            let Some(end) = TcpEnd::from_raw(e.end) else {
                bail!("a DONE record without an end ({})", e.end);
            };
            Detail::Done {
                lifetime_ns: e.duration_ns,
                partial: flag(event_flag::EF_PARTIAL),
                health: Health {
                    end,
                    rtt_us: e.rtt_us,
                    retrans: e.retrans,
                },
                after_close: e.value as u32,
            }
        }
    };
    Ok(Event {
        // Saturating: a corrupt stamp must not overflow.
        time_ns: (e.ts_ns as i64).saturating_add(clock.offset_ns),
        boot_ns: e.ts_ns,
        pid: e.pid,
        tid: e.tid,
        process: until_nul(&e.comm),
        socket: socket(&e, data)?,
        detail,
        matched: e.matched,
        who: (e.who.cgroup != 0).then_some(Who {
            uid: e.who.uid,
            ppid: e.who.ppid,
            cgroup_id: e.who.cgroup,
            cgroup: None,
        }),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn raw(kind: event_kind) -> event {
        let mut comm = [0i8; 16];
        for (d, s) in comm.iter_mut().zip(b"srv") {
            *d = *s as i8;
        }
        event {
            ts_ns: 1_000,
            pid: 10,
            tid: 11,
            comm,
            kind: kind.0 as u8,
            ..Default::default()
        }
    }

    pub fn bytes<T>(v: &T) -> Vec<u8> {
        // SAFETY: T is a plain repr(C) struct generated from the BPF ABI.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
            .to_vec()
    }

    const CLOCK: Clock = Clock { offset_ns: 5 };

    #[test]
    fn decodes_a_done_and_counts_it_with_close() {
        let mut e = raw(event_kind::EV_DONE);
        e.family = AF_INET;
        e.protocol = IPPROTO_TCP;
        e.end = tcp_end::END_LOCAL_FIN.0 as u8;
        e.retrans = 1105;
        e.value = 964;
        e.rtt_us = 80;
        e.duration_ns = 7;
        let ev = decode(&bytes(&e), CLOCK).unwrap();
        assert_eq!(ev.kind(), Kind::Done);
        assert_eq!(
            ev.detail,
            Detail::Done {
                lifetime_ns: 7,
                partial: false,
                health: Health {
                    end: TcpEnd::LocalFin,
                    rtt_us: 80,
                    retrans: 1105
                },
                after_close: 964
            }
        );
        // Printed wherever CLOSE is, and never named on its own.
        let close = EventSet(Kind::Close.bit());
        assert!(close.contains(Kind::Done));
        assert!(!EventSet(Kind::Send.bit()).contains(Kind::Done));
        assert_eq!(close.kernel_bits(), Kind::Close.bit() | Kind::Done.bit());
        assert!(!EventSet::ALL.names().contains(&"done"));
        // A DONE with no end is a broken record.
        e.end = 0;
        assert!(decode(&bytes(&e), CLOCK).is_err());
    }

    #[test]
    fn decodes_a_v4_send() {
        let mut e = raw(event_kind::EV_SEND);
        e.family = AF_INET;
        e.protocol = IPPROTO_TCP;
        e.local.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.remote.addr[..4].copy_from_slice(&[127, 0, 0, 2]);
        e.local.port = 8080;
        e.remote.port = 40000;
        e.value = 5;
        let ev = decode(&bytes(&e), CLOCK).unwrap();
        assert_eq!(ev.time_ns, 1_005);
        assert_eq!(ev.process, b"srv");
        assert_eq!(ev.detail, Detail::Send { bytes: 5 });
        let s = ev.socket.unwrap();
        assert_eq!(s.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.remote, Some("127.0.0.2:40000".parse().unwrap()));
    }

    #[test]
    fn v4_mapped_v6_is_shown_as_v4() {
        let mut e = raw(event_kind::EV_ACCEPT);
        e.family = AF_INET6;
        e.protocol = IPPROTO_TCP;
        let mapped: Ipv6Addr = "::ffff:127.0.0.1".parse().unwrap();
        e.local.addr = mapped.octets();
        e.remote.addr = Ipv6Addr::LOCALHOST.octets();
        e.remote.port = 9;
        let s = decode(&bytes(&e), CLOCK).unwrap().socket.unwrap();
        assert_eq!(s.local.ip(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            s.remote.unwrap().ip(),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn unconnected_and_unknown_peers_are_none() {
        let mut e = raw(event_kind::EV_RECV);
        e.family = AF_INET;
        e.protocol = IPPROTO_UDP;
        let s = decode(&bytes(&e), CLOCK).unwrap().socket.unwrap();
        assert_eq!(s.remote, None);
        e.remote.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        e.remote.port = 53;
        e.flags = event_flag::EF_PEER_UNKNOWN.0 as u8;
        assert_eq!(
            decode(&bytes(&e), CLOCK).unwrap().socket.unwrap().remote,
            None
        );
    }

    #[test]
    fn connect_results() {
        let mut e = raw(event_kind::EV_CONNECT);
        e.family = AF_INET;
        e.protocol = IPPROTO_TCP;
        e.value = -111;
        e.duration_ns = 42;
        let d = decode(&bytes(&e), CLOCK).unwrap().detail;
        assert_eq!(
            d,
            Detail::Connect {
                result: ConnectResult::Failed(111),
                latency_ns: 42
            }
        );
        e.value = 0;
        e.flags = event_flag::EF_ABORTED.0 as u8;
        let d = decode(&bytes(&e), CLOCK).unwrap().detail;
        assert!(matches!(
            d,
            Detail::Connect {
                result: ConnectResult::Aborted,
                ..
            }
        ));
    }

    #[test]
    fn exit_status() {
        assert_eq!(ExitStatus::from_wait_status(3 << 8), ExitStatus::Code(3));
        assert_eq!(
            ExitStatus::from_wait_status(9),
            ExitStatus::Signal {
                signal: 9,
                core: false
            }
        );
        assert_eq!(
            ExitStatus::from_wait_status(0x80 | 11),
            ExitStatus::Signal {
                signal: 11,
                core: true
            }
        );
    }

    #[test]
    fn fork_and_udp_listen() {
        let mut e = raw(event_kind::EV_FORK);
        e.value = 4000;
        assert_eq!(
            decode(&bytes(&e), CLOCK).unwrap().detail,
            Detail::Fork { ppid: 4000 }
        );
        let mut e = raw(event_kind::EV_LISTEN);
        e.family = AF_INET;
        e.value = 128;
        e.protocol = IPPROTO_TCP;
        let tcp = decode(&bytes(&e), CLOCK).unwrap();
        assert_eq!(tcp.detail, Detail::Listen { backlog: Some(128) });
        e.protocol = IPPROTO_UDP;
        e.value = 0;
        let udp = decode(&bytes(&e), CLOCK).unwrap();
        assert_eq!(udp.detail, Detail::Listen { backlog: None });
    }

    #[test]
    fn a_time_namespace_boottime_offset_is_read() {
        let text = "monotonic           0         0\nboottime         3600       250\n";
        assert_eq!(timens_boottime_ns(text), 3_600_000_000_250);
        assert_eq!(timens_boottime_ns(""), 0);
    }

    #[test]
    fn exec_carries_the_filename() {
        let mut x = exec_event {
            base: raw(event_kind::EV_EXEC),
            ..Default::default()
        };
        for (d, s) in x.filename.iter_mut().zip(b"/usr/bin/curl") {
            *d = *s as i8;
        }
        x.base.value = 77;
        let ev = decode(&bytes(&x), CLOCK).unwrap();
        assert_eq!(
            ev.detail,
            Detail::Exec {
                filename: b"/usr/bin/curl".to_vec(),
                ppid: 77,
                cut: false,
            }
        );
        assert_eq!(ev.socket, None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(&[1, 2, 3], CLOCK).is_err());
        let mut e = raw(event_kind::EV_SEND);
        e.kind = 99;
        assert!(decode(&bytes(&e), CLOCK).is_err());
    }

    #[test]
    fn a_tally_is_a_summary_row() {
        let mut key = tally_key {
            family: AF_INET6,
            peer: 1,
            ..Default::default()
        };
        for (d, s) in key.comm.iter_mut().zip(b"srv") {
            *d = *s as i8;
        }
        key.remote.addr = "::ffff:127.0.0.3".parse::<Ipv6Addr>().unwrap().octets();
        key.remote.port = 80;
        let totals = tally {
            sent: 5,
            received: 7,
            events: 3,
        };
        let names = UnixEnds::new();
        let t = Tally::decode(&key, &totals, &names).unwrap();
        assert_eq!(t.process, b"srv");
        assert_eq!(t.identity, None);
        assert_eq!(t.remote, Some("127.0.0.3:80".parse().unwrap()));
        assert_eq!((t.sent, t.received, t.events, t.accepted), (5, 7, 3, false));
        key.peer = 0;
        assert_eq!(Tally::decode(&key, &totals, &names).unwrap().remote, None);
        (key.uid, key.cgroup) = (1000, 77);
        let identity = Some(Identity {
            uid: 1000,
            cgroup_id: 77,
        });
        assert_eq!(
            Tally::decode(&key, &totals, &names).unwrap().identity,
            identity
        );
    }

    #[test]
    fn a_unix_tally_names_its_address_by_hash() {
        let mut key = tally_key {
            family: AF_UNIX,
            protocol: SOCK_STREAM,
            peer: 1,
            ..Default::default()
        };
        key.remote.addr[..8].copy_from_slice(&42u64.to_ne_bytes());
        key.remote.port = 1;
        let totals = tally {
            sent: 10,
            received: 20,
            events: 2,
        };
        let mut names = UnixEnds::new();
        assert!(Tally::decode(&key, &totals, &names).is_err());
        names.insert(42, UnixAddr::Path(b"/run/app.sock".to_vec()));
        let t = Tally::decode(&key, &totals, &names).unwrap();
        assert_eq!(
            t.remote,
            Some(Endpoint::Unix(UnixAddr::Path(b"/run/app.sock".to_vec())))
        );
        assert_eq!((t.sent, t.received, t.events), (10, 20, 2));
    }
}
