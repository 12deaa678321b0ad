/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Recv: every mode's hooks.
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
#include "../lib/knobs.h"
#include "../lib/maps.h"
#include "../lib/msghdr.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/target.h"
#include "../lib/transfer.h"

/*
 * tcp_recvmsg, udp_recvmsg, udpv6_recvmsg: (sk, msg, len, [nonblock,] flags, addr_len).
 * The sender of a datagram is in msg->msg_name once the function returns.
 */
static __always_inline int recv_done(void *ctx, struct sock *sk, struct msghdr *msg, long ret,
				     int flags, bool ipv4_only, bool trusted)
{
	if (!may_count(ret))
		return 0;
	if (ipv4_only && SK_FIELD(trusted, sk, __sk_common.skc_family) != AF_INET)
		return 0;
	return on_transfer(ctx, sk, ret, flags, EV_RECV, msg ? msg_peer(msg) : no_addr,
			   trusted ? VIA_TRUSTED : 0);
}

/*
 * The receive functions lost `nonblock` in 5.19 (user space loads the matching
 * variant), and later `addr_len`: from 5.19 the return value comes from
 * bpf_get_func_ret (5.17+) rather than from a fixed place after the arguments.
 */
static __always_inline int fx_recv(__u64 *ctx, struct sock *sk, struct msghdr *msg, int flags,
				   bool ipv4_only)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return recv_done(ctx, sk, msg, (int)ret, flags, ipv4_only, true);
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fx_tcp_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, false);
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fx_tcp_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, false, true);
}

SEC("fexit/udp_recvmsg")
int BPF_PROG(fx_udp_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, true);
}

SEC("fexit/udp_recvmsg")
int BPF_PROG(fx_udp_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, true, true);
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(fx_udp6_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, false);
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(fx_udp6_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, false, true);
}

/* splice(2) from a TCP socket bypasses tcp_recvmsg. */
SEC("fexit/tcp_splice_read")
int BPF_PROG(fx_tcp_splice, struct socket *sock, loff_t *ppos, struct pipe_inode_info *pipe,
	     size_t len, unsigned int flags, long ret)
{
	return recv_done(ctx, BPF_CORE_READ(sock, sk), NULL, ret, 0, false, false);
}

static __always_inline int kp_recv(struct pt_regs *ctx)
{
	/* Both read first: a choice of register offset on the context is refused. */
	int flags4 = PT_REGS_PARM4(ctx), flags5 = PT_REGS_PARM5(ctx);
	int flags = recv_has_nonblock ? flags5 : flags4;

	stash_transfer((struct sock *)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), flags);
	return 0;
}

static __always_inline int kp_recv_r(struct pt_regs *ctx, bool ipv4_only)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return recv_done(ctx, (struct sock *)call.arg0, (struct msghdr *)call.arg1,
			 (int)PT_REGS_RC(ctx), call.flags, ipv4_only, false);
}

SEC("kprobe/tcp_recvmsg")
int kp_tcp_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/tcp_recvmsg")
int kp_tcp_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/udp_recvmsg")
int kp_udp_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/udp_recvmsg")
int kp_udp_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, true);
}

SEC("kprobe/udpv6_recvmsg")
int kp_udp6_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/udpv6_recvmsg")
int kp_udp6_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/tcp_splice_read")
int BPF_KPROBE(kp_tcp_splice, struct socket *sock)
{
	stash_transfer(BPF_CORE_READ(sock, sk), 0, 0);
	return 0;
}

static __always_inline int kp_splice_done(void *ctx, long ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return recv_done(ctx, (struct sock *)call.arg0, NULL, ret, 0, false, false);
}

SEC("kretprobe/tcp_splice_read")
int BPF_KRETPROBE(kp_tcp_splice_r, long ret)
{
	return kp_splice_done(ctx, ret);
}

/*
 * Unix-domain sockets: (sock, msg, size, flags), the same on every kernel. As on
 * send, unix_dgram_recvmsg counts datagram sockets and unix_seqpacket_recvmsg,
 * which calls it (inlined on some kernels), seqpacket ones.
 */
SEC("fexit/unix_stream_recvmsg")
int BPF_PROG(fx_unix_recv, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	if (!may_count(ret))
		return 0;
	return recv_done(ctx, BPF_CORE_READ(sock, sk), NULL, ret, flags, false, false);
}

SEC("fexit/unix_dgram_recvmsg")
int BPF_PROG(fx_unix_drecv, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	if (!may_count(ret) || seqpacket(sock))
		return 0;
	return recv_done(ctx, BPF_CORE_READ(sock, sk), msg, ret, flags, false, false);
}

SEC("fexit/unix_seqpacket_recvmsg")
int BPF_PROG(fx_unix_precv, struct socket *sock, struct msghdr *msg, size_t size, int flags, int ret)
{
	if (!may_count(ret))
		return 0;
	return recv_done(ctx, BPF_CORE_READ(sock, sk), NULL, ret, flags, false, false);
}

SEC("fexit/unix_stream_splice_read")
int BPF_PROG(fx_usplice, struct socket *sock, loff_t *ppos, struct pipe_inode_info *pipe,
	     size_t len, unsigned int flags, long ret)
{
	if (!may_count(ret))
		return 0;
	return recv_done(ctx, BPF_CORE_READ(sock, sk), NULL, ret, 0, false, false);
}

static __always_inline int kp_unix_recv_begin(struct socket *sock, struct msghdr *msg, int flags)
{
	if (may_count(0))
		stash_transfer(BPF_CORE_READ(sock, sk), (__u64)msg, flags);
	return 0;
}

SEC("kprobe/unix_stream_recvmsg")
int BPF_KPROBE(kp_unix_recv, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	return kp_unix_recv_begin(sock, NULL, flags);
}

SEC("kretprobe/unix_stream_recvmsg")
int kp_unix_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/unix_dgram_recvmsg")
int BPF_KPROBE(kp_unix_drecv, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	return seqpacket(sock) ? 0 : kp_unix_recv_begin(sock, msg, flags);
}

SEC("kretprobe/unix_dgram_recvmsg")
int kp_unix_drecv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/unix_seqpacket_recvmsg")
int BPF_KPROBE(kp_unix_precv, struct socket *sock, struct msghdr *msg, size_t size, int flags)
{
	return kp_unix_recv_begin(sock, NULL, flags);
}

SEC("kretprobe/unix_seqpacket_recvmsg")
int kp_unix_precv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/unix_stream_splice_read")
int BPF_KPROBE(kp_usplice, struct socket *sock)
{
	return kp_unix_recv_begin(sock, NULL, 0);
}

SEC("kretprobe/unix_stream_splice_read")
int BPF_KRETPROBE(kp_usplice_r, long ret)
{
	return kp_splice_done(ctx, ret);
}

/*
 * SCM_RIGHTS descriptors a traced receive takes in: the kernel installs them in
 * scm_detach_fds, inside the receive; its RECV takes the count (take_rights).
 */
static __always_inline int on_rights_in(struct scm_cookie *scm)
{
	struct proc p;
	__u32 n;

	if (!current_proc(&p))
		return 0;
	n = BPF_CORE_READ(scm, fp, count);
	if (!n)
		return 0;
	rights_seen = true;
	bpf_map_update_elem(&rights_in, &p.tid, &n, BPF_ANY);
	return 0;
}

SEC("fentry/scm_detach_fds")
int BPF_PROG(fx_rights, struct msghdr *msg, struct scm_cookie *scm)
{
	return on_rights_in(scm);
}

SEC("kprobe/scm_detach_fds")
int BPF_KPROBE(kp_rights, struct msghdr *msg, struct scm_cookie *scm)
{
	return on_rights_in(scm);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_recv, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_RECV, no_addr, VIA_SYSCALL | VIA_TRUSTED);
}

static __always_inline int finish_recv(void *ctx)
{
	struct pending_recv *pending;
	struct msg_args sender;
	struct exec_event *x;
	struct event e;
	__u32 slot, tid;

	if (!pending_count)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	pending = bpf_map_lookup_elem(&pending_recvs, &tid);
	if (!pending)
		return 0;
	sender = syscall_msg(true);
	sender.ptr = pending->uaddr;
	if (pending->e.base.family == AF_UNIX) {
		x = take_slot(&slot);
		if (x) {
			__builtin_memcpy(x, &pending->e, sizeof(pending->e));
			if (sender.ptr && !read_named_peer(x, sender.ptr, sender.len, true))
				x->base.flags |= EF_PEER_UNKNOWN;
			((struct unix_event *)x)->fds =
				count_rights(sender.control, sender.controllen, true);
			emit_built(ctx, x, slot);
		}
	} else {
		__builtin_memcpy(&e, &pending->e.base, sizeof(e));
		if (!read_peer(&e, sender.ptr, true))
			e.flags |= EF_PEER_UNKNOWN;
		emit(ctx, &e);
	}
	if (!bpf_map_delete_elem(&pending_recvs, &tid))
		__sync_fetch_and_add(&pending_count, -1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int tp_recvfrom_r(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv(ctx);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tp_recvmsg_r(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv(ctx);
}

/*
 * splice() from a TCP or unix-domain stream socket reads through tcp_splice_read
 * or unix_stream_splice_read, which the receive tracepoint does not see; other
 * sockets' splice reads go through recvmsg and do.
 */
SEC("tracepoint/syscalls/sys_exit_splice")
int tp_splice_r(struct trace_event_raw_sys_exit *ctx)
{
	struct sock_kind kind;
	struct proc p;
	struct sock *sk;

	if (ctx->ret <= 0 || !current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs())));
	if (!traced_sock(sk, &kind) || !(kind.family == AF_UNIX ? kind.protocol == SOCK_STREAM
								: kind.protocol == IPPROTO_TCP))
		return 0;
	return on_transfer(ctx, sk, ctx->ret, 0, EV_RECV, no_addr, 0);
}
