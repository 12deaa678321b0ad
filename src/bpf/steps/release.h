/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Release: the socket goes away.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/compat.h"
#include "../lib/filters.h"
#include "../lib/maps.h"
#include "../lib/release.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"
#include "../lib/walk.h"

/*
 * A socket let go that has no entry: forget that a full table turned it away, or
 * adopt one that was open before tracing began, for its CLOSE.
 */
static __always_inline struct sock_state *adopt_at_release(const struct sock *sk,
							   const struct proc *p)
{
	__u64 key = (__u64)sk;

	if (any_skipped && bpf_map_lookup_elem(&skipped, &key)) {
		bpf_map_delete_elem(&skipped, &key);
		return NULL;
	}
	return wanted(EV_CLOSE) ? adopt(sk, p) : NULL;
}

/*
 * Tracepoint mode: a traced process closes a descriptor. Another reference (a dup,
 * a forked child, a call in flight in another thread) keeps the socket alive, and
 * the process that closed it need not be the one that lets it go last.
 */
static __always_inline int on_close_fd(void *ctx, const struct proc *p, long fd)
{
	struct sock_state *st;
	struct file *file;
	struct sock *sk;
	struct sock_kind kind;
	__u64 key;

	file = file_from_fd(fd);
	sk = sock_from_file(file);
	if (!traced_sock(sk, &kind))
		return 0;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&socks, &key);
	if (file_refs(file) > 1) {
		if (st && st->pid == p->pid)
			st->unowned = 1;
		return 0;
	}
	if (!st)
		st = adopt_at_release(sk, p);
	if (st)
		release(ctx, sk, st, p);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int tp_close(struct trace_event_raw_sys_enter *ctx)
{
	struct proc p;

	if (!current_proc(&p))
		return 0;
	return on_close_fd(ctx, &p, ctx->args[0]);
}

/* dup2 and dup3 close what `newfd` held, unless `oldfd` is the same or not open. */
static __always_inline int on_dup(void *ctx, long oldfd, long newfd)
{
	struct proc p;

	if (!current_proc(&p) || oldfd == newfd || !file_from_fd(oldfd))
		return 0;
	return on_close_fd(ctx, &p, newfd);
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int tp_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return on_dup(ctx, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int tp_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return on_dup(ctx, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_close_range")
int tp_close_range(struct trace_event_raw_sys_enter *ctx)
{
	struct fd_walk *w;

	/* CLOSE_RANGE_CLOEXEC only marks the descriptors: exec closes them. */
	if (ctx->args[2] & CLOSE_RANGE_CLOEXEC)
		return 0;
	w = walk_of(WALK_SLOT_RANGE, WALK_RANGE);
	if (!w || !current_proc(&w->p))
		return 0;
	w->traced = true;
	w->first = ctx->args[0];
	w->last = ctx->args[1];
	walk_fds(w);
	return 0;
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tp_destroy, struct sock *sk)
{
	tcp_released(ctx, sk);
	/* Released at its change to CLOSE, which then still read as the state before. */
	orphan_done(ctx, sk);
	return 0;
}

/*
 * fentry and kprobe modes: the kernel releases the socket (inet6_release calls
 * inet_release; unix_release for unix-domain sockets), whichever way its last reference went: close, dup2 over it,
 * close_range, close-on-exec, exit, io_uring. It runs in the task that let go;
 * when that one is not traced, the CLOSE is the owner's.
 */
static __always_inline int on_release(void *ctx, struct sock *sk)
{
	struct sock_state *st;
	struct sock_kind kind;
	struct proc p;
	bool traced;
	__u64 key = (__u64)sk;

	if (!sk)
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	traced = current_proc(&p);
	if (!st) {
		if (!traced || !traced_sock(sk, &kind))
			return 0;
		st = adopt_at_release(sk, &p);
		if (!st)
			return 0;
	}
	release(ctx, sk, st, traced ? &p : NULL);
	return 0;
}

SEC("fentry/inet_release")
int BPF_PROG(fx_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}

SEC("kprobe/inet_release")
int BPF_KPROBE(kp_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}

SEC("fentry/unix_release")
int BPF_PROG(fx_unix_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}

SEC("kprobe/unix_release")
int BPF_KPROBE(kp_unix_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}
