/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Connect and Outcome: connect() and the handshake that settles it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/addr.h"
#include "../lib/compat.h"
#include "../lib/emit.h"
#include "../lib/filters.h"
#include "../lib/knobs.h"
#include "../lib/maps.h"
#include "../lib/release.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"

/* A handshake's outcome: the state left SYN_SENT for `newstate`. */
static __always_inline int connect_settled(void *ctx, const struct sock *sk,
					   struct sock_state *st, int newstate)
{
	__s64 result;

	if (!st->connect_ns)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		result = 0;
	} else {
		/* tcp_reset() and tcp_write_err() set sk_err before moving to CLOSE. */
		result = -(__s64)BPF_CORE_READ(sk, sk_err);
	}
	if (wanted(EV_CONNECT))
		emit_connect(ctx, sk, st, result,
			     newstate != TCP_ESTABLISHED && !result ? EF_ABORTED : 0,
			     bpf_ktime_get_boot_ns() - st->connect_ns, 0, false);
	st->connect_ns = 0;
	return 0;
}

/*
 * A change from ESTABLISHED straight to CLOSE: tcp_reset() and tcp_write_err() set
 * sk_err first (tcp_abort() to ECONNABORTED); a reset this side sends at close or
 * disconnect sets none before.
 */
static __always_inline __u8 abort_end(const struct sock *sk)
{
	int err = BPF_CORE_READ(sk, sk_err);

	if (err == ECONNRESET || err == EPIPE)
		return END_PEER_RST;
	if (!err || err == ECONNABORTED)
		return END_LOCAL_RST;
	return END_TIMEOUT;
}

/*
 * A tracked connection's first change out of ESTABLISHED says how it ended; at
 * CLOSE its counters are kept (tcp_disconnect() zeroes them next). A few changes
 * per connection, never per packet.
 */
static __always_inline void note_end(void *ctx, const struct sock *sk, int oldstate, int newstate)
{
	__u64 key = (__u64)sk;
	struct sock_state *st;

	if (oldstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return;
	if (newstate == TCP_CLOSE)
		orphan_done(ctx, sk);
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return;
	if (!st->end && oldstate == TCP_ESTABLISHED)
		st->end = newstate == TCP_FIN_WAIT1	 ? END_LOCAL_FIN :
			  newstate == TCP_CLOSE_WAIT ? END_PEER_FIN :
						       abort_end(sk);
	if (newstate == TCP_CLOSE && !st->counted) {
		read_counters(sk, &st->rtt_us, &st->retrans);
		st->counted = 1;
	}
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk, now;
	struct sock_state *st, untracked;
	struct call *call;
	struct proc p;

	note_end(ctx, sk, oldstate, newstate);
	/* Tracepoint mode: the first change after the socket's release reports it. */
	if (no_release_hook && newstate != TCP_SYN_SENT && tcp_detached(sk)) {
		tcp_released(ctx, sk);
		if (oldstate != TCP_SYN_SENT)
			return 0;
	}
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* Runs in the connecting process. */
		if (!current_proc(&p))
			return 0;
		now = bpf_ktime_get_boot_ns();
		call = bpf_map_lookup_elem(&calls, &p.tid);
		if (call) {
			call->syn_sent = 1;
			now = call->start_ns;
		}
		st = bpf_map_lookup_elem(&socks, &key);
		if (!st) {
			if (!track(sk, &p, now, true, true)) {
				struct sock_state c = { .connect_ns = now, .pid = p.pid, .tid = p.tid };

				__builtin_memcpy(c.comm, p.comm, TASK_COMM_LEN);
				own(&c, &p);
				if (bpf_map_update_elem(&connecting, &key, &c, BPF_ANY))
					bump(CTR_UNSTASHED);
			}
			return 0;
		}
		st->connect_ns = now;
		st->connected = 1;
		/* The connecting process takes the socket over: what its owner added up goes to their row. */
		flush_tally(st);
		st->pid = p.pid;
		st->tid = p.tid;
		__builtin_memcpy(st->comm, p.comm, TASK_COMM_LEN);
		own(st, &p);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;
	/* The outcome: often in softirq, so the owner comes from the socket's state. */
	st = bpf_map_lookup_elem(&socks, &key);
	if (st)
		return connect_settled(ctx, sk, st, newstate);
	st = bpf_map_lookup_elem(&connecting, &key);
	if (!st)
		return 0;
	/* Untracked: its one line is all there is to report. */
	untracked = *st;
	bpf_map_delete_elem(&connecting, &key);
	return connect_settled(ctx, sk, &untracked, newstate);
}

/* connect() returns without a TCP outcome when it is in progress or was interrupted. */
static __always_inline bool tcp_connect_pending(long ret)
{
	return ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN || ret == -EINTR ||
	       (ret <= -ERESTARTSYS && ret >= -ERESTARTSYS - 4);
}

/* `flags` of a stashed connect. */
#define CALL_COLLECTS 1

/*
 * A connect() on a TCP socket whose earlier attempt already ended (SS_CONNECTING,
 * yet TCP_CLOSE) starts nothing: it only collects that attempt's error, as hiredis
 * and redis-cli learn a non-blocking connect's outcome. That outcome was reported.
 */
static __always_inline bool collects_outcome(const struct socket *sock)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);

	return sock && BPF_CORE_READ(sock, state) == SS_CONNECTING &&
	       BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE;
}

static __always_inline int connect_stash(const struct proc *p, struct socket *sock, __u64 addr)
{
	stash_as(p, (__u64)sock, addr, collects_outcome(sock) ? CALL_COLLECTS : 0);
	return 0;
}

static __always_inline int connect_begin(struct socket *sock, __u64 addr)
{
	struct proc p;

	return current_proc(&p) ? connect_stash(&p, sock, addr) : 0;
}

/*
 * A connect call returned: report what never began a handshake (UDP, and TCP that
 * failed at once); a handshake reports through inet_sock_set_state.
 */
static __always_inline int connect_end(void *ctx, struct sock *sk, long ret, __u64 addr,
				       bool user, const struct call *call)
{
	struct sock_state owner = {}, *st;
	struct sock_kind kind;
	struct proc p;
	__u64 key = (__u64)sk;

	if (!current_proc(&p) || !traced_sock(sk, &kind))
		return 0;
	/* connect() with AF_UNSPEC dissolves a UDP association: no connect at all. */
	if (addr_family(addr, user) == AF_UNSPEC)
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (st)
		st->connected = 1;
	if (kind.protocol == IPPROTO_TCP && (call->syn_sent || ret == 0 || tcp_connect_pending(ret)))
		return 0;
	if (call->flags & CALL_COLLECTS)
		return 0;
	owner.pid = p.pid;
	owner.tid = p.tid;
	__builtin_memcpy(owner.comm, p.comm, TASK_COMM_LEN);
	/*
	 * A connected socket names its ends as the kernel resolved them (a wildcard peer
	 * is loopback); a failed one may have none yet: then the peer as the process named it.
	 */
	emit_connect(ctx, sk, &owner, ret, 0, bpf_ktime_get_boot_ns() - call->start_ns,
		     ret ? addr : 0, user);
	return 0;
}

/* fexit: the call's own arguments are at hand. */
static __always_inline int fx_connect_done(void *ctx, struct socket *sock, struct sockaddr *uaddr,
					   int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return connect_end(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, false, &call);
}

/* kretprobe: the arguments the kprobe stashed. */
static __always_inline int kp_connect_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return connect_end(ctx, socket_sk(call.arg0), ret, call.arg1, false, &call);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int tp_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct file *file;
	struct proc p;

	if (!current_proc(&p))
		return 0;
	file = file_from_fd(ctx->args[0]);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	return connect_stash(&p, BPF_CORE_READ(file, private_data), 0);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tp_connect_r(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;
	struct call call;

	if (!unstash(&call))
		return 0;
	regs = user_regs();
	return connect_end(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs))),
			   ctx->ret, PT_REGS_PARM2_CORE_SYSCALL(regs), true, &call);
}

/* inet_stream_connect (TCP) and inet_dgram_connect (UDP) serve IPv4 and IPv6. */
SEC("fentry/inet_stream_connect")
int BPF_PROG(fx_connect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/inet_stream_connect")
int BPF_PROG(fx_connect_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("fentry/inet_dgram_connect")
int BPF_PROG(fx_dconnect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/inet_dgram_connect")
int BPF_PROG(fx_dconnect_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("kprobe/inet_stream_connect")
int BPF_KPROBE(kp_connect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/inet_stream_connect")
int BPF_KRETPROBE(kp_connect_r, int ret)
{
	return kp_connect_done(ctx, ret);
}

SEC("kprobe/inet_dgram_connect")
int BPF_KPROBE(kp_dconnect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/inet_dgram_connect")
int BPF_KRETPROBE(kp_dconnect_r, int ret)
{
	return kp_connect_done(ctx, ret);
}

/* unix_stream_connect (stream, seqpacket) and unix_dgram_connect: settled on return. */
SEC("fentry/unix_stream_connect")
int BPF_PROG(fx_uconn, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/unix_stream_connect")
int BPF_PROG(fx_uconn_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("fentry/unix_dgram_connect")
int BPF_PROG(fx_udconn, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/unix_dgram_connect")
int BPF_PROG(fx_udconn_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("kprobe/unix_stream_connect")
int BPF_KPROBE(kp_uconn, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/unix_stream_connect")
int BPF_KRETPROBE(kp_uconn_r, int ret)
{
	return kp_connect_done(ctx, ret);
}

SEC("kprobe/unix_dgram_connect")
int BPF_KPROBE(kp_udconn, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/unix_dgram_connect")
int BPF_KRETPROBE(kp_udconn_r, int ret)
{
	return kp_connect_done(ctx, ret);
}
