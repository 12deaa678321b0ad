// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockwatch: the socket lifecycle of named processes.
 *
 * Every program first asks whether the current process is traced (pid, then
 * the group leader's name) and returns at once if not. Per-socket state lives
 * in `socks`, keyed by the struct sock pointer, because TCP state changes run
 * in softirq context where the current task is not the socket's owner.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sockwatch.h"

#define AF_UNSPEC 0
#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 0x2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINTR 4
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115
#define ERESTARTSYS 512 /* kernel-internal restart codes are 512..516 */
/* Table sizes user space may change before load (--max-sockets). */
#define MAX_SOCKS 65536
#define MAX_SKIPPED 16384

#if defined(__TARGET_ARCH_x86)
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#elif defined(__TARGET_ARCH_arm64)
#define NR_SENDTO 206
#define NR_RECVFROM 207
#define NR_SENDMSG 211
#define NR_RECVMSG 212
#define SYSCALL_NR(regs) BPF_CORE_READ((struct user_pt_regs *)(regs), syscallno)
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Filters, set by user space before load. Zero counts mean "no filter of this kind". */
const volatile __u64 names[MAX_NAMES][2] = {};
const volatile __u32 n_names = 0;
const volatile __u32 pids[MAX_PIDS] = {};
const volatile __u32 n_pids = 0;
/* Bit (1 << enum event_kind) set for each event kind to report. */
const volatile __u32 selected = 0;
/* CLOCK_BOOTTIME when tracing began: sockets open before then count from it. */
const volatile __u64 start_ns = 0;

/* Emit the ABI types' BTF so the skeleton generates them for user space. */
struct event _event = {};
struct exec_event _exec_event = {};
enum event_kind _event_kind = EV_EXEC;
enum event_flag _event_flag = EF_PARTIAL;
enum counter _counter = CTR_LOST;

/* A socket's two ends as last reported, for CLOSE after the kernel reset them. */
struct ends {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 family;
};

struct sock_state {
	__u64 born_ns;
	__u64 connect_ns; /* when the pending connect began; 0 when none is pending */
	__u64 sent;
	__u64 received;
	/* The struct socket it had when tracked: another (or none) means it was released unseen. */
	__u64 socket;
	__u32 pid;
	__u32 tid;
	/* The descriptor it was born on, which forked children share; -1 when unknown. */
	__s32 fd;
	char comm[TASK_COMM_LEN];
	struct ends ends;
	__u8 partial;
	__u8 connected; /* a connect was tried, even one that failed before any handshake */
};

/* A connect() in progress in one thread. */
struct connect_call {
	__u64 start_ns;
	__u8 syn_sent; /* the call put a TCP socket into SYN_SENT */
};

/* A datagram received on an unconnected UDP socket: the sender is known only at syscall exit. */
struct pending_recv {
	struct event e;
	__u64 uaddr; /* user pointer the kernel writes the sender to */
};

/*
 * Entries in pending_recvs, never fewer: every recvfrom/recvmsg exit in the system
 * checks this before looking its thread up. Raised before an insert, lowered after
 * a delete.
 */
__u64 pending_count = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct sock_state);
} socks SEC(".maps");

/* Processes that own entries in `socks`, so exec and exit find them under any name. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SOCKS);
	__type(key, __u32);
	__type(value, __u8);
} owners SEC(".maps");

/*
 * Sockets a full table turned away, so that each is counted once and none is later
 * taken for one that was open before tracing began. Losing an old entry only risks that.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SKIPPED);
	__type(key, __u64);
	__type(value, __u8);
} skipped SEC(".maps");

/* Set once anything was skipped: until then nobody pays for looking. */
__u32 any_skipped = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct connect_call);
} connects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_recv);
} pending_recvs SEC(".maps");

/* The traced process a program runs in. */
struct proc {
	__u32 pid;
	__u32 tid;
	union {
		char comm[TASK_COMM_LEN];
		__u64 comm_words[2];
	};
};

struct file___pre613 {
	atomic_long_t f_count;
};

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

static __always_inline bool proc_matches(const struct proc *p)
{
	for (int i = 0; i < MAX_PIDS; i++) {
		if (i >= n_pids)
			break;
		if (pids[i] == p->pid)
			return true;
	}
	for (int i = 0; i < MAX_NAMES; i++) {
		if (i >= n_names)
			break;
		if (names[i][0] == p->comm_words[0] && names[i][1] == p->comm_words[1])
			return true;
	}
	return false;
}

/* Fills `p` with the current process and says whether it is traced. */
static __always_inline bool current_proc(struct proc *p)
{
	/* A BTF task pointer allows plain loads: cheaper than probe reads in every hook. */
	struct task_struct *leader = bpf_get_current_task_btf()->group_leader;
	__u64 id = bpf_get_current_pid_tgid();

	p->pid = id >> 32;
	p->tid = (__u32)id;
	__builtin_memcpy(p->comm, leader->comm, TASK_COMM_LEN);
	return proc_matches(p);
}

/* A socket's address family and protocol, read once and passed on. */
struct sock_kind {
	__u16 family;
	__u16 protocol;
};

static __always_inline void read_kind(const struct sock *sk, struct sock_kind *k)
{
	k->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	k->protocol = BPF_CORE_READ(sk, sk_protocol);
}

static __always_inline bool inet_sock(const struct sock *sk, struct sock_kind *k)
{
	read_kind(sk, k);
	return (k->family == AF_INET || k->family == AF_INET6) &&
	       (k->protocol == IPPROTO_TCP || k->protocol == IPPROTO_UDP);
}

/* The socket's ends, for a socket whose kind the caller has already read. */
static __always_inline void fill_ends(struct event *e, const struct sock *sk,
				      const struct sock_kind *k)
{
	const struct inet_sock *inet = (const struct inet_sock *)sk;

	e->family = k->family;
	e->protocol = k->protocol;
	/* inet_sport, not skc_num: the latter is already 0 on transitions to CLOSE. */
	e->lport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	e->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET6) {
		BPF_CORE_READ_INTO(&e->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		BPF_CORE_READ_INTO((__u32 *)e->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)e->raddr, sk, __sk_common.skc_daddr);
	}
}

static __always_inline void fill_sock(struct event *e, const struct sock *sk)
{
	struct sock_kind k;

	read_kind(sk, &k);
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

static __always_inline struct event *reserve(__u8 kind, __u32 pid, __u32 tid, const char *comm)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		bump(CTR_LOST);
		return NULL;
	}
	fill_proc(e, kind, pid, tid, comm);
	return e;
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

static __always_inline struct pt_regs *user_regs(void)
{
	return (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
}

/*
 * Starts tracking a socket the traced process just created, accepted or connected
 * (`born`), or one it uses that was open before tracing began.
 */
static __always_inline struct sock_state *track(const struct sock *sk, const struct proc *p,
						__u64 connect_ns, bool born, long fd)
{
	__u64 key = (__u64)sk;
	__u8 one = 1;
	struct sock_state st = {
		.born_ns = bpf_ktime_get_boot_ns(),
		.connect_ns = connect_ns,
		.socket = (__u64)BPF_CORE_READ(sk, sk_socket),
		.pid = p->pid,
		.tid = p->tid,
		.fd = fd,
		.connected = connect_ns != 0,
	};

	__builtin_memcpy(st.comm, p->comm, TASK_COMM_LEN);
	if (bpf_map_update_elem(&socks, &key, &st, BPF_ANY)) {
		/* A new socket replaces any old one at this address; an old one counts once. */
		if (!bpf_map_update_elem(&skipped, &key, &one, born ? BPF_ANY : BPF_NOEXIST)) {
			any_skipped = 1;
			bump(CTR_UNTRACKED);
		}
		return NULL;
	}
	if (any_skipped)
		bpf_map_delete_elem(&skipped, &key);
	bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
	return bpf_map_lookup_elem(&socks, &key);
}

/*
 * The state of a socket already open when tracing began is adopted on first use;
 * a socket whose owner exited while another process held it goes to its next user.
 */
static __always_inline struct sock_state *adopt(const struct sock *sk, const struct proc *p)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);

	if (st) {
		if (!st->pid) {
			__u8 one = 1;

			st->pid = p->pid;
			st->tid = p->tid;
			__builtin_memcpy(st->comm, p->comm, TASK_COMM_LEN);
			bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
		}
		return st;
	}
	/* Born while the table was full: its totals would be wrong. */
	if (any_skipped && bpf_map_lookup_elem(&skipped, &key))
		return NULL;
	st = track(sk, p, 0, false, -1);
	if (st) {
		st->partial = 1;
		st->born_ns = start_ns;
	}
	return st;
}

/* Reads a user sockaddr into the event's remote end. */
static __always_inline bool read_user_peer(struct event *e, __u64 uaddr)
{
	struct sockaddr_in6 sa = {};

	/* An IPv4 caller's buffer may be just a sockaddr_in: read more only for IPv6. */
	if (!uaddr || bpf_probe_read_user(&sa, sizeof(struct sockaddr_in), (void *)uaddr))
		return false;
	if (sa.sin6_family == AF_INET6 && bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
		return false;
	if (sa.sin6_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&sa;

		e->rport = bpf_ntohs(sin->sin_port);
		__builtin_memset(e->raddr, 0, sizeof(e->raddr));
		__builtin_memcpy(e->raddr, &sin->sin_addr, 4);
		/* A v6 socket may name a v4 peer; the peer's family is what the user sees. */
		e->family = AF_INET;
		return true;
	}
	if (sa.sin6_family == AF_INET6) {
		e->rport = bpf_ntohs(sa.sin6_port);
		__builtin_memcpy(e->raddr, &sa.sin6_addr, 16);
		e->family = AF_INET6;
		return true;
	}
	return false;
}

static __always_inline void save_ends(struct sock_state *st, const struct event *e)
{
	__builtin_memcpy(st->ends.laddr, e->laddr, 16);
	__builtin_memcpy(st->ends.raddr, e->raddr, 16);
	st->ends.lport = e->lport;
	st->ends.rport = e->rport;
	st->ends.family = e->family;
}

/* A failed blocking connect disconnects the socket, zeroing its ports: report the ends it had. */
static __always_inline void fill_closed_sock(struct event *e, const struct sock *sk,
					     const struct sock_state *st)
{
	fill_sock(e, sk);
	if (e->rport == 0 && st->ends.rport != 0) {
		__builtin_memcpy(e->laddr, st->ends.laddr, 16);
		__builtin_memcpy(e->raddr, st->ends.raddr, 16);
		e->lport = st->ends.lport;
		e->rport = st->ends.rport;
		e->family = st->ends.family;
	}
}

/* Reports a connect outcome; `uaddr`, when set, is the connect() argument to name the peer. */
static __always_inline void emit_connect(const struct sock *sk, struct sock_state *st,
					 __s64 result, __u8 flags, __u64 duration_ns, __u64 uaddr)
{
	struct event *e = reserve(EV_CONNECT, st->pid, st->tid, st->comm);

	if (!e)
		return;
	fill_sock(e, sk);
	if (uaddr)
		read_user_peer(e, uaddr);
	save_ends(st, e);
	e->value = result;
	e->flags = flags;
	e->duration_ns = duration_ns;
	bpf_ringbuf_submit(e, 0);
}

/* The process let go of the socket: report a still-pending connect, then the totals. */
static __always_inline void release(const struct sock *sk, struct sock_state *st, __u32 pid,
				    __u32 tid, const char *comm)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_boot_ns();
	struct event e;

	if (st->connect_ns && wanted(EV_CONNECT))
		emit_connect(sk, st, 0, EF_ABORTED, now - st->connect_ns, 0);
	if (wanted(EV_CLOSE)) {
		fill_proc(&e, EV_CLOSE, pid, tid, comm);
		fill_closed_sock(&e, sk, st);
		/* Never bound, connected or listened on, and no bytes: nothing to report. */
		if (e.lport || e.rport || st->sent || st->received || st->connected) {
			e.sent = st->sent;
			e.received = st->received;
			e.duration_ns = now - st->born_ns;
			e.flags = st->partial ? EF_PARTIAL : 0;
			if (bpf_ringbuf_output(&events, &e, sizeof(e), 0))
				bump(CTR_LOST);
		}
	}
	bpf_map_delete_elem(&socks, &key);
}

/*
 * The address argument of the syscall we are in, for sendto/sendmsg/recvfrom/recvmsg;
 * 0 for every other path (write, read, recvmmsg, io_uring).
 */
static __always_inline __u64 syscall_peer_ptr(bool recv)
{
#ifdef NR_SENDTO
	struct pt_regs *regs = user_regs();
	long nr = SYSCALL_NR(regs);
	__u64 uaddr = 0;

	if (nr == (recv ? NR_RECVFROM : NR_SENDTO))
		return PT_REGS_PARM5_CORE_SYSCALL(regs);
	if (nr == (recv ? NR_RECVMSG : NR_SENDMSG)) {
		struct user_msghdr *msg = (void *)PT_REGS_PARM2_CORE_SYSCALL(regs);

		bpf_probe_read_user(&uaddr, sizeof(uaddr), &msg->msg_name);
	}
	return uaddr;
#else
	return 0;
#endif
}

static __always_inline int on_transfer(struct sock *sk, int ret, int msg_flags, __u8 kind)
{
	struct sock_state *st;
	struct pending_recv pending;
	struct event *e;
	struct proc p;
	__u64 uaddr = 0;
	struct sock_kind sock;
	bool unconnected;

	if (ret < 0 || !current_proc(&p) || !inet_sock(sk, &sock))
		return 0;
	if (kind == EV_RECV && (msg_flags & MSG_PEEK))
		return 0;
	if (wanted(EV_CLOSE)) {
		st = adopt(sk, &p);
		if (st) {
			if (kind == EV_SEND)
				__sync_fetch_and_add(&st->sent, ret);
			else
				__sync_fetch_and_add(&st->received, ret);
		}
	}
	if (!wanted(kind))
		return 0;

	unconnected = sock.protocol == IPPROTO_UDP &&
		      BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_ESTABLISHED;
	if (unconnected)
		uaddr = syscall_peer_ptr(kind == EV_RECV);
	if (unconnected && uaddr && kind == EV_RECV) {
		/* The kernel copies the sender out only after this point; finish at syscall exit. */
		fill_proc(&pending.e, kind, p.pid, p.tid, p.comm);
		fill_ends(&pending.e, sk, &sock);
		pending.e.value = ret;
		pending.uaddr = uaddr;
		__sync_fetch_and_add(&pending_count, 1);
		if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_NOEXIST)) {
			/* This thread's entry is already counted (its syscall never exited). */
			__sync_fetch_and_add(&pending_count, -1);
			if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_ANY))
				bump(CTR_LOST);
		}
		return 0;
	}

	e = reserve(kind, p.pid, p.tid, p.comm);
	if (!e)
		return 0;
	fill_ends(e, sk, &sock);
	e->value = ret;
	if (unconnected && !read_user_peer(e, uaddr))
		e->flags |= EF_PEER_UNKNOWN;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(send_length, struct sock *sk, int ret, int flags)
{
	return on_transfer(sk, ret, flags, EV_SEND);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(recv_length, struct sock *sk, int ret, int flags)
{
	return on_transfer(sk, ret, flags, EV_RECV);
}

static __always_inline int finish_recv(void)
{
	struct pending_recv *pending;
	struct event *e;
	__u32 tid;

	if (!pending_count)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	pending = bpf_map_lookup_elem(&pending_recvs, &tid);
	if (!pending)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		__builtin_memcpy(e, &pending->e, sizeof(*e));
		if (!read_user_peer(e, pending->uaddr))
			e->flags |= EF_PEER_UNKNOWN;
		bpf_ringbuf_submit(e, 0);
	} else {
		bump(CTR_LOST);
	}
	if (!bpf_map_delete_elem(&pending_recvs, &tid))
		__sync_fetch_and_add(&pending_count, -1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv();
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv();
}

struct owner_ctx {
	struct proc p;
	bool exiting;
};

/*
 * A process's sockets at its exec or exit. Those released behind our hooks (close on
 * exec, dup2, close_range) are reported now. At exit, the rest close with it, except
 * those another process still holds (a daemon's child, a server's forked handler),
 * which wait for their next user or the exit of the last process holding them. A
 * forked child holds its parent's sockets under the same descriptor numbers.
 */
static long release_owned(struct bpf_map *map, __u64 *key, struct sock_state *st,
			  struct owner_ctx *ctx)
{
	const struct sock *sk = (const struct sock *)*key;
	struct socket *socket;
	struct file *file;
	bool mine = st->pid == ctx->p.pid;
	long refs = 0;

	if (!mine && !ctx->exiting)
		return 0;
	socket = BPF_CORE_READ(sk, sk_socket);
	file = BPF_CORE_READ(socket, file);
	if (!mine && (!file || st->fd < 0 || file_from_fd(st->fd) != file))
		return 0;
	if (socket && (__u64)socket != st->socket) {
		/* The memory now holds another socket: this one's release was missed. */
		bpf_map_delete_elem(&socks, key);
		bump(CTR_UNTRACKED);
		return 0;
	}
	if (file)
		refs = file_refs(file);
	/*
	 * With no references left the release is under way: a last fput defers it to
	 * the return to user space, after the exec tracepoint.
	 */
	if (socket && refs >= 1) {
		if (!ctx->exiting)
			return 0;
		if (refs > 1) {
			if (mine)
				st->pid = 0;
			return 0;
		}
	}
	release(sk, st, ctx->p.pid, ctx->p.tid, ctx->p.comm);
	return 0;
}

/* Reports the sockets of the current process that its exec or exit lets go. */
static __always_inline void release_process(struct owner_ctx *ctx)
{
	if (!tracking() || !bpf_map_lookup_elem(&owners, &ctx->p.pid))
		return;
	bpf_for_each_map_elem(&socks, release_owned, ctx, 0);
	if (ctx->exiting)
		bpf_map_delete_elem(&owners, &ctx->p.pid);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct owner_ctx owner = { .exiting = false };
	struct exec_event *e;
	bool traced;

	/* Close-on-exec descriptors are closed by now: report those sockets first. */
	traced = current_proc(&owner.p);
	release_process(&owner);
	if (!traced || !wanted(EV_EXEC))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		bump(CTR_LOST);
		return 0;
	}
	fill_proc(&e->base, EV_EXEC, owner.p.pid, owner.p.tid, owner.p.comm);
	e->base.value = BPF_CORE_READ(task, real_parent, tgid);
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(process_exit, struct task_struct *task)
{
	struct owner_ctx owner = { .exiting = true };
	struct event *e;
	bool traced;

	/* Only the last thread out ends the process. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	traced = current_proc(&owner.p);
	release_process(&owner);
	if (!traced || !wanted(EV_EXIT))
		return 0;
	e = reserve(EV_EXIT, owner.p.pid, owner.p.tid, owner.p.comm);
	if (!e)
		return 0;
	e->value = BPF_CORE_READ(task, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	struct proc c = {};
	struct event *e;
	__u8 one = 1;

	/* A new thread shares its process's descriptors and name: only new processes count. */
	c.pid = BPF_CORE_READ(child, tgid);
	c.tid = BPF_CORE_READ(child, pid);
	if (c.pid != c.tid)
		return 0;
	/* The child holds the parent's sockets: its exit may be the last release of some. */
	if (tracking() && bpf_map_lookup_elem(&owners, &ppid))
		bpf_map_update_elem(&owners, &c.pid, &one, BPF_ANY);
	if (!wanted(EV_FORK))
		return 0;
	BPF_CORE_READ_INTO(&c.comm, child, comm);
	if (!proc_matches(&c))
		return 0;
	e = reserve(EV_FORK, c.pid, c.tid, c.comm);
	if (!e)
		return 0;
	e->value = ppid;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk, now;
	struct connect_call *call;
	struct sock_state *st;
	struct proc p;
	__s64 result;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* Runs in the connecting process. */
		if (!current_proc(&p))
			return 0;
		now = bpf_ktime_get_boot_ns();
		call = bpf_map_lookup_elem(&connects, &p.tid);
		if (call) {
			call->syn_sent = 1;
			now = call->start_ns;
		}
		st = bpf_map_lookup_elem(&socks, &key);
		if (!st) {
			track(sk, &p, now, true, -1);
			return 0;
		}
		st->connect_ns = now;
		st->connected = 1;
		st->pid = p.pid;
		st->tid = p.tid;
		__builtin_memcpy(st->comm, p.comm, TASK_COMM_LEN);
		return 0;
	}
	if (oldstate != TCP_SYN_SENT)
		return 0;
	/* The outcome: often in softirq, so the owner comes from the socket's state. */
	st = bpf_map_lookup_elem(&socks, &key);
	if (!st || !st->connect_ns)
		return 0;
	now = bpf_ktime_get_boot_ns();
	if (newstate == TCP_ESTABLISHED) {
		result = 0;
	} else {
		/* tcp_reset() and tcp_write_err() set sk_err before moving to CLOSE. */
		result = -(__s64)BPF_CORE_READ(sk, sk_err);
	}
	if (wanted(EV_CONNECT))
		emit_connect(sk, st, result,
			     newstate != TCP_ESTABLISHED && !result ? EF_ABORTED : 0,
			     now - st->connect_ns, 0);
	st->connect_ns = 0;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct connect_call call = { .start_ns = bpf_ktime_get_boot_ns() };
	struct proc p;

	if (current_proc(&p))
		bpf_map_update_elem(&connects, &p.tid, &call, BPF_ANY);
	return 0;
}

/* connect() returns without a TCP outcome when it is in progress or was interrupted. */
static __always_inline bool tcp_connect_pending(long ret)
{
	return ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN || ret == -EINTR ||
	       (ret <= -ERESTARTSYS && ret >= -ERESTARTSYS - 4);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct connect_call *call = bpf_map_lookup_elem(&connects, &tid);
	struct pt_regs *regs = user_regs();
	struct sock_state owner = {}, *st;
	__u64 start_ns, now, uaddr, key;
	__u16 family = 0;
	struct sock *sk;
	struct proc p;
	struct sock_kind kind;
	__u8 syn_sent;
	long ret = ctx->ret;

	if (!call)
		return 0;
	start_ns = call->start_ns;
	syn_sent = call->syn_sent;
	bpf_map_delete_elem(&connects, &tid);
	if (!current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs)));
	if (!sk || !inet_sock(sk, &kind))
		return 0;
	/* connect() with AF_UNSPEC dissolves a UDP association: no connect at all. */
	uaddr = PT_REGS_PARM2_CORE_SYSCALL(regs);
	bpf_probe_read_user(&family, sizeof(family), (void *)uaddr);
	if (family == AF_UNSPEC)
		return 0;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&socks, &key);
	if (st)
		st->connected = 1;
	/* A TCP handshake reports through inet_sock_set_state; here only what never started one. */
	if (kind.protocol == IPPROTO_TCP && (syn_sent || ret == 0 || tcp_connect_pending(ret)))
		return 0;
	now = bpf_ktime_get_boot_ns();
	owner.pid = p.pid;
	owner.tid = p.tid;
	__builtin_memcpy(owner.comm, p.comm, TASK_COMM_LEN);
	/*
	 * A connected socket names its ends as the kernel resolved them (a wildcard peer
	 * is loopback); a failed one may have none yet: then the peer as the process named it.
	 */
	emit_connect(sk, &owner, ret, 0, now - start_ns, ret ? uaddr : 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int exit_listen(struct trace_event_raw_sys_exit *ctx)
{
	struct event *e;
	struct sock *sk;
	struct proc p;
	struct sock_kind kind;

	if (ctx->ret != 0 || !current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs())));
	if (!sk || !inet_sock(sk, &kind))
		return 0;
	e = reserve(EV_LISTEN, p.pid, p.tid, p.comm);
	if (!e)
		return 0;
	fill_ends(e, sk, &kind);
	/* The backlog the kernel uses: the requested one capped at net.core.somaxconn. */
	e->value = BPF_CORE_READ(sk, sk_max_ack_backlog);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* A UDP socket bound to a port it named is a UDP server starting: its LISTEN. */
SEC("tracepoint/syscalls/sys_exit_bind")
int exit_bind(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;
	struct sockaddr_in sa = {};
	struct event *e;
	struct sock *sk;
	struct proc p;
	struct sock_kind kind;

	if (ctx->ret != 0 || !current_proc(&p))
		return 0;
	regs = user_regs();
	sk = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs)));
	if (!sk || !inet_sock(sk, &kind) || kind.protocol != IPPROTO_UDP)
		return 0;
	/* Port 0 asks for an ephemeral port, as clients do: not a server. */
	if (bpf_probe_read_user(&sa, sizeof(sa), (void *)PT_REGS_PARM2_CORE_SYSCALL(regs)) ||
	    !sa.sin_port)
		return 0;
	e = reserve(EV_LISTEN, p.pid, p.tid, p.comm);
	if (!e)
		return 0;
	fill_ends(e, sk, &kind);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

static __always_inline int on_accept(long fd)
{
	struct sock *sk, *listener;
	struct event *e;
	struct proc p;
	struct sock_kind kind;

	if (fd < 0 || !current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(fd));
	if (!sk || !inet_sock(sk, &kind))
		return 0;
	if (wanted(EV_CLOSE)) {
		track(sk, &p, 0, true, fd);
		/* A listener opened before tracing began is adopted at its first accept. */
		listener = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs())));
		if (listener)
			adopt(listener, &p);
	}
	if (!wanted(EV_ACCEPT))
		return 0;
	e = reserve(EV_ACCEPT, p.pid, p.tid, p.comm);
	if (!e)
		return 0;
	fill_ends(e, sk, &kind);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_socket")
int exit_socket(struct trace_event_raw_sys_exit *ctx)
{
	struct sock *sk;
	struct proc p;
	struct sock_kind kind;

	if (ctx->ret < 0 || !current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(ctx->ret));
	if (sk && inet_sock(sk, &kind))
		track(sk, &p, 0, true, ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct sock_state *st;
	struct file *file;
	struct sock *sk;
	struct proc p;
	struct sock_kind kind;
	__u64 key;

	if (!current_proc(&p))
		return 0;
	file = file_from_fd(ctx->args[0]);
	sk = sock_from_file(file);
	if (!sk)
		return 0;
	if (!inet_sock(sk, &kind))
		return 0;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&socks, &key);
	/*
	 * Another descriptor (dup, fork) still holds the socket: this close releases
	 * nothing, and the process that closed it need not be the one that closes it last.
	 */
	if (file_refs(file) > 1) {
		if (st && st->pid == p.pid)
			st->pid = 0;
		return 0;
	}
	if (!st && wanted(EV_CLOSE))
		st = adopt(sk, &p);
	if (st)
		release(sk, st, p.pid, p.tid, p.comm);
	else if (any_skipped)
		bpf_map_delete_elem(&skipped, &key);
	return 0;
}
