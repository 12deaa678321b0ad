/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Step Deny: --deny, --allow and --audit in COMMAND's cgroup.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "../sockwatch.h"
#include "../lib/compat.h"
#include "../lib/emit.h"
#include "../lib/filters.h"
#include "../lib/knobs.h"
#include "../lib/maps.h"
#include "../lib/match.h"
#include "../lib/sock.h"

/* The --deny the call matches, DENY_UNLISTED when it fits no --allow, or -2: allowed. */
static __always_inline int denied_by(const struct match_key *k, __u32 calls)
{
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= n_deny)
			break;
		if (rule_holds(&deny_rules[i], k, calls))
			return i;
	}
	if (!n_allow)
		return -2;
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= n_allow)
			break;
		if (rule_holds(&allow_rules[i], k, calls))
			return -2;
	}
	return DENY_UNLISTED;
}

static __always_inline void audited(const struct match_key *k, bool sendmsg)
{
	struct destination d = {
		.port = k->rport,
		.family = k->family,
		.protocol = k->protocol,
		.sendmsg = sendmsg,
	};
	__u8 one = 1;

	__builtin_memcpy(d.addr, k->addr, sizeof(d.addr));
	if (bpf_map_update_elem(&destinations, &d, &one, BPF_ANY))
		bump(CTR_UNAUDITED);
}

/*
 * A connect, or a datagram sent to an address, in COMMAND's cgroup: 1 lets it
 * through, 0 makes it fail with EPERM.
 */
static __always_inline int sock_addr_check(struct bpf_sock_addr *ctx, __u8 family, bool sendmsg)
{
	struct event e = {};
	struct match_key k = {};
	__u64 id = bpf_get_current_pid_tgid();
	/* A datagram sent to an address is a connect as far as --deny connect goes. */
	__u32 calls = 1u << EV_CONNECT | (sendmsg ? 1u << EV_SEND : 0);
	int rule;

	e.kind = sendmsg ? EV_SEND : EV_CONNECT;
	e.family = family;
	e.protocol = ctx->protocol;
	e.remote.port = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(e.remote.addr, &a, 4);
	} else {
		__u32 a[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

		__builtin_memcpy(e.remote.addr, a, 16);
	}
	/* The process's name, as everywhere: its group leader's. */
	BPF_CORE_READ_INTO(&e.comm, (struct task_struct *)bpf_get_current_task(), group_leader, comm);
	fill_key(&k, &e);
	if (audit)
		audited(&k, sendmsg);
	rule = denied_by(&k, calls);
	if (rule == -2)
		return 1;
	bump(CTR_DENIED);
	if (wanted(EV_DENY)) {
		e.kind = EV_DENY;
		e.value = rule;
		e.flags = sendmsg ? EF_SENDMSG : 0;
		e.pid = id >> 32;
		e.tid = (__u32)id;
		e.ts_ns = bpf_ktime_get_boot_ns();
		current_identity(&e.who);
		emit(ctx, &e);
	}
	return 0;
}

SEC("cgroup/connect4")
int cg_connect4(struct bpf_sock_addr *ctx)
{
	return sock_addr_check(ctx, AF_INET, false);
}

SEC("cgroup/connect6")
int cg_connect6(struct bpf_sock_addr *ctx)
{
	return sock_addr_check(ctx, AF_INET6, false);
}

SEC("cgroup/sendmsg4")
int cg_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_addr_check(ctx, AF_INET, true);
}

SEC("cgroup/sendmsg6")
int cg_sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock_addr_check(ctx, AF_INET6, true);
}
