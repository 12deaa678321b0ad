/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Incident (opt-in): a tracked TCP socket retransmits, or a reset comes or
 * goes. These run in softirq and timers, where the task on the CPU is anyone's:
 * the line is the socket's owner's, from the socket table.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "../lib/compat.h"
#include "../lib/emit.h"
#include "../lib/filters.h"
#include "../lib/maps.h"
#include "../lib/sock.h"
#include "../lib/state.h"

static __always_inline void incident(void *ctx, const struct sock *sk, __u8 kind, __s64 value)
{
	__u64 key = (__u64)sk;
	struct sock_state *st;
	struct event e;

	if (!wanted(kind))
		return;
	st = bpf_map_lookup_elem(&socks, &key);
	/* After its CLOSE, the kernel's segments are still its last owner's. */
	if (!st)
		st = bpf_map_lookup_elem(&orphans, &key);
	if (!st)
		return;
	fill_owner(&e, kind, st);
	fill_closed_sock(&e, sk, st);
	e.value = value;
	e.flags = st->accepted ? EF_ACCEPTED : 0;
	emit(ctx, &e);
}


SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tp_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	const struct tcp_skb_cb *cb = (const void *)skb->cb;

	/*
	 * Newer kernels also tell of a retransmit that failed (its error is the third
	 * argument, which came with the `err` field of the tracepoint's record).
	 */
	if (bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) && ctx[2])
		return 0;
	/* The segments sent again, as the socket's total_retrans counts them. */
	incident(ctx, sk, EV_RETRANS, BPF_CORE_READ(cb, tcp_gso_segs));
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tp_reset_in, const struct sock *sk)
{
	incident(ctx, sk, EV_RESET, RESET_RECEIVED);
	return 0;
}

/* sk is NULL when no socket had the segment answered. */
SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tp_reset_out, const struct sock *sk)
{
	if (sk)
		incident(ctx, sk, EV_RESET, RESET_SENT);
	return 0;
}

/*
 * A SYN-ACK sent again, for a connection not yet accepted: a line of the
 * listener's owner with the connection's ends, read from the request (a
 * sock_common). The accepted socket's retransmit count starts from these.
 */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(tp_rtx_synack, const struct sock *sk, const struct request_sock *req)
{
	const struct sock_common *c = &req->__req_common;
	__u64 key = (__u64)sk;
	struct sock_state *st;
	struct event e;

	if (!wanted(EV_RETRANS))
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return 0;
	fill_owner(&e, EV_RETRANS, st);
	e.family = BPF_CORE_READ(c, skc_family);
	e.protocol = IPPROTO_TCP;
	e.local.port = BPF_CORE_READ(c, skc_num);
	fill_addrs(&e, c);
	e.value = 1;
	e.flags = EF_ACCEPTED;
	emit(ctx, &e);
	return 0;
}
