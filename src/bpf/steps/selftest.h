/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The filters and the rules on one event user space writes, run with
 * BPF_PROG_TEST_RUN by the unit tests only (never attached).
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../sockwatch.h"
#include "../lib/emit.h"
#include "../lib/filters.h"
#include "../lib/knobs.h"
#include "../lib/match.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} selftest_in SEC(".maps");

/* Returns whether the event passes the filters (bit 0) and the rules it matched (bits 1-16). */
SEC("raw_tp")
int selftest(void *ctx)
{
	__u32 zero = 0, slot;
	struct exec_event *in = bpf_map_lookup_elem(&selftest_in, &zero);
	struct exec_event *x;
	int result;

	if (!in)
		return -1;
	result = event_passes(in);
	x = take_slot(&slot);
	if (!x)
		return -1;
	__builtin_memcpy(x, in, sizeof(*in));
	if (n_rules)
		result |= match_event(slot) << 1;
	put_slot();
	return result;
}
