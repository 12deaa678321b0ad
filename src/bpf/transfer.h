/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Send, Recv and Peer: the shared handler, and the tracepoint mode's wrappers.
 * Part of sockwatch.bpf.c, which includes every header once, in order.
 */
#pragma once

/*
 * The address argument of the syscall we are in, for sendto/sendmsg/recvfrom/recvmsg;
 * 0 for every other path (write, read, recvmmsg, io_uring).
 */
static __always_inline __u64 syscall_peer_ptr(bool recv)
{
#ifdef NR_SENDTO
	struct pt_regs *regs = user_regs();
	long nr = SYSCALL_NR(regs);
	__u64 uaddr = 0;

	if (nr == (recv ? NR_RECVFROM : NR_SENDTO))
		return PT_REGS_PARM5_CORE_SYSCALL(regs);
	if (nr == (recv ? NR_RECVMSG : NR_SENDMSG)) {
		struct user_msghdr *msg = (void *)PT_REGS_PARM2_CORE_SYSCALL(regs);

		bpf_probe_read_user(&uaddr, sizeof(uaddr), &msg->msg_name);
	}
	return uaddr;
#else
	return 0;
#endif
}

/* A UDP socket with no connected peer: each datagram names its own. */
static __always_inline bool unconnected_udp(const struct sock *sk, const struct sock_kind *k,
					    bool trusted)
{
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

	if (only_protocol && k->protocol != only_protocol)
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

/*
 * -c: sends and receives on a TCP socket by its owner add up in its entry, with no
 * event to fill and no row to look up; flush_tally() moves them to their row. The
 * first reads the socket's ends (`scratch`) and makes the row, so that moving them
 * cannot fail for want of room. Others (UDP, other processes, rules) go event by event.
 */
static __always_inline bool tally_in_socket(struct sock_state *st, const struct sock *sk,
					    const struct sock_kind *k, const struct proc *p,
					    __u8 kind, long ret, struct event *scratch)
{
	const __u64 *owner = (const __u64 *)st->comm;

	if (!(tallied & (1u << kind)) || n_rules || k->protocol != IPPROTO_TCP ||
	    owner[0] != p->comm_words[0] || owner[1] != p->comm_words[1])
		return false;
	if (!st->tally_events) {
		struct exec_event *x;
		__u32 slot;
		bool made;

		fill_ends(scratch, sk, k);
		if (!scratch->remote.port)
			return false;
		save_ends(st, scratch);
		x = take_slot(&slot);
		if (!x)
			return false;
		row_of((struct tally_key *)x->filename, st->comm, &st->ends.remote, st->ends.family,
		       st->ends.protocol, true, st->accepted);
		made = tally_row((struct tally_key *)x->filename) != NULL;
		put_slot();
		if (!made)
			return false;
	}
	__sync_fetch_and_add(kind == EV_SEND ? &st->tally_sent : &st->tally_received, ret);
	__sync_fetch_and_add(&st->tally_events, 1);
	return true;
}

/*
 * Bytes moved on a socket. An unconnected UDP socket's peer is the datagram's
 * address: in the kernel's msghdr (`peer`), or, on the tracepoints, in the
 * syscall's arguments, where a receive's sender is written only after the
 * tracepoint and is read at syscall exit.
 */
/* How on_transfer() was reached. */
enum transfer_via {
	/* A syscall tracepoint: an unconnected socket's peer is in the syscall's arguments. */
	VIA_SYSCALL = 1,
	/* `sk` came typed (tp_btf, fentry): plain loads read it (SK_FIELD). */
	VIA_TRUSTED = 2,
};

static __always_inline int on_transfer(void *ctx, struct sock *sk, long ret, int msg_flags,
				       __u8 kind, __u64 peer, __u32 via)
{
	bool from_syscall = via & VIA_SYSCALL, trusted = via & VIA_TRUSTED;
	struct sock_state *st = NULL;
	struct pending_recv pending;
	struct event e;
	struct proc p;
	struct sock_kind sock;
	bool unconnected;

	if (ret < 0 || !current_proc(&p) || !inet_sock_of(sk, &sock, trusted))
		return 0;
	if (kind == EV_RECV && (msg_flags & MSG_PEEK))
		return 0;
	unconnected = unconnected_udp(sk, &sock, trusted);
	/* Cheap for a busy socket the filters exclude: no accounting, no copy. */
	if (filtering() && !sock_may_pass(sk, &sock, unconnected, trusted))
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

	if (unconnected && from_syscall)
		peer = syscall_peer_ptr(kind == EV_RECV);
	if (unconnected && peer && from_syscall && kind == EV_RECV) {
		/* The kernel copies the sender out only after this point; finish at syscall exit. */
		fill_proc(&pending.e, kind, p.pid, p.tid, p.comm);
		fill_ends(&pending.e, sk, &sock);
		pending.e.value = ret;
		pending.uaddr = peer;
		__sync_fetch_and_add(&pending_count, 1);
		if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_NOEXIST)) {
			/* This thread's entry is already counted (its syscall never exited). */
			__sync_fetch_and_add(&pending_count, -1);
			if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_ANY))
				bump(CTR_LOST);
		}
		return 0;
	}

	fill_proc(&e, kind, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &sock);
	e.value = ret;
	if (st && st->accepted)
		e.flags |= EF_ACCEPTED;
	if (unconnected && !read_peer(&e, peer, from_syscall))
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
	if (filtering() && inet_sock(sk, &kind) &&
	    !sock_may_pass(sk, &kind, unconnected_udp(sk, &kind, false), false))
		return;
	stash_as(&p, (__u64)sk, arg1, flags);
}

/* A datagram's address in a kernel msghdr: the destination on send, the sender on receive. */
static __always_inline __u64 msg_peer(struct msghdr *msg)
{
	return (__u64)BPF_CORE_READ(msg, msg_name);
}

/* The tracepoints see every send and receive path, in the calling process. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_send, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_SEND, 0, VIA_SYSCALL | VIA_TRUSTED);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_recv, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_RECV, 0, VIA_SYSCALL | VIA_TRUSTED);
}

static __always_inline int finish_recv(void *ctx)
{
	struct pending_recv *pending;
	struct event e;
	__u32 tid;

	if (!pending_count)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	pending = bpf_map_lookup_elem(&pending_recvs, &tid);
	if (!pending)
		return 0;
	__builtin_memcpy(&e, &pending->e, sizeof(e));
	if (!read_peer(&e, pending->uaddr, true))
		e.flags |= EF_PEER_UNKNOWN;
	emit(ctx, &e);
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
 * splice() from a TCP socket reads through tcp_splice_read, which the receive
 * tracepoint does not see; other sockets' splice reads go through recvmsg and do.
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
	if (!inet_sock(sk, &kind) || kind.protocol != IPPROTO_TCP)
		return 0;
	return on_transfer(ctx, sk, ctx->ret, 0, EV_RECV, 0, 0);
}
