//! The generated BPF skeleton and the event ABI types it carries.

#![allow(clippy::all, clippy::pedantic, non_camel_case_types, dead_code)]
include!(concat!(env!("OUT_DIR"), "/sockwatch.skel.rs"));

/// The length of an array among the BPF program's read-only knobs: limits are
/// defined once, in sockwatch.h.
pub const fn knob_len<T, const N: usize>(_: fn(&types::rodata) -> &[T; N]) -> usize {
    N
}

// SAFETY: these are repr(C) structs of integers and byte arrays generated from the
// BPF program's types; every bit pattern is a valid value.
unsafe impl plain::Plain for types::event {}
unsafe impl plain::Plain for types::exec_event {}
unsafe impl plain::Plain for types::unix_event {}
unsafe impl plain::Plain for types::unix_name {}
unsafe impl plain::Plain for types::sock_state {}
unsafe impl plain::Plain for types::destination {}
unsafe impl plain::Plain for types::tally_key {}
unsafe impl plain::Plain for types::tally {}

/// Most process names, pids, ports, peers and paths the kernel-side filter holds
/// (MAX_NAMES, MAX_PIDS, MAX_PORTS, MAX_PEERS, MAX_PATHS in sockwatch.h).
pub const MAX_NAMES: usize = knob_len(|r| &r.names);
pub const MAX_PIDS: usize = knob_len(|r| &r.pids);
pub const MAX_PORTS: usize = knob_len(|r| &r.ports);
pub const MAX_PEERS: usize = knob_len(|r| &r.peers);
pub const MAX_PATHS: usize = knob_len(|r| &r.paths);
