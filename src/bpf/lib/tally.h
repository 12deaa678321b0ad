/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * -c's sends and receives added up in the socket's own entry, and the rows they
 * go to: a unix-domain socket's row is its path's.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../sockwatch.h"
#include "compat.h"
#include "emit.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"
#include "sock.h"
#include "state.h"

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
