/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Send: every mode's hooks.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/compat.h"
#include "../lib/maps.h"
#include "../lib/msghdr.h"
#include "../lib/sock.h"
#include "../lib/state.h"
#include "../lib/transfer.h"

/*
 * The socket functions. udpv6_sendmsg hands a v4-mapped destination to udp_sendmsg:
 * that one counts only IPv4 sockets, so no datagram counts twice. Before 6.5,
 * sendfile and splice reach TCP and UDP through their sendpage functions.
 */
static __always_inline int send_ipv4_only(void *ctx, struct sock *sk, struct msghdr *msg, long ret,
					  bool trusted)
{
	if (!may_count(ret) || SK_FIELD(trusted, sk, __sk_common.skc_family) != AF_INET)
		return 0;
	return on_transfer(ctx, sk, ret, 0, EV_SEND, msg_peer(msg), trusted ? VIA_TRUSTED : 0);
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fx_tcp_send, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, no_addr, VIA_TRUSTED);
}

SEC("fexit/udp_sendmsg")
int BPF_PROG(fx_udp_send, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	return send_ipv4_only(ctx, sk, msg, ret, true);
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(fx_udp6_send, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	if (!may_count(ret))
		return 0;
	return on_transfer(ctx, sk, ret, 0, EV_SEND, msg_peer(msg), VIA_TRUSTED);
}

SEC("fexit/tcp_sendpage")
int BPF_PROG(fx_tcp_page, struct sock *sk, struct page *page, int offset, size_t size, int flags,
	     int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, no_addr, VIA_TRUSTED);
}

SEC("fexit/udp_sendpage")
int BPF_PROG(fx_udp_page, struct sock *sk, struct page *page, int offset, size_t size, int flags,
	     int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, no_addr, VIA_TRUSTED);
}

/* A send whose peer, if any, the socket holds (TCP, and UDP's sendpage). */
static __always_inline int kp_send_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_transfer(ctx, (struct sock *)call.arg0, ret, 0, EV_SEND, no_addr, 0);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kp_tcp_send, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kp_tcp_send_r, int ret)
{
	return kp_send_done(ctx, ret);
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(kp_udp_send, struct sock *sk, struct msghdr *msg)
{
	stash_transfer(sk, (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/udp_sendmsg")
int BPF_KRETPROBE(kp_udp_send_r, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return send_ipv4_only(ctx, (struct sock *)call.arg0, (struct msghdr *)call.arg1, ret, false);
}

SEC("kprobe/udpv6_sendmsg")
int BPF_KPROBE(kp_udp6_send, struct sock *sk, struct msghdr *msg)
{
	stash_transfer(sk, (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/udpv6_sendmsg")
int BPF_KRETPROBE(kp_udp6_send_r, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_transfer(ctx, (struct sock *)call.arg0, ret, 0, EV_SEND,
			   msg_peer((struct msghdr *)call.arg1), 0);
}

SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kp_tcp_page, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(kp_tcp_page_r, int ret)
{
	return kp_send_done(ctx, ret);
}

SEC("kprobe/udp_sendpage")
int BPF_KPROBE(kp_udp_page, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/udp_sendpage")
int BPF_KRETPROBE(kp_udp_page_r, int ret)
{
	return kp_send_done(ctx, ret);
}

SEC("fexit/unix_stream_sendmsg")
int BPF_PROG(fx_unix_send, struct socket *sock, struct msghdr *msg, size_t len, int ret)
{
	if (!may_count(ret))
		return 0;
	return on_transfer(ctx, BPF_CORE_READ(sock, sk), ret, 0, EV_SEND, msg_sent(msg), 0);
}

SEC("fexit/unix_dgram_sendmsg")
int BPF_PROG(fx_unix_dsend, struct socket *sock, struct msghdr *msg, size_t len, int ret)
{
	if (!may_count(ret) || seqpacket(sock))
		return 0;
	return on_transfer(ctx, BPF_CORE_READ(sock, sk), ret, 0, EV_SEND, msg_sent(msg), 0);
}

SEC("fexit/unix_seqpacket_sendmsg")
int BPF_PROG(fx_unix_psend, struct socket *sock, struct msghdr *msg, size_t len, int ret)
{
	if (!may_count(ret))
		return 0;
	return on_transfer(ctx, BPF_CORE_READ(sock, sk), ret, 0, EV_SEND, msg_sent(msg), 0);
}

SEC("fexit/unix_stream_sendpage")
int BPF_PROG(fx_unix_page, struct socket *sock, struct page *page, int offset, size_t size,
	     int flags, long ret)
{
	if (!may_count(ret))
		return 0;
	return on_transfer(ctx, BPF_CORE_READ(sock, sk), ret, 0, EV_SEND, no_addr, 0);
}

/* A unix-domain send's kretprobe: the msghdr its kprobe stashed. */
static __always_inline int kp_unix_send_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_transfer(ctx, (struct sock *)call.arg0, ret, 0, EV_SEND,
			   msg_sent((struct msghdr *)call.arg1), 0);
}

SEC("kprobe/unix_stream_sendmsg")
int BPF_KPROBE(kp_unix_send, struct socket *sock, struct msghdr *msg)
{
	if (may_count(0))
		stash_transfer(BPF_CORE_READ(sock, sk), (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/unix_stream_sendmsg")
int BPF_KRETPROBE(kp_unix_send_r, int ret)
{
	return kp_unix_send_done(ctx, ret);
}

SEC("kprobe/unix_dgram_sendmsg")
int BPF_KPROBE(kp_unix_dsend, struct socket *sock, struct msghdr *msg)
{
	if (may_count(0) && !seqpacket(sock))
		stash_transfer(BPF_CORE_READ(sock, sk), (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/unix_dgram_sendmsg")
int BPF_KRETPROBE(kp_unix_dsend_r, int ret)
{
	return kp_unix_send_done(ctx, ret);
}

SEC("kprobe/unix_seqpacket_sendmsg")
int BPF_KPROBE(kp_unix_psend, struct socket *sock, struct msghdr *msg)
{
	if (may_count(0))
		stash_transfer(BPF_CORE_READ(sock, sk), (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/unix_seqpacket_sendmsg")
int BPF_KRETPROBE(kp_unix_psend_r, int ret)
{
	return kp_unix_send_done(ctx, ret);
}

SEC("kprobe/unix_stream_sendpage")
int BPF_KPROBE(kp_unix_page, struct socket *sock)
{
	if (may_count(0))
		stash_transfer(BPF_CORE_READ(sock, sk), 0, 0);
	return 0;
}

SEC("kretprobe/unix_stream_sendpage")
int BPF_KRETPROBE(kp_unix_page_r, long ret)
{
	return kp_send_done(ctx, ret);
}

/* The tracepoints see every send and receive path, in the calling process. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_send, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_SEND, no_addr, VIA_SYSCALL | VIA_TRUSTED);
}
