/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Steps Fork, Exec, Exit: process events, and the descriptor walks that release sockets.
 * Part of sockwatch.bpf.c, which includes every header once, in order.
 */
#pragma once

/*
 * Tracepoint mode: what a process lets go at exec, exit or close_range is found in
 * its own descriptor table, walked over the descriptors it has open, so the cost
 * follows what the process holds, never the size of the socket table.
 */
enum walk_for {
	WALK_EXIT,  /* every descriptor closes */
	WALK_RANGE, /* close_range() closes those from `first` to `last` */
	WALK_EXEC,  /* close-on-exec ones close if the exec goes ahead */
};

struct fd_walk {
	struct proc p;
	bool traced;
	__u8 why; /* enum walk_for */
	__u64 id;
	__u32 first;
	__u32 last;
	__u32 word;
	__u64 bits; /* the open descriptors of `word` */
	/* The kernel's arrays: struct file *fd[], and the open and close-on-exec bitmaps. */
	__u64 fds;
	__u64 open_fds;
	__u64 cloexec;
	struct exec_closes found;
};

/*
 * A walk's state lives in a map value (`walks`), not on the stack: the verifier
 * follows each callback over and over until their states agree, and fields it
 * tracks on the stack keep them apart (over 100 MB of its memory, charged to
 * sockwatch's memory cgroup while it loads); a map value's fields are just numbers.
 * The callbacks reach it through `struct walk_ref` on the stack (bpf_loop takes a
 * stack pointer).
 */
struct walk_ref {
	struct fd_walk *w;
};

/* One walk per program that walks: preemptible tracepoints can interleave them on a CPU. */
enum walk_slot {
	WALK_SLOT_EXIT,
	WALK_SLOT_RANGE,
	WALK_SLOT_EXECVE,
	WALK_SLOT_EXECVEAT,
	WALK_SLOTS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WALK_SLOTS);
	__type(key, __u32);
	__type(value, struct fd_walk);
} walks SEC(".maps");

/* This CPU's walk of `slot`, set to walk for `why` over every descriptor. */
static __always_inline struct fd_walk *walk_of(enum walk_slot slot, enum walk_for why)
{
	__u32 key = slot;
	struct fd_walk *w = bpf_map_lookup_elem(&walks, &key);

	if (!w)
		return NULL;
	w->why = why;
	w->traced = false;
	w->first = 0;
	w->last = ~0u;
	w->found.n = 0;
	return w;
}

/*
 * A descriptor that closes. A tracked socket is let go when the walk has counted
 * every reference to its file; one held elsewhere too (a forked child, a dup passed
 * to another process) lives on and goes to its next user.
 */
static __always_inline void walk_fd(struct fd_walk *w, __u32 fd, enum walk_for why)
{
	struct file *file = NULL;
	struct sock_state *st;
	struct sock_kind kind;
	struct sock *sk;
	__u64 key;
	__u32 n;

	bpf_probe_read_kernel(&file, sizeof(file), (struct file **)w->fds + fd);
	sk = sock_from_file(file);
	if (!traced_sock(sk, &kind))
		return;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st)
		return;
	if (st->walk != w->id) {
		st->walk = w->id;
		st->walk_seen = 0;
	}
	st->walk_seen++;
	if (st->walk_seen < file_refs(file)) {
		if (why != WALK_EXEC && st->pid == w->p.pid)
			st->unowned = 1;
		return;
	}
	if (why == WALK_EXEC) {
		n = w->found.n;
		if (n < MAX_EXEC_CLOSES) {
			w->found.sk[n & (MAX_EXEC_CLOSES - 1)] = key;
			w->found.n = n + 1;
		} else {
			bump(CTR_MISSED);
		}
		return;
	}
	/* Charged to the process letting go when it is traced or the owner, else to the owner. */
	release(NULL, sk, st, w->traced || st->pid == w->p.pid ? &w->p : NULL);
}

/*
 * Descriptor `i` of the current word, one call each: the verifier sees the same
 * state every time (only `i` changes), so it follows the callback once, whatever
 * the kernel. Exec's walk only notes sockets: it gets its own callbacks, which the
 * verifier then need not follow into a release.
 */
static __always_inline long walk_bit(struct fd_walk *w, __u32 i, enum walk_for why)
{
	__u32 fd = w->word * 64 + i;

	if (!(w->bits >> i))
		return 1;
	if ((w->bits >> i) & 1 && fd >= w->first && fd <= w->last)
		walk_fd(w, fd, why);
	return 0;
}

static long walk_bit_exec(__u32 i, void *ctx)
{
	return walk_bit(((struct walk_ref *)ctx)->w, i, WALK_EXEC);
}

static long walk_bit_close(__u32 i, void *ctx)
{
	return walk_bit(((struct walk_ref *)ctx)->w, i, WALK_EXIT);
}

static __always_inline long walk_word(struct walk_ref *ref, __u32 i, enum walk_for why)
{
	struct fd_walk *w = ref->w;
	unsigned long bits = 0, cloexec = 0;

	w->word = (w->first >> 6) + i;
	bpf_probe_read_kernel(&bits, sizeof(bits), (unsigned long *)w->open_fds + w->word);
	if (why == WALK_EXEC) {
		bpf_probe_read_kernel(&cloexec, sizeof(cloexec), (unsigned long *)w->cloexec + w->word);
		bits &= cloexec;
	}
	w->bits = bits;
	if (bits)
		bpf_loop(64, why == WALK_EXEC ? walk_bit_exec : walk_bit_close, ref, 0);
	return 0;
}

static long walk_word_exec(__u32 i, void *ctx)
{
	return walk_word(ctx, i, WALK_EXEC);
}

static long walk_word_close(__u32 i, void *ctx)
{
	return walk_word(ctx, i, WALK_EXIT);
}

static __always_inline void walk_fds(struct fd_walk *w)
{
	struct walk_ref ref = { .w = w };
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	__u32 max_fds = BPF_CORE_READ(fdt, max_fds);

	if (!max_fds)
		return;
	if (w->last >= max_fds)
		w->last = max_fds - 1;
	if (w->first > w->last)
		return;
	w->fds = (__u64)BPF_CORE_READ(fdt, fd);
	w->open_fds = (__u64)BPF_CORE_READ(fdt, open_fds);
	w->cloexec = (__u64)BPF_CORE_READ(fdt, close_on_exec);
	w->id = bpf_ktime_get_ns();
	bpf_loop((w->last >> 6) - (w->first >> 6) + 1,
		 w->why == WALK_EXEC ? walk_word_exec : walk_word_close, &ref, 0);
}

/* Whether the current process may hold tracked sockets (it or a parent tracked one). */
static __always_inline bool holds_sockets(const struct proc *p)
{
	return tracking() && bpf_map_lookup_elem(&owners, &p->pid);
}

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
