/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which events are wanted, and the socket filters (--port, --peer, --proto, --path).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "compat.h"
#include "knobs.h"
#include "maps.h"

static __always_inline bool wanted(enum event_kind kind)
{
	return selected & (1u << kind);
}

/* Socket state is kept when CLOSE needs totals and lifetimes, or CONNECT needs a start time. */
static __always_inline bool tracking(void)
{
	return wanted(EV_CLOSE) || wanted(EV_CONNECT);
}

static __always_inline void bump(enum counter which)
{
	__u32 key = which;
	__u64 *n = bpf_map_lookup_elem(&counters, &key);

	if (n)
		*n += 1;
}

static __always_inline bool filtering(void)
{
	return n_ports || n_peers || protocols || n_paths;
}

/* The --proto bit of a socket kind. */
static __always_inline __u32 proto_bit(__u16 family, __u16 protocol)
{
	if (family == AF_UNIX)
		return PROTO_UNIX;
	return protocol == IPPROTO_TCP ? PROTO_TCP : PROTO_UDP;
}

/*
 * The address a unix-domain event's path filters and terms are about: its peer's
 * when named (a client's server), else its own (a server's, a datagram socket's).
 */
static __always_inline const struct unix_name *unix_path(const struct unix_event *u)
{
	return u->remote.len ? &u->remote : &u->local;
}

/* Whether a unix-domain address passes --path: whole words compared under masks. */
static __always_inline bool path_passes(const struct unix_name *n)
{
	const __u64 *w = (const __u64 *)n->path;

	if (!n->len)
		return false;
	for (int i = 0; i < MAX_PATHS; i++) {
		__u64 miss = 0;

		if (i >= n_paths)
			break;
		for (int j = 0; j < PATH_WORDS; j++)
			miss |= (w[j] & paths[i].mask[j]) ^ paths[i].words[j];
		if (!miss)
			return true;
	}
	return false;
}

static __always_inline bool ports_pass(__u16 lport, __u16 rport)
{
	if (!n_ports)
		return true;
	for (int i = 0; i < MAX_PORTS; i++) {
		if (i >= n_ports)
			break;
		if (ports[i] == lport || ports[i] == rport)
			return true;
	}
	return false;
}

static __always_inline bool peer_passes(__u8 family, const __u8 *raddr)
{
	__u32 w[4];

	if (!n_peers)
		return true;
	__builtin_memcpy(w, raddr, sizeof(w));
	/* An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) is an IPv4 peer, as sockwatch prints it. */
	if (family == AF_INET6 && !w[0] && !w[1] && w[2] == bpf_htonl(0xffff)) {
		family = AF_INET;
		w[0] = w[3];
	}
	for (int i = 0; i < MAX_PEERS; i++) {
		if (i >= n_peers)
			break;
		if (peers[i].family == family && (w[0] & peers[i].mask[0]) == peers[i].addr[0] &&
		    (w[1] & peers[i].mask[1]) == peers[i].addr[1] &&
		    (w[2] & peers[i].mask[2]) == peers[i].addr[2] &&
		    (w[3] & peers[i].mask[3]) == peers[i].addr[3])
			return true;
	}
	return false;
}

/*
 * Whether an event passes the socket filters by its kind and IP ends; process
 * events carry no family and pass. A unix-domain socket has no port or IP peer,
 * an IP socket no path.
 */
static __always_inline bool event_passes_ends(const struct event *e)
{
	if (!e->family || !filtering())
		return true;
	if (protocols && !(protocols & proto_bit(e->family, e->protocol)))
		return false;
	if (e->family == AF_UNIX)
		return !n_ports && !n_peers;
	return !n_paths && ports_pass(e->local.port, e->remote.port) &&
	       peer_passes(e->family, e->remote.addr);
}

/* Whether an event built in a slot passes the socket filters, a unix-domain one's path too. */
static __always_inline bool event_passes(const struct exec_event *x)
{
	if (!event_passes_ends(&x->base))
		return false;
	if (x->base.family != AF_UNIX || !n_paths)
		return true;
	return path_passes(unix_path((const struct unix_event *)x));
}
