//! `--expect` and `--forbid`: event expressions, matching, and the verdict.

use std::fmt;
use std::net::SocketAddr;

use crate::event::{ConnectResult, Detail, Event, EventSet, Kind, Protocol};
use crate::format::{errno_name, escape};
use crate::prefix::Prefix;

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
    Proto(Protocol),
    Result(Outcome),
    Process(Vec<u8>),
}

/// `result=`: a connect's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// Any failure, aborted included.
    Failed,
    Aborted,
    Errno(i32),
}

const KEYS: &str = "port, lport, rport, peer, proto, result, process";

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

    /// The event kinds it can match, which the kernel must report.
    pub fn kinds(&self) -> EventSet {
        self.kind.map_or(EventSet::ALL, |k| EventSet(k.bit()))
    }

    pub fn matches(&self, ev: &Event) -> bool {
        self.kind.is_none_or(|k| k == ev.kind()) && self.terms.iter().all(|t| t.holds(ev))
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
            "proto" => Test::Proto(match value.to_ascii_lowercase().as_str() {
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                _ => return Err("not a protocol (tcp, udp)".into()),
            }),
            "result" => Test::Result(parse_outcome(value)?),
            "process" => Test::Process(process_name(value)?),
            _ => return Err(format!("unknown key (keys: {KEYS})")),
        };
        Ok(Term { negated, test })
    }

    /// A term about a field the event lacks (the peer of a listen, the result of a
    /// send) holds neither way.
    fn holds(&self, ev: &Event) -> bool {
        self.test.check(ev).is_some_and(|hit| hit != self.negated)
    }
}

/// A process name as sockwatch prints it: `\xNN` and `\\` stand for their bytes.
/// The kernel keeps 15 bytes of a name, so a longer one could never match.
fn process_name(value: &str) -> Result<Vec<u8>, String> {
    let mut name = Vec::new();
    let mut rest = value.as_bytes();
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        if b != b'\\' {
            name.push(b);
            continue;
        }
        match rest {
            [b'\\', after @ ..] => {
                name.push(b'\\');
                rest = after;
            }
            [b'x', hi, lo, after @ ..] => {
                let hex = std::str::from_utf8(&[*hi, *lo]).unwrap_or("").to_string();
                let byte = u8::from_str_radix(&hex, 16)
                    .map_err(|_| format!("\\x{hex} is not a byte (\\x00 to \\xff)"))?;
                name.push(byte);
                rest = after;
            }
            _ => return Err("a backslash starts \\xNN or \\\\ only".into()),
        }
    }
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
            Test::Result(_) => "result (result= is about connect events)",
            Test::Process(_) => "process",
        }
    }

    /// Whether events of `kind` can have this field.
    fn can_be_about(&self, kind: Kind) -> bool {
        let socket = !matches!(kind, Kind::Fork | Kind::Exec | Kind::Exit);
        match self {
            Test::Port(_) | Test::Lport(_) | Test::Proto(_) => socket,
            // A listening socket has no peer.
            Test::Rport(_) | Test::Peer(_) => socket && kind != Kind::Listen,
            Test::Result(_) => kind == Kind::Connect,
            Test::Process(_) => true,
        }
    }

    /// Whether the event has this value; None when it has no such field.
    fn check(&self, ev: &Event) -> Option<bool> {
        let socket = ev.socket.as_ref();
        let remote: Option<SocketAddr> = socket.and_then(|s| s.remote);
        Some(match self {
            Test::Port(p) => {
                let s = socket?;
                s.local.port() == *p || remote.is_some_and(|r| r.port() == *p)
            }
            Test::Lport(p) => socket?.local.port() == *p,
            Test::Rport(p) => remote?.port() == *p,
            Test::Peer(prefix) => prefix.contains(remote?.ip()),
            Test::Proto(proto) => socket?.protocol == *proto,
            Test::Result(want) => {
                let Detail::Connect { result, .. } = ev.detail else {
                    return None;
                };
                match (want, result) {
                    (Outcome::Ok, r) => r == ConnectResult::Ok,
                    (Outcome::Failed, r) => r != ConnectResult::Ok,
                    (Outcome::Aborted, r) => r == ConnectResult::Aborted,
                    (Outcome::Errno(n), ConnectResult::Failed(e)) => e == *n,
                    (Outcome::Errno(_), _) => false,
                }
            }
            Test::Process(name) => ev.process == *name,
        })
    }
}

/// The run's expectations and prohibitions, and what the events showed.
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
    /// What the events seen showed, as the line says it ("1 expectation met, no
    /// forbidden event"); empty unless passed.
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

    /// Records an event; true when it is forbidden (the first such ends the run).
    pub fn observe(&mut self, ev: &Event) -> bool {
        for (expr, met) in &mut self.expect {
            if !*met && expr.matches(ev) {
                *met = true;
            }
        }
        if self.broken.is_some() {
            return false;
        }
        self.broken = self
            .forbid
            .iter()
            .position(|f| f.matches(ev))
            .map(|i| (i, describe(ev)));
        self.broken.is_some()
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
                crate::format::count(self.expect.len() as u64, "expectation")
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

/// An event in a few words: `CONNECT by curl (pid 42) to 10.0.0.1:80`.
fn describe(ev: &Event) -> String {
    let mut s = format!(
        "{} by {} (pid {})",
        ev.kind().name().to_uppercase(),
        escape(&ev.process),
        ev.pid
    );
    if let Some(remote) = ev.socket.as_ref().and_then(|s| s.remote) {
        s += &format!(" with {remote}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ExitStatus, Socket};

    fn ev(detail: Detail, local: &str, remote: Option<&str>) -> Event {
        Event {
            time_ns: 0,
            pid: 1,
            tid: 1,
            process: b"curl".to_vec(),
            socket: Some(Socket {
                protocol: Protocol::Tcp,
                local: local.parse().unwrap(),
                remote: remote.map(|r| r.parse().unwrap()),
                accepted: false,
            }),
            detail,
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
        Expr::parse(expr).unwrap().matches(e)
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
        let v = a.verdict().unwrap();
        assert!(v.passed);
        assert_eq!(
            v.line,
            "assertions passed: 1 expectation met, no forbidden event"
        );
        assert!(a.observe(&connect("127.0.0.1:1", ConnectResult::Failed(111))));
        assert!(a.forbidden_seen());
        assert_eq!(
            a.verdict().unwrap().line,
            "forbidden event seen: CONNECT by curl (pid 1) with 127.0.0.1:1 matched --forbid 'connect result!=ok'"
        );
        assert!(Assertions::default().verdict().is_none());
    }
}
