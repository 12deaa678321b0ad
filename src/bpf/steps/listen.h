/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Listen and Bind.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/addr.h"
#include "../lib/compat.h"
#include "../lib/maps.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"

static __always_inline int on_listen(void *ctx, struct sock *sk, long ret)
{
	struct event e;
	struct proc p;
	struct sock_kind kind;

	if (ret != 0 || !current_proc(&p) || !traced_sock(sk, &kind))
		return 0;
	fill_proc(&e, EV_LISTEN, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &kind);
	/* The backlog the kernel uses: the requested one capped at net.core.somaxconn. */
	e.value = BPF_CORE_READ(sk, sk_max_ack_backlog);
	emit_sock(ctx, &e, sk);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int tp_listen(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret != 0)
		return 0;
	return on_listen(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs()))),
			 ctx->ret);
}

SEC("fexit/inet_listen")
int BPF_PROG(fx_listen, struct socket *sock, int backlog, int ret)
{
	return on_listen(ctx, BPF_CORE_READ(sock, sk), ret);
}

SEC("kprobe/inet_listen")
int BPF_KPROBE(kp_listen, struct socket *sock)
{
	stash((__u64)sock, 0, 0);
	return 0;
}

static __always_inline int kp_listen_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_listen(ctx, socket_sk(call.arg0), ret);
}

SEC("kretprobe/inet_listen")
int BPF_KRETPROBE(kp_listen_r, int ret)
{
	return kp_listen_done(ctx, ret);
}

/*
 * A datagram socket bound to a port or path it named is a server starting: its
 * LISTEN (a UDP one, or a unix-domain one).
 */
static __always_inline int on_bind(void *ctx, struct sock *sk, long ret, __u64 addr, long addrlen,
				   bool user)
{
	struct event e;
	struct proc p;
	struct sock_kind kind;

	if (ret != 0 || !current_proc(&p) || !traced_sock(sk, &kind))
		return 0;
	if (kind.family == AF_UNIX) {
		/* An address of sun_family alone asks for an autobound abstract name: a client. */
		if (kind.protocol != SOCK_DGRAM || addrlen <= sizeof(__u16))
			return 0;
	} else if (kind.protocol != IPPROTO_UDP || !addr_port(addr, user)) {
		/* Port 0 asks for an ephemeral port, as clients do: not a server. */
		return 0;
	}
	fill_proc(&e, EV_LISTEN, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &kind);
	emit_sock(ctx, &e, sk);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tp_bind(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;

	if (ctx->ret != 0)
		return 0;
	regs = user_regs();
	return on_bind(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs))),
		       ctx->ret, PT_REGS_PARM2_CORE_SYSCALL(regs), PT_REGS_PARM3_CORE_SYSCALL(regs),
		       true);
}

SEC("fexit/inet_bind")
int BPF_PROG(fx_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return on_bind(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, addr_len, false);
}

SEC("fexit/inet6_bind")
int BPF_PROG(fx_bind6, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return on_bind(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, addr_len, false);
}

SEC("fexit/unix_bind")
int BPF_PROG(fx_unix_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return on_bind(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, addr_len, false);
}

static __always_inline int kp_bind_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_bind(ctx, socket_sk(call.arg0), ret, call.arg1, call.flags, false);
}

SEC("kprobe/inet_bind")
int BPF_KPROBE(kp_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	stash((__u64)sock, (__u64)uaddr, addr_len);
	return 0;
}

SEC("kretprobe/inet_bind")
int BPF_KRETPROBE(kp_bind_r, int ret)
{
	return kp_bind_done(ctx, ret);
}

SEC("kprobe/inet6_bind")
int BPF_KPROBE(kp_bind6, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	stash((__u64)sock, (__u64)uaddr, addr_len);
	return 0;
}

SEC("kretprobe/inet6_bind")
int BPF_KRETPROBE(kp_bind6_r, int ret)
{
	return kp_bind_done(ctx, ret);
}

SEC("kprobe/unix_bind")
int BPF_KPROBE(kp_unix_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len)
{
	stash((__u64)sock, (__u64)uaddr, addr_len);
	return 0;
}

SEC("kretprobe/unix_bind")
int BPF_KRETPROBE(kp_unix_bind_r, int ret)
{
	return kp_bind_done(ctx, ret);
}

/* unix_listen serves unix-domain stream and seqpacket sockets. */
SEC("fexit/unix_listen")
int BPF_PROG(fx_ulisten, struct socket *sock, int backlog, int ret)
{
	return on_listen(ctx, BPF_CORE_READ(sock, sk), ret);
}

SEC("kprobe/unix_listen")
int BPF_KPROBE(kp_ulisten, struct socket *sock)
{
	stash((__u64)sock, 0, 0);
	return 0;
}

SEC("kretprobe/unix_listen")
int BPF_KRETPROBE(kp_ulisten_r, int ret)
{
	return kp_listen_done(ctx, ret);
}
