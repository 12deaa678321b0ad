//! Words both formats write alike: times, connect results, signal names, resets
//! and refusals.

use chrono::{DateTime, FixedOffset};
use nix::sys::signal::Signal;

use crate::model::event::ConnectResult;
use crate::model::text::errno_name;

pub(super) fn time(ns: i64, offset: FixedOffset) -> DateTime<FixedOffset> {
    DateTime::from_timestamp_nanos(ns).with_timezone(&offset)
}

/// A RESET's direction, as text and JSON spell it.
pub(super) fn reset_way(received: bool) -> &'static str {
    if received {
        "received"
    } else {
        "sent"
    }
}

pub(super) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{signal}"))
}

pub(super) fn connect_result(result: ConnectResult) -> String {
    match result {
        ConnectResult::Ok => "ok".into(),
        ConnectResult::Failed(errno) => errno_name(errno),
        ConnectResult::Aborted => "aborted".into(),
    }
}

/// The refused call: `connect`, or `sendmsg` for a datagram sent to an address.
pub(super) fn deny_call(sendmsg: bool) -> &'static str {
    if sendmsg {
        "sendmsg"
    } else {
        "connect"
    }
}

/// What refused it: `deny#N` (the Nth --deny), or `allow` (no --allow fitted).
pub(super) fn deny_rule(rule: Option<usize>) -> String {
    rule.map_or_else(|| "allow".into(), |i| format!("deny#{}", i + 1))
}
