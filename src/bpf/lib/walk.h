/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Tracepoint mode: what a process lets go at exec, exit or close_range is found in
 * its own descriptor table, walked over the descriptors it has open, so the cost
 * follows what the process holds, never the size of the socket table.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "compat.h"
#include "filters.h"
#include "maps.h"
#include "release.h"
#include "sock.h"

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
