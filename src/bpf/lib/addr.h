/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading the address a call named (a connect's, a datagram's peer), from the
 * caller's memory or the kernel's, into an event.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "compat.h"

/* The syscall's registers (tracepoint mode only: bpf_task_pt_regs is 5.15+). */
static __always_inline struct pt_regs *user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

/*
 * Reads an address the caller named: from user memory (a syscall's argument) or
 * kernel memory (the copy a socket function is handed).
 */
static __always_inline long read_addr(void *dst, __u32 size, __u64 addr, bool user)
{
	return user ? bpf_probe_read_user(dst, size, (void *)addr)
		    : bpf_probe_read_kernel(dst, size, (void *)addr);
}

/* Reads a sockaddr into the event's remote end. */
static __always_inline bool read_peer(struct event *e, __u64 addr, bool user)
{
	struct sockaddr_in6 sa = {};

	/* An IPv4 caller's buffer may be just a sockaddr_in: read more only for IPv6. */
	if (!addr || read_addr(&sa, sizeof(struct sockaddr_in), addr, user))
		return false;
	if (sa.sin6_family == AF_INET6 && read_addr(&sa, sizeof(sa), addr, user))
		return false;
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&sa;

		e->remote.port = bpf_ntohs(sin->sin_port);
		__builtin_memset(e->remote.addr, 0, sizeof(e->remote.addr));
		__builtin_memcpy(e->remote.addr, &sin->sin_addr, 4);
		/* A v6 socket may name a v4 peer; the peer's family is what the user sees. */
		e->family = AF_INET;
		return true;
	}
	if (sa.sin6_family == AF_INET6) {
		e->remote.port = bpf_ntohs(sa.sin6_port);
		__builtin_memcpy(e->remote.addr, &sa.sin6_addr, 16);
		e->family = AF_INET6;
		return true;
	}
	return false;
}

/* The address family a sockaddr names, or -1 when it cannot be read. */
static __always_inline int addr_family(__u64 addr, bool user)
{
	__u16 family;

	return read_addr(&family, sizeof(family), addr, user) ? -1 : family;
}

/* The port a sockaddr names (in and in6 keep it at the same place). */
static __always_inline __u16 addr_port(__u64 addr, bool user)
{
	struct sockaddr_in sa = {};

	read_addr(&sa, sizeof(sa), addr, user);
	return sa.sin_port;
}

/*
 * A sockaddr_un a call named (connect, sendto) or the kernel wrote (a sender) into
 * `n`. With its length (`len`, from sun_family on) the bytes are exact; without
 * (-1), a path ends at its NUL and an abstract name at its first NUL.
 */
static __always_inline void read_unix_addr(struct unix_name *n, __u64 addr, long len, bool user)
{
	void *path = (void *)addr + sizeof(__u16);
	char first = 0;

	if (len >= 0) {
		__u64 size;

		if (len <= sizeof(__u16))
			return;
		size = len - sizeof(__u16);
		if (size > UNIX_PATH_LEN)
			size = UNIX_PATH_LEN;
		/* Again after the barrier: older verifiers lose a clamped length's bounds. */
		barrier_var(size);
		if (size > UNIX_PATH_LEN)
			return;
		if (!read_addr(n->path, size, (__u64)path, user))
			n->len = size;
		return;
	}
	if (read_addr(&first, 1, (__u64)path, user))
		return;
	/* Either way the count includes the NUL: a path's last byte, an abstract name's first. */
	if (first)
		len = user ? bpf_probe_read_user_str(n->path, UNIX_PATH_LEN, path)
			   : bpf_probe_read_kernel_str(n->path, UNIX_PATH_LEN, path);
	else
		len = user ? bpf_probe_read_user_str(n->path + 1, UNIX_PATH_LEN - 1, path + 1)
			   : bpf_probe_read_kernel_str(n->path + 1, UNIX_PATH_LEN - 1, path + 1);
	if (len > 0)
		n->len = len;
}

/*
 * The remote end a call named, into an event built in a slot: an IP peer in the
 * event, a unix-domain address in its tail.
 */
static __always_inline bool read_named_peer(struct exec_event *x, __u64 addr, long len,
					    bool user)
{
	struct unix_event *u = (struct unix_event *)x;

	if (x->base.family != AF_UNIX)
		return read_peer(&x->base, addr, user);
	__builtin_memset(&u->remote, 0, sizeof(u->remote));
	u->has_remote = 0;
	if (!addr)
		return false;
	/* The kernel writes no address for a sender that has none: an unnamed peer. */
	if (len != 0 && addr_family(addr, user) != AF_UNIX)
		return false;
	read_unix_addr(&u->remote, addr, len, user);
	u->has_remote = 1;
	return true;
}
