/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading sockets, files and addresses into events.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "compat.h"
#include "emit.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"

/* A socket's address family and protocol (a unix-domain socket's type), read once and passed on. */
struct sock_kind {
	__u16 family;
	__u16 protocol;
};

/*
 * A field of a struct sock. tp_btf and fentry programs are handed BTF pointers,
 * which plain loads read (a few ns); kprobes and pointers read from memory need
 * probe reads (tens of ns). `trusted`: `sk` is such a pointer, a constant at each
 * inlined call site.
 */
#define SK_FIELD(trusted, sk, field) ((trusted) ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline void read_kind(const struct sock *sk, struct sock_kind *k, bool trusted)
{
	k->family = SK_FIELD(trusted, sk, __sk_common.skc_family);
	/* A unix-domain socket's sk_protocol is 0: its type tells stream from datagram. */
	if (k->family == AF_UNIX)
		k->protocol = SK_FIELD(trusted, sk, sk_type);
	else
		k->protocol = SK_FIELD(trusted, sk, sk_protocol);
}

/* TCP and UDP over IPv4 and IPv6, and unix-domain stream, datagram and seqpacket sockets. */
static __always_inline bool traced_sock_of(const struct sock *sk, struct sock_kind *k,
					   bool trusted)
{
	if (!sk)
		return false;
	read_kind(sk, k, trusted);
	/* Not tracked when --proto leaves them out: their hooks are not loaded then. */
	if (k->family == AF_UNIX)
		return (!protocols || (protocols & PROTO_UNIX)) &&
		       (k->protocol == SOCK_STREAM || k->protocol == SOCK_DGRAM ||
			k->protocol == SOCK_SEQPACKET);
	return (k->family == AF_INET || k->family == AF_INET6) &&
	       (k->protocol == IPPROTO_TCP || k->protocol == IPPROTO_UDP);
}

static __always_inline bool traced_sock(const struct sock *sk, struct sock_kind *k)
{
	return traced_sock_of(sk, k, false);
}

/*
 * The socket's ends, for a socket whose kind the caller has already read. A
 * unix-domain socket's addresses go in the event's tail (fill_unix).
 */
/*
 * A connection's two addresses and its peer's port, as the event's family says,
 * from a sock_common: a socket's, or a request's before it is accepted.
 */
static __always_inline void fill_addrs(struct event *e, const struct sock_common *c)
{
	e->remote.port = bpf_ntohs(BPF_CORE_READ(c, skc_dport));
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->local.addr, c, skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->remote.addr, c, skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->local.addr, c, skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->remote.addr, c, skc_daddr);
	}
}

static __always_inline void fill_ends(struct event *e, const struct sock *sk,
				      const struct sock_kind *k)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	e->family = k->family;
	e->protocol = k->protocol;
	if (e->family == AF_UNIX)
		return;
	/* inet_sport, not skc_num: the latter is already 0 on transitions to CLOSE. */
	e->local.port = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	fill_addrs(e, &sk->__sk_common);
}

/* A unix-domain socket's bound address (the kernel's unix_address) into `n`. */
static __always_inline void read_unix_name(struct unix_name *n, const struct sock *sk)
{
	struct unix_address *addr = BPF_CORE_READ((struct unix_sock *)sk, addr);
	/* 64 bits: a 32-bit compare's bounds do not reach the helper's argument on 5.10-6.1. */
	__u64 len;

	if (!addr)
		return;
	/* `len` counts sun_family, which comes before sun_path. */
	len = BPF_CORE_READ(addr, len);
	if (len <= sizeof(__u16))
		return;
	len -= sizeof(__u16);
	if (len > UNIX_PATH_LEN)
		len = UNIX_PATH_LEN;
	/* Again after the barrier: older verifiers lose a clamped length's bounds. */
	barrier_var(len);
	if (len > UNIX_PATH_LEN)
		return;
	if (!bpf_probe_read_kernel(n->path, len,
				   (void *)addr + bpf_core_field_offset(struct unix_address, name) +
					   sizeof(__u16)))
		n->len = len;
}

/*
 * An AF_UNIX event's tail: the socket's address, its peer's, and the peer's process
 * from the credentials the kernel keeps for SO_PEERCRED. A function of its own:
 * inlined, its locals would add to the exit walk's frame, which the verifier
 * allows only 512 bytes with the frames it calls.
 */
static __noinline void fill_unix(struct unix_event *u, const struct sock *sk)
{
	struct sock *peer = BPF_CORE_READ((struct unix_sock *)sk, peer);

	__builtin_memset(&u->peer_pid, 0, sizeof(*u) - sizeof(u->base));
	read_unix_name(&u->local, sk);
	if (peer) {
		u->has_remote = 1;
		read_unix_name(&u->remote, peer);
	}
	u->peer_pid = BPF_CORE_READ(sk, sk_peer_pid, numbers[0].nr);
}

static __always_inline void fill_sock(struct event *e, const struct sock *sk)
{
	struct sock_kind k;

	read_kind(sk, &k, false);
	fill_ends(e, sk, &k);
}

/* The current process's identity. */
static __always_inline void current_identity(struct identity *who)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	who->cgroup = bpf_get_current_cgroup_id();
	who->uid = (__u32)bpf_get_current_uid_gid();
	who->ppid = BPF_CORE_READ(task, real_parent, tgid);
}

/* An event of process `pid`: its identity is the current task's when that is it. */
static __always_inline void fill_proc(struct event *e, __u8 kind, __u32 pid, __u32 tid,
				      const char *comm)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->pid = pid;
	e->tid = tid;
	__builtin_memcpy(e->comm, comm, TASK_COMM_LEN);
	if (pid == bpf_get_current_pid_tgid() >> 32)
		current_identity(&e->who);
}

/* An event charged to a socket's owner: the owner's identity where another task runs. */
static __always_inline void fill_owner(struct event *e, __u8 kind, const struct sock_state *st)
{
	fill_proc(e, kind, st->pid, st->tid, st->comm);
	if (!e->who.cgroup)
		e->who = st->who;
}

static __always_inline struct file *file_from_fd(long fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || fd >= max_fds)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

static __always_inline struct sock *sock_from_file(struct file *file)
{
	struct socket *sock;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* References to an open file; file_ref_t (6.13+) stores the count minus one. */
static __always_inline long file_refs(struct file *file)
{
	if (bpf_core_field_exists(file->f_ref))
		return BPF_CORE_READ(file, f_ref.refcnt.counter) + 1;
	return BPF_CORE_READ((struct file___pre613 *)file, f_count.counter);
}

/* Whether a socket event has ends to report: bound, connected, or with a peer. */
static __always_inline bool has_ends(const struct exec_event *x)
{
	const struct unix_event *u = (const struct unix_event *)x;

	if (x->base.family == AF_UNIX)
		return u->local.len || u->has_remote;
	return x->base.local.port || x->base.remote.port;
}

/*
 * Sends a socket event built on the stack. A unix-domain one is copied to a slot
 * first, where its addresses are read after it.
 */
static __always_inline void emit_sock(void *ctx, struct event *e, const struct sock *sk)
{
	struct exec_event *x;
	__u32 slot;

	if (e->family != AF_UNIX) {
		emit(ctx, e);
		return;
	}
	x = take_slot(&slot);
	if (!x)
		return;
	__builtin_memcpy(&x->base, e, sizeof(*e));
	fill_unix((struct unix_event *)x, sk);
	emit_built(ctx, x, slot);
}

/* Whether a socket event built on the stack passes the filters, a unix-domain one's path too. */
static __always_inline bool sock_passes(const struct event *e, const struct sock *sk)
{
	struct exec_event *x;
	__u32 slot;
	bool passes;

	if (e->family != AF_UNIX || !n_paths)
		return event_passes_ends(e);
	x = take_slot(&slot);
	if (!x)
		return false;
	__builtin_memcpy(&x->base, e, sizeof(*e));
	fill_unix((struct unix_event *)x, sk);
	passes = event_passes(x);
	put_slot();
	return passes;
}

/* Whether a unix-domain socket's own or peer's address passes --path. */
static __always_inline bool unix_sock_passes(const struct sock *sk)
{
	struct exec_event *x;
	__u32 slot;
	bool passes;

	x = take_slot(&slot);
	if (!x)
		return false;
	x->base.family = AF_UNIX;
	fill_unix((struct unix_event *)x, sk);
	passes = path_passes(unix_path((const struct unix_event *)x));
	put_slot();
	return passes;
}

/*
 * Unix-domain sockets: unix_stream_sendmsg, unix_dgram_sendmsg and
 * unix_seqpacket_sendmsg. The last calls the second, inlined on some kernels and
 * not on others: the second counts datagram sockets only. Before 6.5, sendfile
 * and splice reach a stream through unix_stream_sendpage.
 */
static __always_inline bool seqpacket(struct socket *sock)
{
	return BPF_CORE_READ(sock, type) == SOCK_SEQPACKET;
}
