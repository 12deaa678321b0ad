/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reading sockets, files and addresses into events.
 * Part of sockwatch.bpf.c, which includes every header once, in order.
 */
#pragma once

/* A socket's address family and protocol, read once and passed on. */
struct sock_kind {
	__u16 family;
	__u16 protocol;
};

/*
 * A field of a struct sock. tp_btf and fentry programs are handed BTF pointers,
 * which plain loads read (a few ns); kprobes and pointers read from memory need
 * probe reads (tens of ns). `trusted`: `sk` is such a pointer, a constant at each
 * inlined call site.
 */
#define SK_FIELD(trusted, sk, field) ((trusted) ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline void read_kind(const struct sock *sk, struct sock_kind *k, bool trusted)
{
	k->family = SK_FIELD(trusted, sk, __sk_common.skc_family);
	k->protocol = SK_FIELD(trusted, sk, sk_protocol);
}

static __always_inline bool inet_sock_of(const struct sock *sk, struct sock_kind *k, bool trusted)
{
	if (!sk)
		return false;
	read_kind(sk, k, trusted);
	return (k->family == AF_INET || k->family == AF_INET6) &&
	       (k->protocol == IPPROTO_TCP || k->protocol == IPPROTO_UDP);
}

static __always_inline bool inet_sock(const struct sock *sk, struct sock_kind *k)
{
	return inet_sock_of(sk, k, false);
}

/* The socket's ends, for a socket whose kind the caller has already read. */
static __always_inline void fill_ends(struct event *e, const struct sock *sk,
				      const struct sock_kind *k)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	e->family = k->family;
	e->protocol = k->protocol;
	/* inet_sport, not skc_num: the latter is already 0 on transitions to CLOSE. */
	e->local.port = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	e->remote.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->local.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->remote.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->local.addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->remote.addr, sk, __sk_common.skc_daddr);
	}
}

static __always_inline void fill_sock(struct event *e, const struct sock *sk)
{
	struct sock_kind k;

	read_kind(sk, &k, false);
	fill_ends(e, sk, &k);
}

static __always_inline void fill_proc(struct event *e, __u8 kind, __u32 pid, __u32 tid,
				      const char *comm)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->pid = pid;
	e->tid = tid;
	__builtin_memcpy(e->comm, comm, TASK_COMM_LEN);
}

static __always_inline struct file *file_from_fd(long fd)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	unsigned int max_fds = BPF_CORE_READ(fdt, max_fds);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || fd >= max_fds)
		return NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

static __always_inline struct sock *sock_from_file(struct file *file)
{
	struct socket *sock;

	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* References to an open file; file_ref_t (6.13+) stores the count minus one. */
static __always_inline long file_refs(struct file *file)
{
	if (bpf_core_field_exists(file->f_ref))
		return BPF_CORE_READ(file, f_ref.refcnt.counter) + 1;
	return BPF_CORE_READ((struct file___pre613 *)file, f_count.counter);
}

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
