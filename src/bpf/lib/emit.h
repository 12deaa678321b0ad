/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Sending events: per-CPU slots to build them in, which go to user space, and
 * -c's summary rows the kernel adds sends and receives up in instead.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../sockwatch.h"
#include "compat.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"
#include "match.h"

/* Sends a finished record to user space. A full perf buffer counts its own losses. */
static __always_inline void output(void *ctx, void *data, __u64 size)
{
	if (use_ringbuf) {
		if (bpf_ringbuf_output(&events, data, size, 0))
			bump(CTR_LOST);
	} else if (bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, data, size) ==
		   -ENOENT) {
		/* No buffer on this CPU (it came online later); a full one reports itself. */
		bump(CTR_LOST);
	}
}

/*
 * Takes this CPU's next free event slot into *slot; NULL when every one is in use
 * (counted as a lost event). put_slot() gives it back, on every path. Programs
 * that interrupt another on this CPU finish before it resumes, so the depth needs
 * no atomics: whatever an interruption takes, it puts back.
 */
static __always_inline struct exec_event *take_slot(__u32 *slot)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&nesting, &zero);
	struct exec_event *x;
	__u32 s;

	if (!depth || *depth >= MAX_NESTING) {
		bump(CTR_LOST);
		return NULL;
	}
	s = SLOT_EVENT + *depth;
	x = bpf_map_lookup_elem(&scratch, &s);
	if (!x)
		return NULL;
	*depth += 1;
	*slot = s;
	return x;
}

static __always_inline void put_slot(void)
{
	__u32 zero = 0;
	__u32 *depth = bpf_map_lookup_elem(&nesting, &zero);

	if (depth && *depth)
		*depth -= 1;
}

/* Whether every event of its kind goes to user space, or the rules matched this one. */
static __always_inline bool shipping(const struct event *e)
{
	return (shipped & (1u << e->kind)) || e->matched;
}

/*
 * -c's summary row of `comm`, who it is and a remote end, in `key` (a scratch slot: the exit
 * walk's call chain has no stack to spare). Port 0 is no peer, as user space
 * decodes a send or receive; a server's clients count per host.
 */
static __always_inline void row_of(struct tally_key *key, const char *comm,
				   const struct identity *who, const struct endpoint *remote,
				   __u8 family, __u8 protocol, bool peer, bool accepted)
{
	__builtin_memset(key, 0, sizeof(*key));
	__builtin_memcpy(key->comm, comm, sizeof(key->comm));
	key->cgroup = who->cgroup;
	key->uid = who->uid;
	key->family = family;
	key->protocol = protocol;
	key->accepted = accepted;
	if (peer) {
		key->peer = 1;
		key->remote = *remote;
		if (accepted)
			key->remote.port = 0;
	}
}

/* A row, made if new; NULL when the table of rows is full. */
static __always_inline struct tally *tally_row(const struct tally_key *key)
{
	struct tally zero = {}, *t = bpf_map_lookup_elem(&tallies, key);

	if (!t) {
		bpf_map_update_elem(&tallies, key, &zero, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&tallies, key);
	}
	return t;
}

/* Adds to a row, made if new; false when the table of rows is full. */
static __always_inline bool tally_add(const struct tally_key *key, __u64 sent, __u64 received,
				      __u64 events)
{
	struct tally *t = tally_row(key);

	if (!t)
		return false;
	/* Atomic: a program nested on this CPU may add to the same row. */
	__sync_fetch_and_add(&t->sent, sent);
	__sync_fetch_and_add(&t->received, received);
	__sync_fetch_and_add(&t->events, events);
	return true;
}

/*
 * Adds a send or receive to its summary row; false when the table of rows is full
 * (or no slot was free), and the event must go to user space after all.
 */
static __always_inline bool tally(const struct event *e)
{
	__u64 bytes = e->value;
	struct exec_event *x;
	__u32 slot;
	bool added;

	x = take_slot(&slot);
	if (!x)
		return false;
	row_of((struct tally_key *)x->filename, e->comm, &e->who, &e->remote, e->family, e->protocol,
	       e->remote.port && !(e->flags & EF_PEER_UNKNOWN), e->flags & EF_ACCEPTED);
	added = tally_add((struct tally_key *)x->filename, e->kind == EV_SEND ? bytes : 0,
			  e->kind == EV_RECV ? bytes : 0, 1);
	put_slot();
	return added;
}

/*
 * Moves what a socket's owner sent and received, added up in its entry
 * (tally_in_socket), to their summary row: before the entry goes, or its owner
 * changes. Subtracting what was moved keeps adds that come meanwhile. Not
 * inlined: the accept path's stack, with the rules' match_event, is near the limit.
 */
static __noinline void flush_tally(struct sock_state *st)
{
	__u64 sent = st->tally_sent, received = st->tally_received, events = st->tally_events;
	struct exec_event *x;
	__u32 slot;

	if (!events)
		return;
	x = take_slot(&slot);
	if (!x) {
		bump(CTR_LOST);
		return;
	}
	row_of((struct tally_key *)x->filename, st->comm, &st->who, &st->ends.remote, st->ends.family,
	       st->ends.protocol, st->ends.remote.port != 0, st->accepted);
	/* Its row was made when the socket's first bytes were added up: it is there. */
	if (tally_add((struct tally_key *)x->filename, sent, received, events)) {
		__sync_fetch_and_add(&st->tally_sent, -sent);
		__sync_fetch_and_add(&st->tally_received, -received);
		__sync_fetch_and_add(&st->tally_events, -events);
	} else {
		bump(CTR_LOST);
	}
	put_slot();
}

/*
 * Whether an event goes to user space: every one of its kind, one the rules matched,
 * or a send or receive -c could not add up in the kernel (a unix-domain one).
 */
static __always_inline bool goes_to_user_space(const struct event *e)
{
	return shipping(e) || (tallied & (1u << e->kind));
}

/*
 * Sends an event built in scratch[slot], where match_event() reads it; gives an
 * event slot back. EXEC and unix-domain events carry their tail.
 */
static __always_inline void emit_built(void *ctx, struct exec_event *x, __u32 slot)
{
	__u64 size = sizeof(x->base);

	if (slot == SLOT_EXEC)
		size = sizeof(*x);
	else if (x->base.family == AF_UNIX)
		size = sizeof(struct unix_event);
	if (event_passes(x)) {
		if (n_rules)
			x->base.matched = match_event(slot);
		if (goes_to_user_space(&x->base))
			output(ctx, x, size);
	}
	if (slot != SLOT_EXEC)
		put_slot();
}

/* Sends an event from the stack, copied where match_event() reads it when there are rules. */
static __always_inline void emit(void *ctx, struct event *e)
{
	struct exec_event *x;
	__u32 slot;

	if (!event_passes_ends(e))
		return;
	if (n_rules) {
		x = take_slot(&slot);
		if (!x)
			return;
		__builtin_memcpy(&x->base, e, sizeof(*e));
		e->matched = match_event(slot);
		put_slot();
	}
	if (shipping(e) || ((tallied & (1u << e->kind)) && !tally(e)))
		output(ctx, e, sizeof(*e));
}
