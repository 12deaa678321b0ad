/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Born: a socket is created.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/addr.h"
#include "../lib/maps.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"

/* The new socket is `sock`, or the one at descriptor `fd`: looked up only for a traced process. */
static __always_inline int on_born(struct socket *sock, long fd)
{
	struct sock_kind kind;
	struct proc p;
	struct sock *sk;

	if (!current_proc(&p))
		return 0;
	sk = sock ? BPF_CORE_READ(sock, sk) : sock_from_file(file_from_fd(fd));
	if (traced_sock(sk, &kind))
		track(sk, &p, 0, true, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_socket")
int tp_socket(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return on_born(NULL, ctx->ret);
}

/* socketpair(): both ends, from the descriptors the call wrote. */
SEC("tracepoint/syscalls/sys_exit_socketpair")
int tp_socketpair(struct trace_event_raw_sys_exit *ctx)
{
	int fds[2] = {};

	if (ctx->ret < 0)
		return 0;
	if (bpf_probe_read_user(fds, sizeof(fds), (void *)PT_REGS_PARM4_CORE_SYSCALL(user_regs())))
		return 0;
	on_born(NULL, fds[0]);
	return on_born(NULL, fds[1]);
}

SEC("fentry/security_socket_post_create")
int BPF_PROG(fx_socket, struct socket *sock, int family, int type, int protocol, int kern)
{
	return on_born(sock, -1);
}

SEC("kprobe/security_socket_post_create")
int BPF_KPROBE(kp_socket, struct socket *sock)
{
	return on_born(sock, -1);
}
