// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockwatch: the socket lifecycle of named processes.
 *
 * Most programs run in the process making the call and first ask whether it is
 * traced (target.h). Per-socket state lives in `socks`, keyed by the struct sock
 * pointer, because TCP state changes and releases can run where the current task
 * is not the socket's owner (softirq, a kernel worker, an untraced process the
 * socket was passed to): those programs look the socket up instead. The cgroup
 * hooks of --deny run only in COMMAND's cgroup and ask nothing.
 *
 * lib/ holds what every step uses (the knobs, the maps, the filters, the
 * socket table, emitting, the transfer handler, the descriptor walk) and never
 * calls into steps/. steps/ follows a socket's life, one header per step of
 * probes.rs: process events, birth, connect, listen and bind, accept, send,
 * receive, release, incident (retransmits and resets), deny. Each step has one
 * handler that takes resolved arguments, then thin wrappers per attach mode side
 * by side: `tp_` (tracepoints: syscall tracepoints and the 6.3 send/receive
 * tracepoints), `fx_` (fentry/fexit) and `kp_` (kprobe/kretprobe). User space
 * loads one mode. Every header includes what it uses.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "sockwatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "lib/compat.h"
#include "lib/addr.h"
#include "lib/knobs.h"
#include "lib/maps.h"
#include "lib/filters.h"
#include "lib/match.h"
#include "lib/emit.h"
#include "lib/msghdr.h"
#include "lib/sock.h"
#include "lib/target.h"
#include "lib/state.h"
#include "lib/release.h"
#include "lib/tally.h"
#include "lib/transfer.h"
#include "lib/walk.h"

#include "steps/process.h"
#include "steps/born.h"
#include "steps/connect.h"
#include "steps/listen.h"
#include "steps/accept.h"
#include "steps/send.h"
#include "steps/recv.h"
#include "steps/release.h"
#include "steps/incident.h"
#include "steps/deny.h"
#include "steps/selftest.h"
