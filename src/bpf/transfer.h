/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Send, Recv and Peer: the shared handler, and the tracepoint mode's wrappers.
 * Part of sockwatch.bpf.c, which includes every header once, in order.
 */
#pragma once

/*
 * What a call's message names: a datagram's address and its length (-1: unknown),
 * and its control messages (SCM_RIGHTS descriptors).
 */
struct msg_args {
	__u64 ptr;
	long len;
	__u64 control;
	__u64 controllen;
};

/* Control messages read before giving up: sockets pass descriptors in one. */
#define MAX_CMSGS 4
#define SOL_SOCKET 1
#define SCM_RIGHTS 1

/* The descriptors SCM_RIGHTS messages in a control buffer pass. */
static __always_inline __u32 count_rights(__u64 control, __u64 len, bool user)
{
	struct {
		__u64 len;
		__s32 level;
		__s32 type;
	} h;
	__u64 pos = 0;
	__u32 fds = 0;

	for (int i = 0; i < MAX_CMSGS; i++) {
		if (!control || pos + sizeof(h) > len ||
		    read_addr(&h, sizeof(h), control + pos, user))
			break;
		if (h.len < sizeof(h) || h.len > len - pos)
			break;
		if (h.level == SOL_SOCKET && h.type == SCM_RIGHTS)
			fds += (h.len - sizeof(h)) / sizeof(int);
		pos += (h.len + 7) & ~7ULL;
	}
	return fds;
}

/*
 * The address and control arguments of the syscall we are in, for
 * sendto/sendmsg/recvfrom/recvmsg; none for every other path (write, read,
 * recvmmsg, io_uring). A receive's lengths are what the kernel wrote back, so they
 * are read at syscall exit.
 */
static __always_inline struct msg_args syscall_msg(bool recv)
{
	struct msg_args a = { .len = -1 };
#ifdef NR_SENDTO
	struct pt_regs *regs = user_regs();
	long nr = SYSCALL_NR(regs);
	int len = -1;

	if (nr == (recv ? NR_RECVFROM : NR_SENDTO)) {
		a.ptr = PT_REGS_PARM5_CORE_SYSCALL(regs);
		if (recv)
			bpf_probe_read_user(&len, sizeof(len), (void *)PT_REGS_PARM6_CORE_SYSCALL(regs));
		else
			len = PT_REGS_PARM6_CORE_SYSCALL(regs);
	} else if (nr == (recv ? NR_RECVMSG : NR_SENDMSG)) {
		struct user_msghdr *msg = (void *)PT_REGS_PARM2_CORE_SYSCALL(regs);

		bpf_probe_read_user(&a.ptr, sizeof(a.ptr), &msg->msg_name);
		bpf_probe_read_user(&len, sizeof(len), &msg->msg_namelen);
		bpf_probe_read_user(&a.control, sizeof(a.control), &msg->msg_control);
		bpf_probe_read_user(&a.controllen, sizeof(a.controllen), &msg->msg_controllen);
	}
	a.len = len;
#endif
	return a;
}

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

/* FNV-1a, a word at a time, over a unix-domain address (zero past its length). */
static __always_inline __u64 unix_name_hash(const struct unix_name *n)
{
	const __u64 *words = (const __u64 *)n->path;
	__u64 h = 0xcbf29ce484222325ULL ^ n->len;

	for (int i = 0; i < PATH_WORDS; i++)
		h = (h ^ words[i]) * 0x100000001b3ULL;
	return h;
}

/*
 * -c on a connected unix-domain socket: the address its summary row is about
 * (unix_path's; a socketpair's is unnamed), kept in unix_ends
 * under its hash, which stands for it in st->ends.remote (port 1: a row with an
 * end) and in the row's key. A different address already under that hash, or a
 * full table, leaves the socket's sends and receives to go as events.
 */
static __noinline bool unix_row_end(struct sock_state *st, const struct sock *sk, __u16 type)
{
	const struct unix_name *name, *known;
	struct unix_event *u;
	bool ok = true;
	__u32 slot;
	__u64 id;

	u = (struct unix_event *)take_slot(&slot);
	if (!u)
		return false;
	fill_unix(u, sk);
	name = unix_path(u);
	/* No address at either end and no peer: summary_end's "*", which no hash stands for. */
	if (!u->has_remote && !u->local.len)
		ok = false;
	id = unix_name_hash(name);
	if (ok && bpf_map_update_elem(&unix_ends, &id, name, BPF_NOEXIST)) {
		known = bpf_map_lookup_elem(&unix_ends, &id);
		ok = known && known->len == name->len;
		for (int i = 0; ok && i < PATH_WORDS; i++)
			ok = ((__u64 *)known->path)[i] == ((__u64 *)name->path)[i];
	}
	put_slot();
	if (!ok)
		return false;
	__builtin_memset(&st->ends, 0, sizeof(st->ends));
	st->ends.family = AF_UNIX;
	st->ends.protocol = type;
	__builtin_memcpy(st->ends.remote.addr, &id, sizeof(id));
	st->ends.remote.port = 1;
	return true;
}

/*
 * -c: sends and receives on a TCP or connected unix-domain (stream, seqpacket)
 * socket by its owner add up in its entry, with no event to fill and no row to look
 * up; flush_tally() moves them to their row. The first reads the socket's ends
 * (`scratch`) and makes the row, so that moving them cannot fail for want of room.
 * Others (UDP, unix datagrams, other processes, rules) go event by event.
 */
static __always_inline bool tally_in_socket(struct sock_state *st, const struct sock *sk,
					    const struct sock_kind *k, const struct proc *p,
					    __u8 kind, long ret, struct event *scratch)
{
	const __u64 *owner = (const __u64 *)st->comm;
	bool unix_conn = k->family == AF_UNIX && k->protocol != SOCK_DGRAM;

	if (!(tallied & (1u << kind)) || n_rules || (k->protocol != IPPROTO_TCP && !unix_conn) ||
	    owner[0] != p->comm_words[0] || owner[1] != p->comm_words[1])
		return false;
	/*
	 * The owner's row is also keyed by who it was when it took the socket: another
	 * process of the name may be someone else. (Asking the current uid and cgroup
	 * here instead cost 0.3 us per send+recv pair.)
	 */
	if (st->pid != p->pid)
		return false;
	if (!st->tally_events) {
		struct exec_event *x;
		__u32 slot;
		bool made;

		if (unix_conn) {
			if (!unix_row_end(st, sk, k->protocol))
				return false;
		} else {
			fill_ends(scratch, sk, k);
			if (!scratch->remote.port)
				return false;
			save_ends(st, scratch);
		}
		x = take_slot(&slot);
		if (!x)
			return false;
		row_of((struct tally_key *)x->filename, st->comm, &st->who, &st->ends.remote,
		       st->ends.family, st->ends.protocol, true, st->accepted);
		made = tally_row((struct tally_key *)x->filename) != NULL;
		put_slot();
		if (!made)
			return false;
	}
	__sync_fetch_and_add(kind == EV_SEND ? &st->tally_sent : &st->tally_received, ret);
	__sync_fetch_and_add(&st->tally_events, 1);
	return true;
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

/* A datagram's address in a kernel msghdr: the destination on send, the sender on receive. */
static __always_inline struct msg_args msg_peer(struct msghdr *msg)
{
	struct msg_args a = {
		.ptr = (__u64)BPF_CORE_READ(msg, msg_name),
		.len = BPF_CORE_READ(msg, msg_namelen),
	};

	return a;
}

/* A unix-domain send's msghdr: its address, and its control messages (copied into the kernel). */
static __always_inline struct msg_args msg_sent(struct msghdr *msg)
{
	struct msg_args a = msg_peer(msg);

	a.control = (__u64)BPF_CORE_READ(msg, msg_control);
	a.controllen = BPF_CORE_READ(msg, msg_controllen);
	return a;
}

/* No address: a stream, or a connected datagram socket. */
static const struct msg_args no_addr = { .len = -1 };

/* The tracepoints see every send and receive path, in the calling process. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_send, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_SEND, no_addr, VIA_SYSCALL | VIA_TRUSTED);
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
