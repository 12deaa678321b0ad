/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The assertions' and policies' rules matched against an event.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "compat.h"
#include "filters.h"
#include "knobs.h"
#include "maps.h"

/*
 * 1 when `x` is not zero, without a branch: the barrier keeps the compiler from
 * seeing `x != 0`, which it would turn back into one (and each branch doubles
 * what the verifier walks).
 */
static __always_inline __u64 nonzero(__u64 x)
{
	__u64 neg = -x;

	asm volatile("" : "+r"(neg));
	return (x | neg) >> 63;
}

/* The key's fields from the event's common part; a unix-domain path is fill_path()'s. */
static __always_inline void fill_key(struct match_key *k, const struct event *e)
{
	__builtin_memcpy(k->comm, e->comm, sizeof(k->comm));
	k->family = e->family;
	k->protocol = e->protocol;
	if (e->kind == EV_CONNECT) {
		k->has |= HAS_RESULT;
		k->result = e->flags & EF_ABORTED ? MATCH_ABORTED : (__u32)-e->value;
	}
	if (e->family == AF_UNIX) {
		k->has |= HAS_SOCKET;
		return;
	}
	__builtin_memcpy(k->addr, e->remote.addr, sizeof(k->addr));
	if (e->family == AF_INET6 && !k->addr[0] && !k->addr[1] && k->addr[2] == bpf_htonl(0xffff)) {
		k->family = AF_INET;
		k->addr[0] = k->addr[3];
	}
	k->lport = e->local.port;
	k->rport = e->remote.port;
	if (e->family) {
		/* As user space decodes it: port 0 is no peer, except where a CONNECT aimed. */
		bool aimed = e->kind == EV_CONNECT && (k->addr[0] | k->addr[1] | k->addr[2] | k->addr[3]);

		k->has |= HAS_SOCKET | HAS_PORT;
		if ((e->remote.port || aimed) && !(e->flags & EF_PEER_UNKNOWN))
			k->has |= HAS_PEER;
	}
}

/* A unix-domain event's path, from its tail. */
static __always_inline void fill_path(struct match_key *k, const struct unix_event *u)
{
	const struct unix_name *n = unix_path(u);

	if (n->len) {
		k->has |= HAS_PATH;
		__builtin_memcpy(k->path, n->path, sizeof(k->path));
	}
}

/* 1 when the term holds for the key. */
static __always_inline __u64 term_holds(const volatile struct rule_term *t,
					 const struct match_key *k)
{
	const __u64 *kw = (const __u64 *)k;
	const volatile __u64 *mask = (const volatile __u64 *)&t->mask;
	const volatile __u64 *value = (const volatile __u64 *)&t->value;
	const volatile __u64 *alt_mask = (const volatile __u64 *)&t->alt_mask;
	const volatile __u64 *alt_value = (const volatile __u64 *)&t->alt_value;
	__u64 miss = 0, alt_miss = 0;

	for (int w = 0; w < sizeof(*k) / 8; w++) {
		miss |= (kw[w] & mask[w]) ^ value[w];
		alt_miss |= (kw[w] & alt_mask[w]) ^ alt_value[w];
	}
	__u64 absent = nonzero((k->has & t->has) ^ t->has);
	__u64 hit = 1 - (nonzero(miss) & nonzero(alt_miss));

	return (1 - absent) & (hit ^ t->negated);
}

/* 1 when the rule is about one of `kinds` (bits 1 << kind) and its every term holds. */
static __always_inline __u64 rule_holds(const volatile struct rule *r, const struct match_key *k,
					__u32 kinds)
{
	__u64 all = nonzero(r->kinds & kinds);

	for (int j = 0; j < MAX_TERMS; j++)
		all &= term_holds(&r->terms[j], k);
	return all;
}

/* Counts the hit; the first on each CPU competes for the rule's first match. */
static __always_inline void record_hit(__u32 i, struct exec_event *x)
{
	__u64 *n = bpf_map_lookup_elem(&rule_hits, &i);

	if (!n)
		return;
	if (!*n)
		bpf_map_update_elem(&first_hits, &i, x, BPF_NOEXIST);
	*n += 1;
}

/*
 * Matches the event in `scratch`[slot] against every rule and returns the rules
 * it matched, one bit each. Global, so the verifier checks it once per program
 * rather than at each of its call sites.
 */
__noinline int match_event(__u32 slot)
{
	struct exec_event *x = bpf_map_lookup_elem(&scratch, &slot);
	struct match_key *k = bpf_map_lookup_elem(&match_keys, &slot);
	__u32 kind;
	int matched = 0;

	if (!x || !k)
		return 0;
	__builtin_memset(k, 0, sizeof(*k));
	fill_key(k, &x->base);
	if (x->base.family == AF_UNIX)
		fill_path(k, (const struct unix_event *)x);
	kind = 1u << (x->base.kind & 31);
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= n_rules)
			break;
		if (rule_holds(&rules[i], k, kind)) {
			matched |= 1 << i;
			record_hit(i, x);
		}
	}
	return matched;
}
