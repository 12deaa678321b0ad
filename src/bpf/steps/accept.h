/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Accept.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "../sockwatch.h"
#include "../lib/addr.h"
#include "../lib/filters.h"
#include "../lib/maps.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"

/*
 * A traced process accepted `sk`. `listener`, when known, is adopted if it was
 * opened before tracing began.
 */
static __always_inline int on_accept(void *ctx, const struct proc *p, struct sock *sk,
				     struct sock *listener)
{
	struct event e;
	struct sock_kind kind;

	if (!traced_sock(sk, &kind))
		return 0;
	fill_proc(&e, EV_ACCEPT, p->pid, p->tid, p->comm);
	fill_ends(&e, sk, &kind);
	e.flags = EF_ACCEPTED;
	/* A connection the filters exclude needs no tracking: none of its events will pass. */
	if (!sock_passes(&e, sk))
		return 0;
	if (wanted(EV_CLOSE)) {
		struct sock_state *st = track(sk, p, 0, true, true);

		if (st)
			st->accepted = 1;
		if (listener)
			adopt(listener, p);
	}
	if (wanted(EV_ACCEPT))
		emit_sock(ctx, &e, sk);
	return 0;
}

/* accept() returned descriptor `fd`; its first argument is the listener's. */
static __always_inline int tp_on_accept(void *ctx, long fd)
{
	struct proc p;

	if (fd < 0 || !current_proc(&p))
		return 0;
	return on_accept(ctx, &p, sock_from_file(file_from_fd(fd)),
			 sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs()))));
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return tp_on_accept(ctx, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_accept(struct trace_event_raw_sys_exit *ctx)
{
	return tp_on_accept(ctx, ctx->ret);
}

/*
 * inet_accept grafts the new socket onto its struct socket once accepted: an entry
 * hook, so no return probe can be missed however many threads wait in accept().
 */
static __always_inline int on_graft(void *ctx, struct sock *sk)
{
	struct proc p;

	if (!current_proc(&p))
		return 0;
	return on_accept(ctx, &p, sk, NULL);
}

SEC("fentry/security_sock_graft")
int BPF_PROG(fx_accept, struct sock *sk, struct socket *parent)
{
	return on_graft(ctx, sk);
}

SEC("kprobe/security_sock_graft")
int BPF_KPROBE(kp_accept, struct sock *sk)
{
	return on_graft(ctx, sk);
}
