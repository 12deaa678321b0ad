/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket state: tracked, adopted, released; calls stashed between entry and return.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "addr.h"
#include "compat.h"
#include "emit.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"
#include "sock.h"
#include "target.h"

static __always_inline void save_ends(struct sock_state *st, const struct event *e)
{
	st->ends.local = e->local;
	st->ends.remote = e->remote;
	st->ends.family = e->family;
	st->ends.protocol = e->protocol;
}

/* A failed blocking connect disconnects the socket, zeroing its ports: report the ends it had. */
static __always_inline void fill_closed_sock(struct event *e, const struct sock *sk,
					     const struct sock_state *st)
{
	fill_sock(e, sk);
	if (e->protocol == IPPROTO_TCP && e->remote.port == 0 && st->ends.remote.port != 0) {
		e->local = st->ends.local;
		e->remote = st->ends.remote;
		e->family = st->ends.family;
	}
}

/* Reports a connect outcome; `addr`, when set, is the connect() argument to name the peer. */
static __always_inline void emit_connect(void *ctx, const struct sock *sk, struct sock_state *st,
					 __s64 result, __u8 flags, __u64 duration_ns, __u64 addr,
					 bool user)
{
	struct event *e;
	__u32 slot;
	struct exec_event *x = take_slot(&slot);

	if (!x)
		return;
	e = &x->base;
	fill_owner(e, EV_CONNECT, st);
	fill_sock(e, sk);
	if (e->family == AF_UNIX)
		fill_unix((struct unix_event *)x, sk);
	if (addr)
		read_named_peer(x, addr, -1, user);
	save_ends(st, e);
	e->value = result;
	e->flags = flags;
	e->duration_ns = duration_ns;
	emit_built(ctx, x, slot);
}

/* The inode number of a socket's struct socket (0 when it has none). */
static __always_inline __u64 sock_ino(const struct sock *sk, bool trusted)
{
	struct socket_alloc *sa = (struct socket_alloc *)SK_FIELD(trusted, sk, sk_socket);

	if (!sa)
		return 0;
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

/*
 * Tracepoint mode: an entry whose socket is gone (released where no hook saw it)
 * while a new socket took its address is dropped and counted, never merged into
 * the new one. The other modes see every release: they never read the inode.
 */
static __always_inline bool stale(const struct sock_state *st, __u64 ino)
{
	if (!no_release_hook || st->ino == ino)
		return false;
	bump(CTR_MISSED);
	return true;
}

/* A new owner's identity: the current task's, when that is the owner (it is, but in the exit walk's children). */
static __always_inline void own(struct sock_state *st, const struct proc *p)
{
	if (p->pid == bpf_get_current_pid_tgid() >> 32)
		current_identity(&st->who);
	else
		__builtin_memset(&st->who, 0, sizeof(st->who));
}

/*
 * A socket the table had no room for. It is counted once, and only once it needs a
 * CLOSE (`needed`: connected, accepted, listening or moving bytes); a socket that is
 * only created and closed again costs nothing.
 */
static __always_inline void turned_away(__u64 key, bool needed)
{
	__u8 zero = 0, one = 1;
	__u8 *counted;

	any_skipped = 1;
	if (!needed) {
		/* A new socket at this address: forget whatever was here before. */
		bpf_map_update_elem(&skipped, &key, &zero, BPF_ANY);
		return;
	}
	counted = bpf_map_lookup_elem(&skipped, &key);
	if (counted && *counted)
		return;
	if (counted)
		*counted = 1;
	else
		bpf_map_update_elem(&skipped, &key, &one, BPF_NOEXIST);
	bump(CTR_UNTRACKED);
}

/*
 * Starts tracking a socket the traced process just created, accepted or connected
 * (`born`), or one it uses that was open before tracing began. A socket only created
 * is not `needed` yet (see turned_away).
 */
static __always_inline struct sock_state *track(const struct sock *sk, const struct proc *p,
						__u64 connect_ns, bool born, bool needed)
{
	__u64 key = (__u64)sk;
	__u8 one = 1;
	struct sock_state st = {
		.born_ns = bpf_ktime_get_boot_ns(),
		.connect_ns = connect_ns,
		.ino = no_release_hook ? sock_ino(sk, false) : 0,
		.pid = p->pid,
		.tid = p->tid,
		.connected = connect_ns != 0,
	};

	__builtin_memcpy(st.comm, p->comm, TASK_COMM_LEN);
	own(&st, p);
	if (born && no_release_hook) {
		struct sock_state *old = bpf_map_lookup_elem(&socks, &key);

		/* A socket at this address was released unseen. */
		if (old && stale(old, st.ino))
			flush_tally(old);
	}
	if (bpf_map_update_elem(&socks, &key, &st, BPF_ANY)) {
		turned_away(key, needed);
		return NULL;
	}
	if (any_skipped)
		bpf_map_delete_elem(&skipped, &key);
	if (no_release_hook)
		bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
	return bpf_map_lookup_elem(&socks, &key);
}

/*
 * Whether a connected TCP socket found open was accepted: it inherited the
 * listener's explicit bind (SOCK_BINDPORT_LOCK), which a client's automatic port
 * does not set. A client that bound its own port is taken for a server.
 */
static __always_inline __u8 was_accepted(const struct sock *sk)
{
	struct sock_kind kind;

	read_kind(sk, &kind, false);
	return kind.family != AF_UNIX && kind.protocol == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN &&
	       (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_userlocks) & SOCK_BINDPORT_LOCK) != 0;
}

/*
 * The state of a socket already open when tracing began is adopted on first use;
 * a socket whose owner let it go while another process held it goes to its next user.
 */
static __always_inline struct sock_state *adopt_as(const struct sock *sk, const struct proc *p,
					       bool trusted)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);

	if (st && no_release_hook && stale(st, sock_ino(sk, trusted))) {
		flush_tally(st);
		bpf_map_delete_elem(&socks, &key);
		st = NULL;
	}
	if (st) {
		if (st->unowned) {
			__u8 one = 1;

			flush_tally(st);
			st->unowned = 0;
			st->pid = p->pid;
			st->tid = p->tid;
			__builtin_memcpy(st->comm, p->comm, TASK_COMM_LEN);
			own(st, p);
			if (no_release_hook)
				bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
		}
		return st;
	}
	/* Born while the table was full: its totals would be wrong. */
	if (any_skipped) {
		__u8 *counted = bpf_map_lookup_elem(&skipped, &key);

		if (counted) {
			turned_away(key, true);
			return NULL;
		}
	}
	st = track(sk, p, 0, false, true);
	if (st) {
		st->partial = 1;
		st->born_ns = start_ns;
		st->accepted = was_accepted(sk);
	}
	return st;
}

/* The struct sock of a struct socket a kprobe stashed (a plain variable: CO-RE
 * relocates every field access inside its read). */
static __always_inline struct sock *socket_sk(__u64 socket)
{
	struct socket *sock = (struct socket *)socket;

	return BPF_CORE_READ(sock, sk);
}

/*
 * Stashes a call's arguments (a kprobe's for its kretprobe, a connect's start) in
 * the thread's entry of `calls`; a full table is counted: the call's events may
 * be missing.
 */
static __always_inline void stash_as(const struct proc *p, __u64 arg0, __u64 arg1, __u32 flags)
{
	struct call c;

	__builtin_memset(&c, 0, sizeof(c));
	c.start_ns = bpf_ktime_get_boot_ns();
	c.arg0 = arg0;
	c.arg1 = arg1;
	c.flags = flags;
	if (bpf_map_update_elem(&calls, &p->tid, &c, BPF_ANY))
		bump(CTR_UNSTASHED);
}

/* stash_as for the current process; returns false when it is not traced. */
static __always_inline bool stash(__u64 arg0, __u64 arg1, __u32 flags)
{
	struct proc p;

	if (!current_proc(&p))
		return false;
	stash_as(&p, arg0, arg1, flags);
	return true;
}

/* Takes this thread's stashed call out of the table. */
static __always_inline bool unstash(struct call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call *found = bpf_map_lookup_elem(&calls, &tid);

	if (!found)
		return false;
	*c = *found;
	bpf_map_delete_elem(&calls, &tid);
	return true;
}

static __always_inline struct sock_state *adopt(const struct sock *sk, const struct proc *p)
{
	return adopt_as(sk, p, false);
}
