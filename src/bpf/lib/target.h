/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which processes are traced.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "knobs.h"
#include "maps.h"

/* Named by pid or name, or descended from a traced process (COMMAND, --follow). */
static __always_inline bool targeted(const struct proc *p)
{
	if (p->pid == self_pid)
		return false;
	if (every_process)
		return true;
	for (int i = 0; i < MAX_PIDS; i++) {
		if (i >= n_pids)
			break;
		if (pids[i] == p->pid)
			return true;
	}
	for (int i = 0; i < MAX_NAMES; i++) {
		if (i >= n_names)
			break;
		if (names[i][0] == (p->comm_words[0] & names_mask[i][0]) &&
		    names[i][1] == (p->comm_words[1] & names_mask[i][1]))
			return true;
	}
	return use_followed && bpf_map_lookup_elem(&followed, &p->pid);
}

/* The cgroup test runs in the process itself: callers are never in softirq context. */
static __always_inline bool proc_matches(const struct proc *p)
{
	if (!targeted(p))
		return false;
	return !in_cgroup || bpf_current_task_under_cgroup(&cgroups, 0) == 1;
}

/* Fills `p` with the current process and says whether it is traced. */
static __always_inline bool current_proc(struct proc *p)
{
	__u64 id = bpf_get_current_pid_tgid();

	p->pid = id >> 32;
	p->tid = (__u32)id;
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		/* A BTF task pointer allows plain loads: cheaper than probe reads in every hook. */
		struct task_struct *leader = bpf_get_current_task_btf()->group_leader;

		__builtin_memcpy(p->comm, leader->comm, TASK_COMM_LEN);
	} else {
		/* Before 5.11. */
		struct task_struct *task = (void *)bpf_get_current_task();

		BPF_CORE_READ_INTO(&p->comm, task, group_leader, comm);
	}
	return proc_matches(p);
}
