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
 * The headers below follow a socket's life, one per step of probes.rs: process
 * events, birth, connect, listen and bind, accept, send, receive, release, incident
 * (retransmits and resets), deny.
 * Each step has one handler that takes resolved arguments, then thin wrappers per
 * attach mode side by side: `tp_` (tracepoints: syscall tracepoints and the 6.3
 * send/receive tracepoints), `fx_` (fentry/fexit) and `kp_` (kprobe/kretprobe).
 * User space loads one mode.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sockwatch.h"

#include "compat.h"
char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "knobs.h"
#include "maps.h"
#include "filters.h"
#include "match.h"
#include "emit.h"
#include "target.h"
#include "sock.h"
#include "state.h"
#include "process.h"
#include "born.h"
#include "connect.h"
#include "listen.h"
#include "accept.h"
#include "transfer.h"
#include "send.h"
#include "recv.h"
#include "release.h"
#include "incident.h"
#include "deny.h"
#include "selftest.h"
