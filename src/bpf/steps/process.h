/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Fork, Exec, Exit: process events.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "../lib/compat.h"
#include "../lib/emit.h"
#include "../lib/filters.h"
#include "../lib/knobs.h"
#include "../lib/maps.h"
#include "../lib/release.h"
#include "../lib/sock.h"
#include "../lib/target.h"
#include "../lib/walk.h"

/* Before an exec: the sockets its close-on-exec will let go, reported if the exec succeeds. */
static __always_inline int before_exec(enum walk_slot slot)
{
	struct fd_walk *w = walk_of(slot, WALK_EXEC);

	if (!w)
		return 0;
	w->traced = current_proc(&w->p);
	if (!holds_sockets(&w->p)) {
		/* An earlier failed exec's findings must not outlive it. */
		bpf_map_delete_elem(&exec_closes, &w->p.tid);
		return 0;
	}
	walk_fds(w);
	bpf_map_update_elem(&exec_closes, &w->p.tid, &w->found, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tp_execve(struct trace_event_raw_sys_enter *ctx)
{
	return before_exec(WALK_SLOT_EXECVE);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int tp_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return before_exec(WALK_SLOT_EXECVEAT);
}

/*
 * The exec went ahead: its close-on-exec descriptors are closed, and the sockets'
 * release waits for the return to user space. Charged to the process under its new name.
 */
static __always_inline void release_exec_closes(__u32 tid, const struct proc *p)
{
	struct exec_closes *c = bpf_map_lookup_elem(&exec_closes, &tid);
	struct sock_state *st;
	__u64 key;

	if (!c)
		return;
	for (int i = 0; i < MAX_EXEC_CLOSES; i++) {
		if (i >= c->n)
			break;
		key = c->sk[i];
		st = bpf_map_lookup_elem(&socks, &key);
		if (st)
			release(NULL, (const struct sock *)key, st, p);
	}
	bpf_map_delete_elem(&exec_closes, &tid);
}

static __always_inline int on_exec(void *ctx, struct task_struct *task, __u32 old_tid,
				   struct linux_binprm *bprm, bool walked)
{
	struct exec_event *e;
	const char *path;
	struct proc p;
	bool traced;
	__u32 zero = 0;
	char next = 0;

	traced = current_proc(&p);
	/* Close-on-exec sockets first: they were let go before the new image runs. */
	if (walked)
		release_exec_closes(old_tid, &p);
	if (!traced || !wanted(EV_EXEC))
		return 0;
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	fill_proc(&e->base, EV_EXEC, p.pid, p.tid, p.comm);
	e->base.value = BPF_CORE_READ(task, real_parent, tgid);
	path = BPF_CORE_READ(bprm, filename);
	/* A full buffer (the length counts the NUL) is cut if the path has a byte more. */
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), path) == PATH_LEN &&
	    !bpf_probe_read_kernel(&next, 1, path + PATH_LEN - 1) && next)
		e->base.flags = EF_CUT;
	emit_built(ctx, e, SLOT_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_exec_fds, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(ctx, task, old_pid, bprm, true);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tp_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	return on_exec(ctx, task, old_pid, bprm, false);
}

/* Whether this is the first report of the process's exit. */
static __always_inline bool first_exit(struct task_struct *task, __u32 pid)
{
	__u64 start = BPF_CORE_READ(task, group_leader, start_time);
	__u64 *seen;

	if (!bpf_map_update_elem(&exited, &pid, &start, BPF_NOEXIST))
		return true;
	seen = bpf_map_lookup_elem(&exited, &pid);
	if (seen && *seen == start)
		return false;
	bpf_map_update_elem(&exited, &pid, &start, BPF_ANY);
	return true;
}

/*
 * The exit tracepoint runs before the process's descriptors are closed: sockets it
 * alone holds are reported here, before its EXIT, as the release hooks would.
 */
static __always_inline int on_exit(void *ctx, struct task_struct *task, bool walk)
{
	struct fd_walk *w;
	bool walks, reports;
	struct exec_event *x;
	__u32 slot;

	/* Only the last thread out ends the process. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	w = walk_of(WALK_SLOT_EXIT, WALK_EXIT);
	if (!w)
		return 0;
	w->traced = current_proc(&w->p);
	walks = walk && holds_sockets(&w->p);
	reports = w->traced && wanted(EV_EXIT);
	/*
	 * Two threads exiting at once can both find the count at 0: only the first
	 * walks, or their counts of each socket's references would mix (a CLOSE twice,
	 * or none).
	 */
	if ((walks || reports) && !first_exit(task, w->p.pid))
		walks = reports = false;
	if (walks) {
		walk_fds(w);
		bpf_map_delete_elem(&owners, &w->p.pid);
	}
	if (reports && (x = take_slot(&slot))) {
		fill_proc(&x->base, EV_EXIT, w->p.pid, w->p.tid, w->p.comm);
		x->base.value = BPF_CORE_READ(task, exit_code);
		emit_built(ctx, x, slot);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_exit_fds, struct task_struct *task)
{
	return on_exit(ctx, task, true);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tp_exit, struct task_struct *task)
{
	return on_exit(ctx, task, false);
}

/*
 * A process leaves COMMAND's tree when it is reaped, not at its exit tracepoint:
 * the fentry and kprobe modes' releases of what it held come after that, in the
 * exiting process, and are its own. Its pid can be reused only after this.
 */
SEC("tp_btf/sched_process_free")
int BPF_PROG(tp_free, struct task_struct *task)
{
	__u32 pid = task->tgid;

	if (use_followed && task->pid == task->tgid)
		bpf_map_delete_elem(&followed, &pid);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tp_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	struct proc c = {}, p;
	struct event e;
	__u8 one = 1;

	/* A new thread shares its process's descriptors and name: only new processes count. */
	c.pid = BPF_CORE_READ(child, tgid);
	c.tid = BPF_CORE_READ(child, pid);
	if (c.pid != c.tid)
		return 0;
	/*
	 * Runs in the parent. COMMAND's tree is followed (and marked as such, so that
	 * user space can stop it); with --follow, every traced process's children.
	 */
	if (use_followed) {
		__u8 *tree = bpf_map_lookup_elem(&followed, &ppid);
		__u8 by = tree ? *tree : FOLLOWED_BY_FLAG;

		if ((tree || (follow_children && current_proc(&p))) &&
		    bpf_map_update_elem(&followed, &c.pid, &by, BPF_ANY))
			bump(CTR_UNFOLLOWED);
	}
	/* The child holds the parent's sockets: its exit may be the last release of some. */
	if (no_release_hook && tracking() && bpf_map_lookup_elem(&owners, &ppid))
		bpf_map_update_elem(&owners, &c.pid, &one, BPF_ANY);
	if (!wanted(EV_FORK))
		return 0;
	BPF_CORE_READ_INTO(&c.comm, child, comm);
	if (!proc_matches(&c))
		return 0;
	fill_proc(&e, EV_FORK, c.pid, c.tid, c.comm);
	/* The child's uid and cgroup are its parent's, which runs here. */
	current_identity(&e.who);
	e.who.ppid = ppid;
	e.value = ppid;
	emit(ctx, &e);
	return 0;
}
