//! `--expect` and `--forbid`: event expressions, matching, and the verdict.

use std::fmt;

use crate::model::abi::types::{destination, match_has, match_result, rule, rule_term};
use crate::model::event::{Event, EventSet, Kind, ProtoFamily, Protocol};
use crate::model::names::{name_mask, name_words};
use crate::model::prefix::Prefix;
use crate::model::text::{errno_name, escape};
use crate::model::unix_path::PathPattern;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Terms in one expression, and expressions in all: the kernel's table sizes.
pub fn max_terms() -> usize {
    rule::default().terms.len()
}

pub fn max_rules() -> usize {
    crate::model::abi::knob_len(|r| &r.rules)
}

/// An event name (or `any`) and `key=value` / `key!=value` terms, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    text: String,
    kind: Option<Kind>,
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    negated: bool,
    test: Test,
}

/// What one term asks of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    /// Local or remote port.
    Port(u16),
    Lport(u16),
    Rport(u16),
    Peer(Prefix),
    Proto(ProtoFamily),
    /// A unix-domain socket's path (its peer's when named, else its own).
    Path(PathPattern),
    Result(Outcome),
    Process(Vec<u8>),
}

const AF_UNIX: u8 = 1;

/// `result=`: a connect's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Any failure, aborted included.
    Failed,
    Aborted,
    Errno(i32),
}

const KEYS: &str = "port, lport, rport, peer, proto, path, result, process";

impl Expr {
    /// Parses an expression; the error names the bad word and why.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut words = text.split_whitespace();
        let first = words
            .next()
            .ok_or("empty expression: give an event name or `any`")?;
        let name = first.to_ascii_lowercase();
        let kind = if name == "any" {
            None
        } else {
            Some(
                Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == name)
                    .ok_or_else(|| {
                        format!(
                            "{first:?} is not an event ({}, any)",
                            EventSet::ALL.names().join(", ")
                        )
                    })?,
            )
        };
        let terms: Vec<Term> = words
            .map(|w| Term::parse(w).map_err(|why| format!("bad term {w:?}: {why}")))
            .collect::<Result<_, _>>()?;
        if terms.len() > max_terms() {
            return Err(format!("more than {} terms", max_terms()));
        }
        if let Some(k) = kind {
            if let Some(t) = terms.iter().find(|t| !t.test.can_be_about(k)) {
                return Err(format!(
                    "{} events have no {}: the expression could never match",
                    k.name(),
                    t.test.field()
                ));
            }
        }
        Ok(Expr {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            kind,
            terms,
        })
    }

    /// An expression for --deny or --allow: about a connect or a datagram send (or
    /// `any` of the two), with terms the kernel knows when the call is made.
    pub fn parse_policy(text: &str) -> Result<Expr, String> {
        let expr = Expr::parse(text)?;
        if expr
            .kind
            .is_some_and(|k| k != Kind::Connect && k != Kind::Send)
        {
            return Err("--deny and --allow are about connect or send (or any of the two)".into());
        }
        let unknown =
            |t: &&Term| matches!(t.test, Test::Port(_) | Test::Lport(_) | Test::Result(_));
        if let Some(t) = expr.terms.iter().find(unknown) {
            return Err(format!(
                "{} is not known when a call is decided (peer, rport, proto and process are)",
                t.test.field()
            ));
        }
        // The kernel's cgroup hooks decide IP connects and sends only.
        let unix = |t: &&Term| matches!(t.test, Test::Path(_) | Test::Proto(ProtoFamily::Unix));
        if expr.terms.iter().any(|t| unix(&t)) {
            return Err(
                "--deny and --allow decide TCP and UDP calls only: a unix-domain connect cannot be refused"
                    .into(),
            );
        }
        Ok(expr)
    }

    /// The event kinds it can match, which the kernel must report.
    pub fn kinds(&self) -> EventSet {
        self.kind.map_or(EventSet::DEFAULT, |k| EventSet(k.bit()))
    }

    /// The kernel's form: the kinds, and each term as masked compares of the event's
    /// fields (see `struct match_key`).
    pub fn rule(&self) -> rule {
        let mut r = rule {
            kinds: self.kinds().0,
            ..Default::default()
        };
        for (slot, term) in r.terms.iter_mut().zip(&self.terms) {
            *slot = term.compile();
        }
        r
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Term {
    fn parse(word: &str) -> Result<Term, String> {
        let (key, negated, value) = if let Some((k, v)) = word.split_once("!=") {
            (k, true, v)
        } else if let Some((k, v)) = word.split_once('=') {
            (k, false, v)
        } else {
            return Err("expected key=value or key!=value".into());
        };
        if value.is_empty() {
            return Err("no value".into());
        }
        let port = || {
            value
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| "not a port (1-65535)".to_string())
        };
        let test = match key.to_ascii_lowercase().as_str() {
            "port" => Test::Port(port()?),
            "lport" => Test::Lport(port()?),
            "rport" => Test::Rport(port()?),
            "peer" => Test::Peer(Prefix::parse(value)?),
            "proto" => Test::Proto(ProtoFamily::parse(value)?),
            "path" => Test::Path(PathPattern::parse(value)?),
            "result" => Test::Result(parse_outcome(value)?),
            "process" => Test::Process(process_name(value)?),
            _ => return Err(format!("unknown key (keys: {KEYS})")),
        };
        Ok(Term { negated, test })
    }

    /// A term about a field the event lacks (the peer of a listen, the result of a
    /// send) holds neither way: `has` names the fields it needs.
    fn compile(&self) -> rule_term {
        let socket = match_has::HAS_SOCKET.0 as u8;
        let port = match_has::HAS_PORT.0 as u8;
        let peer = match_has::HAS_PEER.0 as u8;
        let mut t = rule_term {
            negated: u8::from(self.negated),
            ..Default::default()
        };
        let (mask, value) = (&mut t.mask, &mut t.value);
        match &self.test {
            Test::Port(p) | Test::Lport(p) => {
                t.has = port;
                (mask.lport, value.lport) = (!0, *p);
            }
            Test::Rport(p) => {
                t.has = socket | peer;
                (mask.rport, value.rport) = (!0, *p);
            }
            Test::Peer(prefix) => {
                let (addr, bits, family) = prefix.words();
                t.has = socket | peer;
                (mask.addr, value.addr) = (bits, addr);
                (mask.family, value.family) = (!0, family);
            }
            Test::Proto(ProtoFamily::Unix) => {
                t.has = socket;
                (mask.family, value.family) = (!0, AF_UNIX);
            }
            Test::Proto(p) => {
                // A unix-domain socket's type is a different number than either.
                t.has = socket;
                let number = if *p == ProtoFamily::Tcp {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                };
                (mask.protocol, value.protocol) = (!0, number.number());
            }
            Test::Path(path) => {
                t.has = match_has::HAS_PATH.0 as u8;
                (value.path, mask.path) = path.words();
            }
            Test::Result(outcome) => {
                t.has = match_has::HAS_RESULT.0 as u8;
                mask.result = !0;
                value.result = match outcome {
                    Outcome::Ok | Outcome::Failed => 0,
                    Outcome::Aborted => match_result::MATCH_ABORTED.0,
                    Outcome::Errno(n) => *n as u32,
                };
                // Failed: not ok.
                t.negated ^= u8::from(*outcome == Outcome::Failed);
            }
            Test::Process(name) => {
                (mask.comm, value.comm) = (name_mask(name), name_words(name));
            }
        }
        // `port=` is the local port, or the remote one where there is a peer; every
        // other term is one compare, made twice.
        if let Test::Port(p) = self.test {
            (t.alt_mask.rport, t.alt_value.rport) = (!0, p);
            (t.alt_mask.has, t.alt_value.has) = (peer, peer);
        } else {
            (t.alt_mask, t.alt_value) = (t.mask, t.value);
        }
        t
    }
}

/// A process name as sockwatch prints it: `\xNN` and `\\` stand for their bytes.
/// The kernel keeps 15 bytes of a name, so a longer one could never match.
fn process_name(value: &str) -> Result<Vec<u8>, String> {
    let name = crate::model::text::unescape(value)?;
    if name.len() > 15 {
        return Err(format!(
            "longer than the 15 bytes the kernel keeps of a name: write process={}",
            escape(&name[..15])
        ));
    }
    Ok(name)
}

fn parse_outcome(value: &str) -> Result<Outcome, String> {
    match value.to_ascii_lowercase().as_str() {
        "ok" => return Ok(Outcome::Ok),
        "failed" => return Ok(Outcome::Failed),
        "aborted" => return Ok(Outcome::Aborted),
        _ => {}
    }
    let upper = value.to_ascii_uppercase();
    (1..200)
        .find(|&n| errno_name(n) == upper)
        .map(Outcome::Errno)
        .ok_or_else(|| {
            "not a result (ok, failed, aborted, or an errno name such as ECONNREFUSED)".into()
        })
}

impl Test {
    /// The field the term is about, as the error for a kind that lacks it says it.
    fn field(&self) -> &'static str {
        match self {
            Test::Port(_) | Test::Lport(_) | Test::Rport(_) => "port",
            Test::Peer(_) => "peer",
            Test::Proto(_) => "protocol",
            Test::Path(_) => "path",
            Test::Result(_) => "result (result= is about connect events)",
            Test::Process(_) => "process",
        }
    }

    /// Whether events of `kind` can have this field.
    fn can_be_about(&self, kind: Kind) -> bool {
        let socket = !matches!(kind, Kind::Fork | Kind::Exec | Kind::Exit);
        match self {
            Test::Port(_) | Test::Lport(_) | Test::Proto(_) | Test::Path(_) => socket,
            // A listening socket has no peer.
            Test::Rport(_) | Test::Peer(_) => socket && kind != Kind::Listen,
            Test::Result(_) => kind == Kind::Connect,
            Test::Process(_) => true,
        }
    }
}

/// The run's expectations and prohibitions, and what the kernel matched.
#[derive(Debug, Default)]
pub struct Assertions {
    expect: Vec<(Expr, bool)>,
    forbid: Vec<Expr>,
    /// The prohibition the first forbidden event broke, and that event in words.
    broken: Option<(usize, String)>,
}

/// How the assertions came out.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    /// The line for stderr.
    pub line: String,
    /// What the events showed, as the line says it ("1 expectation met, no forbidden
    /// event"); empty unless passed.
    pub seen: String,
}

impl Assertions {
    pub fn new(expect: Vec<Expr>, forbid: Vec<Expr>) -> Assertions {
        Assertions {
            expect: expect.into_iter().map(|e| (e, false)).collect(),
            forbid,
            broken: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.expect.is_empty() && self.forbid.is_empty()
    }

    /// The kernel's rules: the expectations, then the prohibitions.
    pub fn rules(&self) -> Vec<rule> {
        let exprs = self.expect.iter().map(|(e, _)| e).chain(&self.forbid);
        exprs.map(Expr::rule).collect()
    }

    /// The rules that are prohibitions.
    pub fn forbid_rules(&self) -> std::ops::Range<usize> {
        self.expect.len()..self.expect.len() + self.forbid.len()
    }

    /// Whether some expression could match an event of this kind.
    pub fn about(&self, kind: Kind) -> bool {
        let exprs = self.expect.iter().map(|(e, _)| e).chain(&self.forbid);
        exprs.map(Expr::kinds).any(|k| k.contains(kind))
    }

    /// Records which rules the kernel matched the event to; true when it is
    /// forbidden (the first such ends the run).
    pub fn observe(&mut self, ev: &Event) -> bool {
        let hit = |i: usize| ev.matched & (1 << i) != 0;
        for (i, (_, met)) in self.expect.iter_mut().enumerate() {
            *met |= hit(i);
        }
        if self.broken.is_some() {
            return false;
        }
        self.broken = self.forbid_rules().position(hit).map(|i| (i, describe(ev)));
        self.broken.is_some()
    }

    /// The kernel's count of each rule's matches, the events the buffer lost included.
    pub fn count_hits(&mut self, hits: &[u64]) {
        for ((_, met), &n) in self.expect.iter_mut().zip(hits) {
            *met |= n > 0;
        }
    }

    pub fn forbidden_seen(&self) -> bool {
        self.broken.is_some()
    }

    /// None when there was nothing to assert.
    pub fn verdict(&self) -> Option<Verdict> {
        if self.is_empty() {
            return None;
        }
        if let Some((i, what)) = &self.broken {
            return Some(Verdict {
                passed: false,
                line: format!(
                    "forbidden event seen: {what} matched --forbid '{}'",
                    self.forbid[*i]
                ),
                seen: String::new(),
            });
        }
        let unmet: Vec<String> = self
            .expect
            .iter()
            .filter(|(_, met)| !met)
            .map(|(e, _)| format!("--expect '{e}'"))
            .collect();
        if !unmet.is_empty() {
            return Some(Verdict {
                passed: false,
                line: format!("expectation not met: no event matched {}", unmet.join(", ")),
                seen: String::new(),
            });
        }
        let mut parts = Vec::new();
        if !self.expect.is_empty() {
            parts.push(format!(
                "{} met",
                crate::model::text::count(self.expect.len() as u64, "expectation")
            ));
        }
        if !self.forbid.is_empty() {
            parts.push("no forbidden event".to_string());
        }
        let seen = parts.join(", ");
        Some(Verdict {
            passed: true,
            line: format!("assertions passed: {seen}"),
            seen,
        })
    }
}

/// The --allow expressions that let through every destination --audit recorded:
/// a connect's also lets datagrams through, so a send gets one only without it.
pub fn allow_options(destinations: &[destination]) -> Vec<String> {
    let words = |d: &destination| {
        let mut bytes = [0u8; 16];
        for (i, w) in d.addr.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        let proto = Protocol::from_number(d.protocol).map_or("", Protocol::name);
        (proto, crate::model::event::ip(d.family, &bytes), d.port)
    };
    let connected: BTreeSet<_> = destinations
        .iter()
        .filter(|d| d.sendmsg == 0)
        .map(words)
        .collect();
    let sent: BTreeSet<_> = destinations
        .iter()
        .filter(|d| d.sendmsg != 0)
        .map(words)
        .filter(|w| !connected.contains(w))
        .collect();
    let line = |call: &str, (proto, ip, port): &(&str, IpAddr, u16)| {
        let proto = if proto.is_empty() {
            String::new()
        } else {
            format!(" proto={proto}")
        };
        let port = if *port == 0 {
            String::new()
        } else {
            format!(" rport={port}")
        };
        format!("{call}{proto} peer={ip}{port}")
    };
    let mut lines: Vec<String> = connected.iter().map(|w| line("connect", w)).collect();
    lines.extend(sent.iter().map(|w| line("send", w)));
    lines
}

/// An event in a few words: `CONNECT by curl (pid 42) to 10.0.0.1:80`.
fn describe(ev: &Event) -> String {
    let mut s = format!(
        "{} by {} (pid {})",
        ev.kind().name().to_uppercase(),
        escape(&ev.process),
        ev.pid
    );
    if let Some(remote) = ev.socket.as_ref().and_then(|s| s.remote.as_ref()) {
        s += &format!(" with {remote}");
    }
    s
}

/// What the kernel's matching does, in Rust, for the tests: the unit tests check
/// the compiled rules against it, and the self-test runs the kernel's against it.
#[cfg(test)]
pub mod model {
    use super::*;
    use crate::model::abi::types::match_key;
    use crate::model::event::{ConnectResult, Detail};

    /// The key the BPF program's fill_key() gathers, from a decoded event.
    fn key(ev: &Event) -> match_key {
        let mut k = match_key {
            comm: name_words(&ev.process),
            ..Default::default()
        };
        if let Some(s) = &ev.socket {
            k.has = match_has::HAS_SOCKET.0 as u8;
            k.protocol = s.protocol.number();
            if s.protocol.unix_type().is_some() {
                k.family = AF_UNIX;
                if let Some(path) = s.path() {
                    let mut bytes = [0u8; crate::model::unix_path::WORDS * 8];
                    let sun_path = path.sun_path();
                    bytes[..sun_path.len()].copy_from_slice(&sun_path);
                    k.has |= match_has::HAS_PATH.0 as u8;
                    k.path = crate::model::unix_path::to_words(&bytes);
                }
            } else {
                k.has |= match_has::HAS_PORT.0 as u8;
                k.lport = s.local.port().unwrap();
                if let Some(r) = &s.remote {
                    let ip = r.ip().unwrap().to_string();
                    let (addr, _, family) = Prefix::parse(&ip).unwrap().words();
                    k.has |= match_has::HAS_PEER.0 as u8;
                    (k.addr, k.family, k.rport) = (addr, family, r.port().unwrap());
                }
            }
        }
        if let Detail::Connect { result, .. } = ev.detail {
            k.has |= match_has::HAS_RESULT.0 as u8;
            k.result = match result {
                ConnectResult::Ok => 0,
                ConnectResult::Failed(n) => n as u32,
                ConnectResult::Aborted => match_result::MATCH_ABORTED.0,
            };
        }
        k
    }

    const KEY_WORDS: usize = std::mem::size_of::<match_key>() / 8;

    fn words(k: &match_key) -> [u64; KEY_WORDS] {
        // SAFETY: a match_key is whole words of plain integers.
        unsafe { std::mem::transmute::<match_key, [u64; KEY_WORDS]>(*k) }
    }

    /// The BPF program's term_holds(), on the compiled term.
    fn holds(t: &rule_term, k: &match_key) -> bool {
        let compare = |mask: &match_key, value: &match_key| {
            let (k, mask, value) = (words(k), words(mask), words(value));
            (0..KEY_WORDS).all(|i| k[i] & mask[i] == value[i])
        };
        let hit = compare(&t.mask, &t.value) || compare(&t.alt_mask, &t.alt_value);
        k.has & t.has == t.has && hit != (t.negated != 0)
    }

    /// Whether the kernel matches `rule` to the event.
    pub fn matches(rule: &rule, ev: &Event) -> bool {
        let k = key(ev);
        rule.kinds & ev.kind().bit() != 0 && rule.terms.iter().all(|t| holds(t, &k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{ConnectResult, Detail, ExitStatus, Socket};

    fn ev(detail: Detail, local: &str, remote: Option<&str>) -> Event {
        Event {
            time_ns: 0,
            boot_ns: 0,
            pid: 1,
            tid: 1,
            process: b"curl".to_vec(),
            socket: Some(Socket {
                protocol: Protocol::Tcp,
                local: local.parse().unwrap(),
                remote: remote.map(|r| r.parse().unwrap()),
                accepted: false,
                peer_pid: None,
                peer_process: None,
                fds: 0,
            }),
            detail,
            matched: 0,
            who: None,
        }
    }

    fn connect(remote: &str, result: ConnectResult) -> Event {
        ev(
            Detail::Connect {
                result,
                latency_ns: 1,
            },
            "127.0.0.1:40000",
            Some(remote),
        )
    }

    fn m(expr: &str, e: &Event) -> bool {
        model::matches(&Expr::parse(expr).unwrap().rule(), e)
    }

    #[test]
    fn event_names_and_terms() {
        let ok = connect("127.0.0.1:5432", ConnectResult::Ok);
        assert!(m("connect rport=5432 result=ok", &ok));
        assert!(m("CONNECT  port=5432", &ok));
        assert!(m("any port=40000", &ok));
        assert!(m("connect lport=40000 proto=tcp process=curl", &ok));
        assert!(!m("accept", &ok));
        assert!(!m("connect rport=5433", &ok));
        assert!(!m("connect result!=ok", &ok));
        assert!(!m("connect process=wget", &ok));
        assert!(!m("connect proto=udp", &ok));
    }

    #[test]
    fn peers_and_negation() {
        let local = connect("127.0.0.1:80", ConnectResult::Ok);
        let remote = connect("10.9.8.7:80", ConnectResult::Failed(101));
        let v6 = connect("[::1]:80", ConnectResult::Ok);
        let mapped = connect("[::ffff:127.0.0.1]:80", ConnectResult::Ok);
        let expr = "connect peer!=127.0.0.0/8 peer!=::1";
        assert!(!m(expr, &local));
        assert!(m(expr, &remote));
        assert!(!m(expr, &v6));
        assert!(!m(expr, &mapped));
        assert!(m("connect result=ENETUNREACH", &remote));
        assert!(m("connect result=enetunreach", &remote));
        assert!(m("connect result=failed", &remote));
        assert!(!m("connect result=ECONNREFUSED", &remote));
        assert!(m(
            "connect result=aborted",
            &connect("10.0.0.1:1", ConnectResult::Aborted)
        ));
        assert!(m(
            "connect result=failed",
            &connect("10.0.0.1:1", ConnectResult::Aborted)
        ));
    }

    #[test]
    fn absent_fields_hold_neither_way() {
        let listen = ev(Detail::Listen { backlog: Some(5) }, "0.0.0.0:80", None);
        assert!(!m("any peer!=127.0.0.0/8", &listen));
        assert!(!m("any peer=0.0.0.0/0", &listen));
        assert!(!m("any rport!=1", &listen));
        assert!(m("listen port=80", &listen));
        assert!(!m("any result!=ok", &listen));
        let exit = Event {
            socket: None,
            detail: Detail::Exit(ExitStatus::Code(0)),
            ..listen
        };
        assert!(!m("any port!=80", &exit));
        assert!(m("exit process=curl", &exit));
    }

    #[test]
    fn bad_expressions_name_the_bad_term() {
        let err = |s: &str| Expr::parse(s).unwrap_err();
        assert!(err("").contains("empty expression"));
        assert!(err("conect").contains("\"conect\" is not an event"));
        assert_eq!(
            err("connect rport=abc"),
            "bad term \"rport=abc\": not a port (1-65535)"
        );
        assert!(err("connect rport").contains("expected key=value"));
        assert!(err("connect color=red").contains("unknown key"));
        assert!(err("connect peer=1.2.3/8").contains("not an IPv4 or IPv6"));
        assert!(err("connect result=maybe").contains("not a result"));
        assert!(err("connect proto=sctp").contains("not a protocol"));
        assert!(Expr::parse_policy("connect path=/run/docker.sock")
            .unwrap_err()
            .contains("unix-domain connect cannot be refused"));
        assert!(Expr::parse_policy("connect proto=unix").is_err());
        assert!(Expr::parse("connect path=/run/docker.sock proto=unix").is_ok());
        assert!(err("connect path=").contains("no value"));
        assert!(err("connect port=").contains("no value"));
        assert!(err("connect port=0").contains("not a port"));
        assert!(err("connect process=a\\q").contains("backslash"));
        assert!(err("connect process=a\\xzz").contains("not a byte"));
    }

    #[test]
    fn expressions_that_could_never_match_are_refused() {
        let err = |s: &str| Expr::parse(s).unwrap_err();
        assert_eq!(
            err("send result=ok"),
            "send events have no result (result= is about connect events): the expression could never match"
        );
        assert!(err("exit port=80").starts_with("exit events have no port"));
        assert!(err("listen peer=127.0.0.1").starts_with("listen events have no peer"));
        assert!(err("fork proto=tcp").starts_with("fork events have no protocol"));
        // Whatever the kind, a process name; `any` may be about any field.
        assert!(Expr::parse("exec process=sh").is_ok());
        assert!(Expr::parse("any result=ok").is_ok());
        assert!(Expr::parse("close peer=::1").is_ok());
    }

    #[test]
    fn process_names_as_sockwatch_prints_them() {
        let named = |name: &[u8]| Event {
            process: name.to_vec(),
            ..connect("127.0.0.1:1", ConnectResult::Ok)
        };
        assert!(m("connect process=my\\x20curl", &named(b"my curl")));
        assert!(m("connect process=a\\\\b", &named(b"a\\b")));
        assert!(m("connect process=\\xff", &named(b"\xff")));
        assert_eq!(
            Expr::parse("connect process=fifteen-bytes-xy").unwrap_err(),
            "bad term \"process=fifteen-bytes-xy\": longer than the 15 bytes the kernel keeps of a name: write process=fifteen-bytes-x"
        );
        assert!(m(
            "connect process=fifteen-bytes-x",
            &named(b"fifteen-bytes-x")
        ));
    }

    #[test]
    fn verdicts() {
        let ok = connect("127.0.0.1:5432", ConnectResult::Ok);
        let mut a = Assertions::new(
            vec![Expr::parse("connect rport=5432").unwrap()],
            vec![Expr::parse("connect result!=ok").unwrap()],
        );
        let v = a.verdict().unwrap();
        assert!(!v.passed);
        assert_eq!(
            v.line,
            "expectation not met: no event matched --expect 'connect rport=5432'"
        );
        assert!(!a.observe(&ok));
        assert!(!a.verdict().unwrap().passed);
        // What the kernel matched: rule 0 is the expectation, 1 the prohibition.
        assert!(!a.observe(&Event { matched: 1, ..ok }));
        let v = a.verdict().unwrap();
        assert!(v.passed);
        assert_eq!(
            v.line,
            "assertions passed: 1 expectation met, no forbidden event"
        );
        let refused = connect("127.0.0.1:1", ConnectResult::Failed(111));
        assert!(a.observe(&Event {
            matched: 2,
            ..refused
        }));
        assert!(a.forbidden_seen());
        assert_eq!(
            a.verdict().unwrap().line,
            "forbidden event seen: CONNECT by curl (pid 1) with 127.0.0.1:1 matched --forbid 'connect result!=ok'"
        );
        assert!(Assertions::default().verdict().is_none());
    }

    #[test]
    fn the_kernels_counts_meet_expectations() {
        let mut a = Assertions::new(
            vec![
                Expr::parse("connect").unwrap(),
                Expr::parse("accept").unwrap(),
            ],
            vec![Expr::parse("connect rport=1").unwrap()],
        );
        assert_eq!(a.rules().len(), 3);
        assert_eq!(a.forbid_rules(), 2..3);
        assert!(a.about(Kind::Connect) && !a.about(Kind::Close));
        a.count_hits(&[3, 0, 0]);
        assert!(!a.verdict().unwrap().passed);
        a.count_hits(&[0, 1, 0]);
        assert!(a.verdict().unwrap().passed);
    }

    #[test]
    fn too_many_terms_are_refused() {
        let nine = format!("connect{}", " port=1".repeat(max_terms() + 1));
        assert_eq!(Expr::parse(&nine).unwrap_err(), "more than 8 terms");
        assert_eq!(max_rules(), 16);
    }

    #[test]
    fn policies_are_about_calls_and_what_is_known_then() {
        let err = |s: &str| Expr::parse_policy(s).unwrap_err();
        assert_eq!(
            err("listen port=80"),
            "--deny and --allow are about connect or send (or any of the two)"
        );
        assert!(err("connect lport=5").starts_with("port is not known when a call is decided"));
        assert!(err("connect result=ok")
            .starts_with("result (result= is about connect events) is not known"));
        for ok in [
            "connect peer!=127.0.0.0/8",
            "send proto=udp rport=53",
            "any process=curl",
        ] {
            assert!(Expr::parse_policy(ok).is_ok(), "{ok}");
        }
        // A datagram's hook passes CONNECT and SEND: `connect` covers both calls.
        let connect = Expr::parse_policy("connect").unwrap().rule();
        assert_eq!(connect.kinds, Kind::Connect.bit());
        assert_eq!(
            Expr::parse_policy("send").unwrap().rule().kinds,
            Kind::Send.bit()
        );
    }

    #[test]
    fn the_audit_allows_each_destination_once() {
        let dest = |ip: [u8; 4], port, protocol, sendmsg| {
            let mut d = destination {
                port,
                family: 2,
                protocol,
                sendmsg,
                ..Default::default()
            };
            d.addr[0] = u32::from_ne_bytes(ip);
            d
        };
        let mut v6 = dest([0; 4], 443, 6, 0);
        v6.family = 10; // AF_INET6
        v6.addr = [0, 0, 0, u32::from_ne_bytes([0, 0, 0, 1])];
        let lines = allow_options(&[
            dest([10, 0, 0, 2], 53, 17, 1),
            dest([10, 0, 0, 1], 80, 6, 0),
            // Sent to and connected to: the connect's line covers both.
            dest([10, 0, 0, 3], 53, 17, 1),
            dest([10, 0, 0, 3], 53, 17, 0),
            v6,
            // Port 0 is no port to allow: any port of that peer.
            dest([10, 0, 0, 4], 0, 17, 1),
        ]);
        assert_eq!(
            lines,
            [
                "connect proto=tcp peer=10.0.0.1 rport=80",
                "connect proto=tcp peer=::1 rport=443",
                "connect proto=udp peer=10.0.0.3 rport=53",
                "send proto=udp peer=10.0.0.2 rport=53",
                "send proto=udp peer=10.0.0.4",
            ]
        );
    }
}
