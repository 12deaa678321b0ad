/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A socket let go: its CLOSE with the totals and TCP health, and a connection the
 * kernel keeps after it (orphans) until the kernel is done; the tracepoint mode's
 * look at TCP's own release.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "compat.h"
#include "emit.h"
#include "filters.h"
#include "maps.h"
#include "sock.h"
#include "state.h"
#include "target.h"

/* A TCP socket's smoothed RTT and retransmitted segments, the kernel's own counters. */
static __always_inline void read_counters(const struct sock *sk, __u32 *rtt_us, __u32 *retrans)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;

	*rtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	*retrans = BPF_CORE_READ(tp, total_retrans);
}

/*
 * How a connection still open at its release ends: as tcp_close() will end it, with
 * a reset when data is left unread or SO_LINGER is 0, else a FIN. A socket first
 * seen after it began closing ended as its state says.
 */
static __always_inline __u8 end_at_release(const struct sock *sk)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	__u64 linger = 1ULL << bpf_core_enum_value(enum sock_flags, SOCK_LINGER);

	switch (BPF_CORE_READ(sk, __sk_common.skc_state)) {
	case TCP_ESTABLISHED:
		if (BPF_CORE_READ(tp, rcv_nxt) != BPF_CORE_READ(tp, copied_seq))
			return END_LOCAL_RST;
		if ((BPF_CORE_READ(sk, __sk_common.skc_flags) & linger) &&
		    !BPF_CORE_READ(sk, sk_lingertime))
			return END_LOCAL_RST;
		return END_LOCAL_FIN;
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSING:
		return END_LOCAL_FIN;
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
		return END_PEER_FIN;
	}
	/* Never connected, a listener, or ended before it was seen. */
	return 0;
}

/* CLOSE's TCP health: how it ended, and the counters (as they were at CLOSE, if it got there). */
static __always_inline void fill_end(struct event *e, const struct sock *sk,
				     const struct sock_state *st)
{
	e->end = st->end ? st->end : end_at_release(sk);
	if (!e->end)
		return;
	if (st->counted) {
		e->rtt_us = st->rtt_us;
		e->retrans = st->retrans;
	} else {
		read_counters(sk, &e->rtt_us, &e->retrans);
	}
}

/*
 * A TCP connection whose CLOSE `e` is: if the kernel keeps it (it is not yet in
 * TCP_CLOSE), its entry moves to `orphans` with the counters as CLOSE gave them.
 */
static __always_inline void orphan(const struct sock *sk, struct sock_state *st,
				   const struct event *e)
{
	__u64 key = (__u64)sk;

	if (BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE)
		return;
	st->end = e->end;
	st->retrans = e->retrans;
	st->rtt_us = e->rtt_us;
	st->counted = 1;
	if (bpf_map_update_elem(&orphans, &key, st, BPF_ANY))
		bump(CTR_UNFINISHED);
}

/*
 * The kernel is done with an orphaned connection (it reached TCP_CLOSE): a DONE line
 * when it retransmitted after its CLOSE, charged to its last owner.
 */
static __always_inline void orphan_done(void *ctx, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&orphans, &key);
	__u32 rtt_us, retrans;
	struct event e;

	if (!st)
		return;
	read_counters(sk, &rtt_us, &retrans);
	if (retrans > st->retrans) {
		fill_owner(&e, EV_DONE, st);
		fill_closed_sock(&e, sk, st);
		e.end = st->end;
		e.rtt_us = rtt_us;
		e.retrans = retrans;
		e.value = retrans - st->retrans;
		e.duration_ns = bpf_ktime_get_boot_ns() - st->born_ns;
		e.flags = (st->partial ? EF_PARTIAL : 0) | (st->accepted ? EF_ACCEPTED : 0);
		emit(ctx, &e);
	}
	bpf_map_delete_elem(&orphans, &key);
}

/* The process a CLOSE is charged to: `by`, or the socket's owner when `by` is NULL. */
static __always_inline void release(void *ctx, const struct sock *sk, struct sock_state *st,
				    const struct proc *by)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_boot_ns();
	struct exec_event *x;
	struct event *e;
	__u32 slot;

	if (st->connect_ns && wanted(EV_CONNECT))
		emit_connect(ctx, sk, st, 0, EF_ABORTED, now - st->connect_ns, 0, false);
	if (wanted(EV_CLOSE) && (x = take_slot(&slot))) {
		e = &x->base;
		/* Opaque: else clang may OR an offset into `by`'s stack address, which the verifier refuses. */
		barrier_var(by);
		if (by)
			fill_proc(e, EV_CLOSE, by->pid, by->tid, by->comm);
		else
			fill_owner(e, EV_CLOSE, st);
		fill_closed_sock(e, sk, st);
		if (e->family == AF_UNIX)
			fill_unix((struct unix_event *)x, sk);
		/* Never bound, connected or listened on, and no bytes: nothing to report. */
		if (has_ends(x) || st->sent || st->received || st->connected) {
			e->sent = st->sent;
			e->received = st->received;
			e->duration_ns = now - st->born_ns;
			e->flags = (st->partial ? EF_PARTIAL : 0) | (st->accepted ? EF_ACCEPTED : 0);
			if (e->family != AF_UNIX && e->protocol == IPPROTO_TCP) {
				fill_end(e, sk, st);
				if (e->end)
					orphan(sk, st, e);
			}
			emit_built(ctx, x, slot);
		} else {
			put_slot();
		}
	}
	flush_tally(st);
	bpf_map_delete_elem(&socks, &key);
}

/*
 * Tracepoint mode: TCP's own release, whatever let the last reference go where no
 * syscall shows it (a call in flight in another thread, a process the socket was
 * passed to, a reset after either). inet_release detaches the struct socket before
 * tcp_close changes the state; a socket closed in TCP_CLOSE is destroyed at once.
 */
static __always_inline bool tcp_detached(const struct sock *sk)
{
	struct socket *sock = sk->sk_socket;

	return !sock || sock->sk != sk;
}

static __always_inline void tcp_released(void *ctx, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);
	struct proc p;

	if (!st)
		return;
	/* Inside inet_release the task letting go is current; an orphan's changes run anywhere. */
	release(ctx, sk, st, sk->sk_socket && current_proc(&p) ? &p : NULL);
}
