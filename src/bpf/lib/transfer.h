/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Bytes moved on a socket: the one handler the send and receive steps of every
 * mode call, with what it needs to decide and build the event.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "addr.h"
#include "compat.h"
#include "emit.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"
#include "msghdr.h"
#include "sock.h"
#include "state.h"
#include "tally.h"
#include "target.h"

/*
 * A datagram socket with no connected peer: each datagram names its own. A
 * unix-domain one's peer is its own field (older kernels leave its state alone).
 */
static __always_inline bool unconnected(const struct sock *sk, const struct sock_kind *k,
					bool trusted)
{
	if (k->family == AF_UNIX)
		return k->protocol == SOCK_DGRAM && !BPF_CORE_READ((struct unix_sock *)sk, peer);
	return k->protocol == IPPROTO_UDP &&
	       SK_FIELD(trusted, sk, __sk_common.skc_state) != TCP_ESTABLISHED;
}

/*
 * Whether a socket's events can pass the filters. Its ends are fixed, except an
 * unconnected UDP socket's peer, which each datagram names: those are decided per event.
 */
static __always_inline bool sock_may_pass(const struct sock *sk, const struct sock_kind *k,
					  bool unconnected, bool trusted)
{
	__u8 raddr[16] = {};

	if (protocols && !(protocols & proto_bit(k->family, k->protocol)))
		return false;
	if (k->family == AF_UNIX)
		return !n_ports && !n_peers && (!n_paths || unconnected || unix_sock_passes(sk));
	if (n_paths)
		return false;
	if (unconnected)
		return true;
	/* skc_num, the local port in host order, is set while the socket moves bytes. */
	if (n_ports && !ports_pass(SK_FIELD(trusted, sk, __sk_common.skc_num),
				   bpf_ntohs(SK_FIELD(trusted, sk, __sk_common.skc_dport))))
		return false;
	if (!n_peers)
		return true;
	if (k->family == AF_INET6 && trusted)
		__builtin_memcpy(raddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	else if (k->family == AF_INET6)
		BPF_CORE_READ_INTO(&raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	else
		*(__u32 *)raddr = SK_FIELD(trusted, sk, __sk_common.skc_daddr);
	return peer_passes(k->family, raddr);
}

/* How on_transfer() was reached. */
enum transfer_via {
	/* A syscall tracepoint: an unconnected socket's peer is in the syscall's arguments. */
	VIA_SYSCALL = 1,
	/* `sk` came typed (tp_btf, fentry): plain loads read it (SK_FIELD). */
	VIA_TRUSTED = 2,
};

/*
 * A datagram received on an unconnected socket, from the syscall tracepoint: the
 * kernel copies the sender out only after it, so the event waits for syscall exit
 * (finish_recv). Built in a slot: with a unix-domain tail it is too large for the stack.
 */
static __always_inline void defer_recv(const struct sock *sk, const struct sock_kind *k,
				       const struct proc *p, long ret, __u64 uaddr)
{
	struct pending_recv *pending;
	struct exec_event *x;
	__u32 slot;

	x = take_slot(&slot);
	if (!x)
		return;
	pending = (struct pending_recv *)x;
	fill_proc(&x->base, EV_RECV, p->pid, p->tid, p->comm);
	fill_ends(&x->base, sk, k);
	if (k->family == AF_UNIX)
		fill_unix(&pending->e, sk);
	x->base.value = ret;
	/* 0: the socket's own peer stands; only descriptors are left to count. */
	pending->uaddr = uaddr;
	__sync_fetch_and_add(&pending_count, 1);
	if (bpf_map_update_elem(&pending_recvs, &p->tid, pending, BPF_NOEXIST)) {
		/* This thread's entry is already counted (its syscall never exited). */
		__sync_fetch_and_add(&pending_count, -1);
		if (bpf_map_update_elem(&pending_recvs, &p->tid, pending, BPF_ANY))
			bump(CTR_LOST);
	}
	put_slot();
}

/*
 * The descriptors the current thread's receive took in, noted where the kernel
 * installs them (fentry and kprobe modes: on_rights_in).
 */
static __always_inline __u8 take_rights(void)
{
	__u32 tid, *n;
	__u8 fds;

	if (!rights_seen)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	n = bpf_map_lookup_elem(&rights_in, &tid);
	if (!n)
		return 0;
	fds = *n > 255 ? 255 : *n;
	bpf_map_delete_elem(&rights_in, &tid);
	return fds;
}

/*
 * A unix-domain send or receive: built in a slot, where its addresses follow it.
 * An unconnected datagram socket's peer is the address the datagram named.
 */
static __always_inline void transfer_unix(void *ctx, const struct sock *sk,
					  const struct sock_kind *k, const struct proc *p, __u8 kind,
					  long ret, __u8 flags, struct msg_args peer, bool unconnected,
					  bool user)
{
	struct exec_event *x;
	__u32 slot;

	x = take_slot(&slot);
	if (!x)
		return;
	fill_proc(&x->base, kind, p->pid, p->tid, p->comm);
	fill_ends(&x->base, sk, k);
	fill_unix((struct unix_event *)x, sk);
	x->base.value = ret;
	x->base.flags = flags;
	if (unconnected && !read_named_peer(x, peer.ptr, peer.len, user))
		x->base.flags |= EF_PEER_UNKNOWN;
	/* A receive's descriptors: counted where the kernel installs them (take_rights). */
	((struct unix_event *)x)->fds =
		kind == EV_SEND ? count_rights(peer.control, peer.controllen, user) : take_rights();
	emit_built(ctx, x, slot);
}

/*
 * The first check of a send or receive hook that reads its arguments (the socket
 * behind a struct socket, a msghdr's fields): made before those reads, so that a
 * process sockwatch does not trace pays for nothing more.
 */
static __always_inline bool may_count(long ret)
{
	struct proc p;

	return ret >= 0 && current_proc(&p);
}

/*
 * Bytes moved on a socket. An unconnected datagram socket's peer is the datagram's
 * address: in the kernel's msghdr (`peer`), or, on the tracepoints, in the
 * syscall's arguments, where a receive's sender is written only after the
 * tracepoint and is read at syscall exit.
 */
static __always_inline int on_transfer(void *ctx, struct sock *sk, long ret, int msg_flags,
				       __u8 kind, struct msg_args peer, __u32 via)
{
	bool from_syscall = via & VIA_SYSCALL, trusted = via & VIA_TRUSTED;
	struct sock_state *st = NULL;
	struct event e;
	struct proc p;
	struct sock_kind sock;
	bool loose;

	if (ret < 0 || !current_proc(&p) || !traced_sock_of(sk, &sock, trusted))
		return 0;
	if (kind == EV_RECV && (msg_flags & MSG_PEEK))
		return 0;
	loose = unconnected(sk, &sock, trusted);
	/* Cheap for a busy socket the filters exclude: no accounting, no copy. */
	if (filtering() && !sock_may_pass(sk, &sock, loose, trusted))
		return 0;
	if (wanted(EV_CLOSE)) {
		st = adopt_as(sk, &p, trusted);
		if (st) {
			if (kind == EV_SEND)
				__sync_fetch_and_add(&st->sent, ret);
			else
				__sync_fetch_and_add(&st->received, ret);
		}
	}
	if (!wanted(kind) || (st && tally_in_socket(st, sk, &sock, &p, kind, ret, &e)))
		return 0;

	/* A unix-domain message may pass descriptors, named in its control messages. */
	if (from_syscall && (loose || sock.family == AF_UNIX))
		peer = syscall_msg(kind == EV_RECV);
	if (from_syscall && kind == EV_RECV &&
	    ((loose && peer.ptr) || (sock.family == AF_UNIX && peer.controllen))) {
		defer_recv(sk, &sock, &p, ret, loose ? peer.ptr : 0);
		return 0;
	}
	if (sock.family == AF_UNIX) {
		transfer_unix(ctx, sk, &sock, &p, kind, ret, st && st->accepted ? EF_ACCEPTED : 0, peer,
			      loose, from_syscall);
		return 0;
	}
	fill_proc(&e, kind, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &sock);
	e.value = ret;
	if (st && st->accepted)
		e.flags |= EF_ACCEPTED;
	if (loose && !read_peer(&e, peer.ptr, from_syscall))
		e.flags |= EF_PEER_UNKNOWN;
	emit(ctx, &e);
	return 0;
}

/*
 * A send or receive's kprobe: a socket the filters exclude stashes nothing, so its
 * kretprobe costs what an untraced process's does.
 */
static __always_inline void stash_transfer(struct sock *sk, __u64 arg1, __u32 flags)
{
	struct sock_kind kind;
	struct proc p;

	if (!current_proc(&p))
		return;
	if (filtering() && traced_sock(sk, &kind) &&
	    !sock_may_pass(sk, &kind, unconnected(sk, &kind, false), false))
		return;
	stash_as(&p, (__u64)sk, arg1, flags);
}
