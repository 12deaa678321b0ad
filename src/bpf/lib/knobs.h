/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Read-only knobs: the filters, rules and settings user space writes before load.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../sockwatch.h"

/* Filters, set by user space before load. Zero counts mean "no filter of this kind". */
const volatile __u64 names[MAX_NAMES][2] = {};
/*
 * Each name's bytes and its NUL: before 5.17 the kernel did not zero a comm's
 * bytes after the NUL, so a short name can be followed by an older name's tail.
 */
const volatile __u64 names_mask[MAX_NAMES][2] = {};
const volatile __u32 n_names = 0;
const volatile __u32 pids[MAX_PIDS] = {};
const volatile __u32 n_pids = 0;
/* Bit (1 << enum event_kind) set for each event kind to report. */
const volatile __u32 selected = 0;
/*
 * Of the selected kinds, those whose every event goes to user space (it prints them);
 * the others go only when they match a rule. `tallied` ones (-c's sends and
 * receives) are added up in the kernel instead.
 */
const volatile __u32 shipped = 0;
const volatile __u32 tallied = 0;
/* CLOCK_BOOTTIME when tracing began: sockets open before then count from it. */
const volatile __u64 start_ns = 0;
/* Events go to the ring buffer; false: to the perf buffer (kernels before 5.8). */
const volatile bool use_ringbuf = true;
/*
 * Tracepoint mode has no hook on the socket release itself. It sees close(), dup2,
 * close_range, exec and exit in the syscalls and walks only the process's own
 * descriptors; TCP's state changes and destruction catch every other release.
 */
const volatile bool no_release_hook = false;
/* The receive functions still take `nonblock` (before 5.19, see compat.h): for kprobes. */
const volatile bool recv_has_nonblock = false;
/*
 * Processes traced because they descend from one (`followed`): COMMAND's tree, and
 * with --follow the children of every traced process.
 */
const volatile bool use_followed = false;
const volatile bool follow_children = false;
/* --cgroup: only processes in `cgroups`[0] or below it; with no other target, all of them. */
const volatile bool in_cgroup = false;
const volatile bool every_process = false;
/* sockwatch itself: never traced, or writing its lines to a socket would feed itself. */
const volatile __u32 self_pid = 0;
/*
 * Socket filters (--port, --peer, --proto, --path): a socket event is reported only
 * when its own ends pass every filter given. Process events always pass.
 */
const volatile __u16 ports[MAX_PORTS] = {};
const volatile __u32 n_ports = 0;
const volatile struct peer_prefix peers[MAX_PEERS] = {};
const volatile __u32 n_peers = 0;
/* enum proto_bit: the kinds of socket --proto lets through; 0 for all. */
const volatile __u32 protocols = 0;
const volatile struct path_prefix paths[MAX_PATHS] = {};
const volatile __u32 n_paths = 0;
/* --expect and --forbid, in that order: matched on every event the filters pass. */
const volatile struct rule rules[MAX_RULES] = {};
const volatile __u32 n_rules = 0;
/*
 * --deny and --allow, decided in COMMAND's cgroup: a connect or datagram send that
 * matches a --deny, or none of the --allow when there are some, fails with EPERM.
 */
const volatile struct rule deny_rules[MAX_RULES] = {};
const volatile __u32 n_deny = 0;
const volatile struct rule allow_rules[MAX_RULES] = {};
const volatile __u32 n_allow = 0;
/* --audit: every destination the cgroup's connects and sends reach is kept. */
const volatile bool audit = false;
