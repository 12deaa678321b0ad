// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockwatch: the socket lifecycle of named processes.
 *
 * Programs that run in a process first ask whether it is traced (pid, then the
 * group leader's name) and return at once if not. Per-socket state lives in
 * `socks`, keyed by the struct sock pointer, because TCP state changes and
 * releases can run where the current task is not the socket's owner (softirq, a
 * kernel worker, an untraced process the socket was passed to): those programs
 * look the socket up instead.
 *
 * The file follows a socket's life: process events, birth, connect, listen and
 * bind, accept, send, receive, release. Each step has one handler that takes
 * resolved arguments, then thin wrappers per attach mode side by side: `tp_`
 * (tracepoints: syscall tracepoints and the 6.3 send/receive tracepoints),
 * `fx_` (fentry/fexit) and `kp_` (kprobe/kretprobe). User space loads one mode.
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
#define ENOENT 2
#define EINTR 4
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115
#define ERESTARTSYS 512 /* kernel-internal restart codes are 512..516 */
#define CLOSE_RANGE_CLOEXEC 4
#define SOCK_BINDPORT_LOCK 8
/* The socket table's default size; user space sets --max-sockets before load. */
#define MAX_SOCKS 65536
#define MAX_SKIPPED 16384
/* Sockets one exec can let go by close-on-exec and still report; more count as missed. */
#define MAX_EXEC_CLOSES 8

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
/*
 * Each name's bytes and its NUL: before 5.17 the kernel did not zero a comm's
 * bytes after the NUL, so a short name can be followed by an older name's tail.
 */
const volatile __u64 names_mask[MAX_NAMES][2] = {};
const volatile __u32 n_names = 0;
const volatile __u32 pids[MAX_PIDS] = {};
const volatile __u32 n_pids = 0;
/* Bit (1 << enum event_kind) set for each event kind to report. */
const volatile __u32 selected = 0;
/* CLOCK_BOOTTIME when tracing began: sockets open before then count from it. */
const volatile __u64 start_ns = 0;
/* Events go to the ring buffer; false: to the perf buffer (kernels before 5.8). */
const volatile bool use_ringbuf = true;
/*
 * Tracepoint mode has no hook on the socket release itself. It sees close(), dup2,
 * close_range, exec and exit in the syscalls and walks only the process's own
 * descriptors; TCP's state changes and destruction catch every other release.
 */
const volatile bool no_release_hook = false;
/* tcp_recvmsg and udp(v6)_recvmsg still take `nonblock` (before 5.19): for kprobes. */
const volatile bool recv_has_nonblock = false;
/*
 * Processes traced because they descend from one (`followed`): COMMAND's tree, and
 * with --follow the children of every traced process.
 */
const volatile bool use_followed = false;
const volatile bool follow_children = false;
/* --cgroup: only processes in `cgroups`[0] or below it; with no other target, all of them. */
const volatile bool in_cgroup = false;
const volatile bool every_process = false;
/* sockwatch itself: never traced, or writing its lines to a socket would feed itself. */
const volatile __u32 self_pid = 0;
/*
 * Socket filters (--port, --peer, --proto): a socket event is reported only when its
 * own ends pass every filter given. Process events always pass.
 */
const volatile __u16 ports[MAX_PORTS] = {};
const volatile __u32 n_ports = 0;
const volatile struct peer_prefix peers[MAX_PEERS] = {};
const volatile __u32 n_peers = 0;
const volatile __u8 only_protocol = 0;
/* --expect and --forbid, in that order: matched on every event the filters pass. */
const volatile struct rule rules[MAX_RULES] = {};
const volatile __u32 n_rules = 0;
/*
 * --deny and --allow, decided in COMMAND's cgroup: a connect or datagram send that
 * matches a --deny, or none of the --allow when there are some, fails with EPERM.
 */
const volatile struct rule deny_rules[MAX_RULES] = {};
const volatile __u32 n_deny = 0;
const volatile struct rule allow_rules[MAX_RULES] = {};
const volatile __u32 n_allow = 0;
/* --audit: every destination the cgroup's connects and sends reach is kept. */
const volatile bool audit = false;

/* Emit the ABI types' BTF so the skeleton generates them for user space. */
struct event _event = {};
struct exec_event _exec_event = {};
enum event_kind _event_kind = EV_EXEC;
enum event_flag _event_flag = EF_PARTIAL;
enum match_has _match_has = HAS_SOCKET;
enum match_result _match_result = MATCH_ABORTED;
enum counter _counter = CTR_LOST;
enum followed_by _followed_by = FOLLOWED_FROM_COMMAND;
struct peer_prefix _peer_prefix = {};

/* A socket's two ends as last reported, for CLOSE after the kernel reset them. */
struct ends {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 family;
	__u8 protocol;
};

struct sock_state {
	__u64 born_ns;
	__u64 connect_ns; /* when the pending connect began; 0 when none is pending */
	__u64 sent;
	__u64 received;
	/*
	 * The socket's inode number: the kernel may reuse the struct sock's address for a
	 * new socket, never the number. Another one means this entry was released unseen.
	 */
	__u64 ino;
	__u32 pid;
	__u32 tid;
	/* Which descriptor-table walk (its start time) last counted this socket's references. */
	__u64 walk;
	__u32 walk_seen;
	char comm[TASK_COMM_LEN];
	struct ends ends;
	__u8 partial;
	__u8 connected; /* a connect was tried, even one that failed before any handshake */
	/* Its owner let go while others held it: the next user takes it over. */
	__u8 unowned;
	/* The server's end of an accepted connection. */
	__u8 accepted;
};

/* Its BTF, for user space's sweep of the table at the end (tracepoint mode). */
struct sock_state _sock_state = {};

/*
 * A kernel call in progress in one thread: a connect (for its start and whether
 * it began a handshake), or a kprobe whose kretprobe needs the entry's arguments.
 * One per thread: none of these calls nests in another.
 */
struct call {
	__u64 start_ns;
	__u64 arg0; /* the struct socket or struct sock */
	__u64 arg1; /* the address, or the struct msghdr */
	__u32 flags;
	__u8 syn_sent; /* the connect put a TCP socket into SYN_SENT */
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

/* The perf buffer, where there is no ring buffer; one of the two is created. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

/*
 * Room for events off the stack: an EXEC event, too large for it, and one other,
 * built there or copied there for match_event() (see emit_built()).
 */
enum { SLOT_EXEC = 0, SLOT_EVENT = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct exec_event);
} scratch SEC(".maps");

/* The key match_event() builds: off the stack, which its callers nearly fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct match_key);
} match_keys SEC(".maps");

/* --audit's destinations. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct destination);
	__type(value, __u8);
} destinations SEC(".maps");

/* Events each rule matched, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} rule_hits SEC(".maps");

/* Each rule's first match, kept where a full event buffer cannot lose it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct exec_event);
} first_hits SEC(".maps");

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
 * Sockets a full table turned away: 1 once counted, 0 before it needed a CLOSE. Each
 * is counted once, and none is later taken for one open before tracing began.
 * Losing an old entry only risks that.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_SKIPPED);
	__type(key, __u64);
	__type(value, __u8);
} skipped SEC(".maps");

/* Set once anything was skipped: until then nobody pays for looking. */
__u32 any_skipped = 0;

/*
 * Connects in progress on sockets a full table turned away: a CONNECT line needs
 * only its start and owner, not the socket's totals.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sock_state);
} connecting SEC(".maps");

/* Tracepoint mode: the sockets an exec's close-on-exec lets go, found at its syscall entry. */
struct exec_closes {
	__u32 n;
	__u64 sk[MAX_EXEC_CLOSES];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct exec_closes);
} exec_closes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct call);
} calls SEC(".maps");

/*
 * Processes whose EXIT was reported, with their start time (so a reused pid is a
 * new process): two threads exiting at once can both find the process dead.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} exited SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending_recv);
} pending_recvs SEC(".maps");

/* Processes traced by descent: pid to enum followed_by; sized by user space (1 when unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} followed SEC(".maps");

/* --cgroup: the cgroup v2 directory user space opened. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cgroups SEC(".maps");

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

/* ---- Common helpers ---- */

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
	return n_ports || n_peers || only_protocol;
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

/* Whether an event passes the socket filters; process events carry no family and pass. */
static __always_inline bool event_passes(const struct event *e)
{
	if (!e->family || !filtering())
		return true;
	if (only_protocol && e->protocol != only_protocol)
		return false;
	return ports_pass(e->lport, e->rport) && peer_passes(e->family, e->raddr);
}

/*
 * 1 when `x` is not zero, without a branch: the barrier keeps the compiler from
 * seeing `x != 0`, which it would turn back into one (and each branch doubles
 * what the verifier walks).
 */
static __always_inline __u64 nonzero(__u64 x)
{
	__u64 neg = -x;

	asm volatile("" : "+r"(neg));
	return (x | neg) >> 63;
}

static __always_inline void fill_key(struct match_key *k, const struct event *e)
{
	__builtin_memcpy(k->addr, e->raddr, sizeof(k->addr));
	__builtin_memcpy(k->comm, e->comm, sizeof(k->comm));
	k->family = e->family;
	if (e->family == AF_INET6 && !k->addr[0] && !k->addr[1] && k->addr[2] == bpf_htonl(0xffff)) {
		k->family = AF_INET;
		k->addr[0] = k->addr[3];
	}
	k->lport = e->lport;
	k->rport = e->rport;
	k->protocol = e->protocol;
	if (e->family) {
		/* As user space decodes it: port 0 is no peer, except where a CONNECT aimed. */
		bool aimed = e->kind == EV_CONNECT && (k->addr[0] | k->addr[1] | k->addr[2] | k->addr[3]);

		k->has = HAS_SOCKET;
		if ((e->rport || aimed) && !(e->flags & EF_PEER_UNKNOWN))
			k->has |= HAS_PEER;
	}
	if (e->kind == EV_CONNECT) {
		k->has |= HAS_RESULT;
		k->result = e->flags & EF_ABORTED ? MATCH_ABORTED : (__u32)-e->value;
	}
}

/* 1 when the term holds for the key. */
static __always_inline __u64 term_holds(const volatile struct rule_term *t, const struct match_key *k)
{
	const __u64 *kw = (const __u64 *)k;
	const volatile __u64 *mask = (const volatile __u64 *)&t->mask;
	const volatile __u64 *value = (const volatile __u64 *)&t->value;
	const volatile __u64 *alt_mask = (const volatile __u64 *)&t->alt_mask;
	const volatile __u64 *alt_value = (const volatile __u64 *)&t->alt_value;
	__u64 miss = 0, alt_miss = 0;

	for (int w = 0; w < sizeof(*k) / 8; w++) {
		miss |= (kw[w] & mask[w]) ^ value[w];
		alt_miss |= (kw[w] & alt_mask[w]) ^ alt_value[w];
	}
	__u64 absent = nonzero((k->has & t->has) ^ t->has);
	__u64 hit = 1 - (nonzero(miss) & nonzero(alt_miss));

	return (1 - absent) & (hit ^ t->negated);
}

/* 1 when the rule is about one of `kinds` (bits 1 << kind) and its every term holds. */
static __always_inline __u64 rule_holds(const volatile struct rule *r, const struct match_key *k,
					__u32 kinds)
{
	__u64 all = nonzero(r->kinds & kinds);

	for (int j = 0; j < MAX_TERMS; j++)
		all &= term_holds(&r->terms[j], k);
	return all;
}

/* Counts the hit; the first on each CPU competes for the rule's first match. */
static __always_inline void record_hit(__u32 i, struct exec_event *x)
{
	__u64 *n = bpf_map_lookup_elem(&rule_hits, &i);

	if (!n)
		return;
	if (!*n)
		bpf_map_update_elem(&first_hits, &i, x, BPF_NOEXIST);
	*n += 1;
}

/*
 * Matches the event in `scratch`[slot] against every rule and returns the rules
 * it matched, one bit each. Global, so the verifier checks it once per program
 * rather than at each of its call sites.
 */
__noinline int match_event(__u32 slot)
{
	struct exec_event *x = bpf_map_lookup_elem(&scratch, &slot);
	__u32 zero = 0;
	struct match_key *k = bpf_map_lookup_elem(&match_keys, &zero);
	__u32 kind;
	int matched = 0;

	if (!x || !k)
		return 0;
	__builtin_memset(k, 0, sizeof(*k));
	fill_key(k, &x->base);
	kind = 1u << (x->base.kind & 31);
	for (__u32 i = 0; i < MAX_RULES; i++) {
		if (i >= n_rules)
			break;
		if (rule_holds(&rules[i], k, kind)) {
			matched |= 1 << i;
			record_hit(i, x);
		}
	}
	return matched;
}

/* Sends a finished record to user space. A full perf buffer counts its own losses. */
static __always_inline void output(void *ctx, void *data, __u64 size)
{
	if (use_ringbuf) {
		if (bpf_ringbuf_output(&events, data, size, 0))
			bump(CTR_LOST);
	} else if (bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, data, size) ==
		   -ENOENT) {
		/* No buffer on this CPU (it came online later); a full one reports itself. */
		bump(CTR_LOST);
	}
}

/* Room off the stack for an event (see emit_built()). */
static __always_inline struct exec_event *build(__u32 slot)
{
	return bpf_map_lookup_elem(&scratch, &slot);
}

/*
 * Sends an event built in scratch[slot]: EXEC's in SLOT_EXEC, others in SLOT_EVENT
 * where match_event() reads them, off the stack its callers nearly fill.
 */
static __always_inline void emit_built(void *ctx, struct exec_event *x, __u32 slot)
{
	if (!event_passes(&x->base))
		return;
	if (n_rules)
		x->base.matched = match_event(slot);
	output(ctx, x, slot == SLOT_EXEC ? sizeof(*x) : sizeof(x->base));
}

/* Sends an event from the stack, copied where match_event() reads it when there are rules. */
static __always_inline void emit(void *ctx, struct event *e)
{
	struct exec_event *x;

	if (!event_passes(e))
		return;
	if (n_rules) {
		x = build(SLOT_EVENT);
		if (!x)
			return;
		__builtin_memcpy(&x->base, e, sizeof(*e));
		e->matched = match_event(SLOT_EVENT);
	}
	output(ctx, e, sizeof(*e));
}

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

/* A socket's address family and protocol, read once and passed on. */
struct sock_kind {
	__u16 family;
	__u16 protocol;
};

/*
 * A field of a struct sock. tp_btf and fentry programs are handed BTF pointers,
 * which plain loads read (a few ns); kprobes and pointers read from memory need
 * probe reads (tens of ns). `btf` is a constant at each inlined call site.
 */
#define SK_FIELD(btf, sk, field) ((btf) ? (sk)->field : BPF_CORE_READ(sk, field))

static __always_inline void read_kind(const struct sock *sk, struct sock_kind *k, bool btf)
{
	k->family = SK_FIELD(btf, sk, __sk_common.skc_family);
	k->protocol = SK_FIELD(btf, sk, sk_protocol);
}

static __always_inline bool inet_sock_of(const struct sock *sk, struct sock_kind *k, bool btf)
{
	if (!sk)
		return false;
	read_kind(sk, k, btf);
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

static __always_inline void save_ends(struct sock_state *st, const struct event *e)
{
	__builtin_memcpy(st->ends.laddr, e->laddr, 16);
	__builtin_memcpy(st->ends.raddr, e->raddr, 16);
	st->ends.lport = e->lport;
	st->ends.rport = e->rport;
	st->ends.family = e->family;
	st->ends.protocol = e->protocol;
}

/* A failed blocking connect disconnects the socket, zeroing its ports: report the ends it had. */
static __always_inline void fill_closed_sock(struct event *e, const struct sock *sk,
					     const struct sock_state *st)
{
	fill_sock(e, sk);
	if (e->protocol == IPPROTO_TCP && e->rport == 0 && st->ends.rport != 0) {
		__builtin_memcpy(e->laddr, st->ends.laddr, 16);
		__builtin_memcpy(e->raddr, st->ends.raddr, 16);
		e->lport = st->ends.lport;
		e->rport = st->ends.rport;
		e->family = st->ends.family;
	}
}

/* Reports a connect outcome; `addr`, when set, is the connect() argument to name the peer. */
static __always_inline void emit_connect(void *ctx, const struct sock *sk, struct sock_state *st,
					 __s64 result, __u8 flags, __u64 duration_ns, __u64 addr,
					 bool user)
{
	struct exec_event *x = build(SLOT_EVENT);
	struct event *e;

	if (!x)
		return;
	e = &x->base;
	fill_proc(e, EV_CONNECT, st->pid, st->tid, st->comm);
	fill_sock(e, sk);
	if (addr)
		read_peer(e, addr, user);
	save_ends(st, e);
	e->value = result;
	e->flags = flags;
	e->duration_ns = duration_ns;
	emit_built(ctx, x, SLOT_EVENT);
}

/* The process a CLOSE is charged to: `by`, or the socket's owner when `by` is NULL. */
static __always_inline void release(void *ctx, const struct sock *sk, struct sock_state *st,
				    const struct proc *by)
{
	__u64 key = (__u64)sk;
	__u64 now = bpf_ktime_get_boot_ns();
	struct exec_event *x;
	struct event *e;

	if (st->connect_ns && wanted(EV_CONNECT))
		emit_connect(ctx, sk, st, 0, EF_ABORTED, now - st->connect_ns, 0, false);
	x = build(SLOT_EVENT);
	if (wanted(EV_CLOSE) && x) {
		e = &x->base;
		if (by)
			fill_proc(e, EV_CLOSE, by->pid, by->tid, by->comm);
		else
			fill_proc(e, EV_CLOSE, st->pid, st->tid, st->comm);
		fill_closed_sock(e, sk, st);
		/* Never bound, connected or listened on, and no bytes: nothing to report. */
		if (e->lport || e->rport || st->sent || st->received || st->connected) {
			e->sent = st->sent;
			e->received = st->received;
			e->duration_ns = now - st->born_ns;
			e->flags = (st->partial ? EF_PARTIAL : 0) | (st->accepted ? EF_ACCEPTED : 0);
			emit_built(ctx, x, SLOT_EVENT);
		}
	}
	bpf_map_delete_elem(&socks, &key);
}

/* The inode number of a socket's struct socket (0 when it has none). */
static __always_inline __u64 sock_ino(const struct sock *sk)
{
	struct socket_alloc *sa = (struct socket_alloc *)BPF_CORE_READ(sk, sk_socket);

	if (!sa)
		return 0;
	return BPF_CORE_READ(sa, vfs_inode.i_ino);
}

/*
 * Tracepoint mode: an entry whose socket is gone (released where no hook saw it)
 * while a new socket took its address is dropped and counted, never merged into
 * the new one. The other modes see every release: they never read the inode.
 */
static __always_inline bool stale(const struct sock_state *st, __u64 ino)
{
	if (!no_release_hook || st->ino == ino)
		return false;
	bump(CTR_MISSED);
	return true;
}

/*
 * A socket the table had no room for. It is counted once, and only once it needs a
 * CLOSE (`needed`: connected, accepted, listening or moving bytes); a socket that is
 * only created and closed again costs nothing.
 */
static __always_inline void turned_away(__u64 key, bool needed)
{
	__u8 zero = 0, one = 1;
	__u8 *counted;

	any_skipped = 1;
	if (!needed) {
		/* A new socket at this address: forget whatever was here before. */
		bpf_map_update_elem(&skipped, &key, &zero, BPF_ANY);
		return;
	}
	counted = bpf_map_lookup_elem(&skipped, &key);
	if (counted && *counted)
		return;
	if (counted)
		*counted = 1;
	else
		bpf_map_update_elem(&skipped, &key, &one, BPF_NOEXIST);
	bump(CTR_UNTRACKED);
}

/*
 * Starts tracking a socket the traced process just created, accepted or connected
 * (`born`), or one it uses that was open before tracing began. A socket only created
 * is not `needed` yet (see turned_away).
 */
static __always_inline struct sock_state *track(const struct sock *sk, const struct proc *p,
						__u64 connect_ns, bool born, bool needed)
{
	__u64 key = (__u64)sk;
	__u8 one = 1;
	struct sock_state st = {
		.born_ns = bpf_ktime_get_boot_ns(),
		.connect_ns = connect_ns,
		.ino = no_release_hook ? sock_ino(sk) : 0,
		.pid = p->pid,
		.tid = p->tid,
		.connected = connect_ns != 0,
	};

	__builtin_memcpy(st.comm, p->comm, TASK_COMM_LEN);
	if (born && no_release_hook) {
		struct sock_state *old = bpf_map_lookup_elem(&socks, &key);

		/* A socket at this address was released unseen. */
		if (old)
			stale(old, st.ino);
	}
	if (bpf_map_update_elem(&socks, &key, &st, BPF_ANY)) {
		turned_away(key, needed);
		return NULL;
	}
	if (any_skipped)
		bpf_map_delete_elem(&skipped, &key);
	if (no_release_hook)
		bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
	return bpf_map_lookup_elem(&socks, &key);
}

/*
 * Whether a connected TCP socket found open was accepted: it inherited the
 * listener's explicit bind (SOCK_BINDPORT_LOCK), which a client's automatic port
 * does not set. A client that bound its own port is taken for a server.
 */
static __always_inline __u8 was_accepted(const struct sock *sk)
{
	struct sock_kind kind;

	read_kind(sk, &kind, false);
	return kind.protocol == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_LISTEN &&
	       (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_userlocks) & SOCK_BINDPORT_LOCK) != 0;
}

/*
 * The state of a socket already open when tracing began is adopted on first use;
 * a socket whose owner let it go while another process held it goes to its next user.
 */
static __always_inline struct sock_state *adopt(const struct sock *sk, const struct proc *p)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);

	if (st && no_release_hook && stale(st, sock_ino(sk))) {
		bpf_map_delete_elem(&socks, &key);
		st = NULL;
	}
	if (st) {
		if (st->unowned) {
			__u8 one = 1;

			st->unowned = 0;
			st->pid = p->pid;
			st->tid = p->tid;
			__builtin_memcpy(st->comm, p->comm, TASK_COMM_LEN);
			if (no_release_hook)
				bpf_map_update_elem(&owners, &p->pid, &one, BPF_ANY);
		}
		return st;
	}
	/* Born while the table was full: its totals would be wrong. */
	if (any_skipped) {
		__u8 *counted = bpf_map_lookup_elem(&skipped, &key);

		if (counted) {
			turned_away(key, true);
			return NULL;
		}
	}
	st = track(sk, p, 0, false, true);
	if (st) {
		st->partial = 1;
		st->born_ns = start_ns;
		st->accepted = was_accepted(sk);
	}
	return st;
}

/* The struct sock of a struct socket a kprobe stashed (a plain variable: CO-RE
 * relocates every field access inside its read). */
static __always_inline struct sock *socket_sk(__u64 socket)
{
	struct socket *sock = (struct socket *)socket;

	return BPF_CORE_READ(sock, sk);
}

/* Stashes a kprobe's arguments for its kretprobe in this thread's entry of `calls`. */
static __always_inline void stash_as(const struct proc *p, __u64 arg0, __u64 arg1, __u32 flags)
{
	struct call c;

	__builtin_memset(&c, 0, sizeof(c));
	c.start_ns = bpf_ktime_get_boot_ns();
	c.arg0 = arg0;
	c.arg1 = arg1;
	c.flags = flags;
	bpf_map_update_elem(&calls, &p->tid, &c, BPF_ANY);
}

/* stash_as for the current process; returns false when it is not traced. */
static __always_inline bool stash(__u64 arg0, __u64 arg1, __u32 flags)
{
	struct proc p;

	if (!current_proc(&p))
		return false;
	stash_as(&p, arg0, arg1, flags);
	return true;
}

/* Takes this thread's stashed call out of the table. */
static __always_inline bool unstash(struct call *c)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call *found = bpf_map_lookup_elem(&calls, &tid);

	if (!found)
		return false;
	*c = *found;
	bpf_map_delete_elem(&calls, &tid);
	return true;
}

/* ---- Process events: fork, exec, exit ---- */

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
	if (!inet_sock(sk, &kind))
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
	return walk_bit(ctx, i, WALK_EXEC);
}

static long walk_bit_close(__u32 i, void *ctx)
{
	return walk_bit(ctx, i, WALK_EXIT);
}

static __always_inline long walk_word(struct fd_walk *w, __u32 i, enum walk_for why)
{
	unsigned long bits = 0, cloexec = 0;

	w->word = (w->first >> 6) + i;
	bpf_probe_read_kernel(&bits, sizeof(bits), (unsigned long *)w->open_fds + w->word);
	if (why == WALK_EXEC) {
		bpf_probe_read_kernel(&cloexec, sizeof(cloexec), (unsigned long *)w->cloexec + w->word);
		bits &= cloexec;
	}
	w->bits = bits;
	if (bits)
		bpf_loop(64, why == WALK_EXEC ? walk_bit_exec : walk_bit_close, w, 0);
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
		 w->why == WALK_EXEC ? walk_word_exec : walk_word_close, w, 0);
}

/* Whether the current process may hold tracked sockets (it or a parent tracked one). */
static __always_inline bool holds_sockets(const struct proc *p)
{
	return tracking() && bpf_map_lookup_elem(&owners, &p->pid);
}

/* Before an exec: the sockets its close-on-exec will let go, reported if the exec succeeds. */
static __always_inline int before_exec(void)
{
	struct fd_walk w = { .why = WALK_EXEC, .last = ~0u };

	w.traced = current_proc(&w.p);
	if (!holds_sockets(&w.p)) {
		/* An earlier failed exec's findings must not outlive it. */
		bpf_map_delete_elem(&exec_closes, &w.p.tid);
		return 0;
	}
	walk_fds(&w);
	bpf_map_update_elem(&exec_closes, &w.p.tid, &w.found, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tp_execve(struct trace_event_raw_sys_enter *ctx)
{
	return before_exec();
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int tp_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return before_exec();
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
	struct fd_walk w = { .why = WALK_EXIT, .last = ~0u };
	struct event e;

	/* Only the last thread out ends the process. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	w.traced = current_proc(&w.p);
	if (walk && holds_sockets(&w.p)) {
		walk_fds(&w);
		bpf_map_delete_elem(&owners, &w.p.pid);
	}
	if (w.traced && wanted(EV_EXIT) && first_exit(task, w.p.pid)) {
		fill_proc(&e, EV_EXIT, w.p.pid, w.p.tid, w.p.comm);
		e.value = BPF_CORE_READ(task, exit_code);
		emit(ctx, &e);
	}
	/* The pid may be reused by a process outside the tree. */
	if (use_followed)
		bpf_map_delete_elem(&followed, &w.p.pid);
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
	e.value = ppid;
	emit(ctx, &e);
	return 0;
}

/* ---- Socket born ---- */

/* The new socket is `sock`, or the one at descriptor `fd`: looked up only for a traced process. */
static __always_inline int on_born(struct socket *sock, long fd)
{
	struct sock_kind kind;
	struct proc p;
	struct sock *sk;

	if (!current_proc(&p))
		return 0;
	sk = sock ? BPF_CORE_READ(sock, sk) : sock_from_file(file_from_fd(fd));
	if (inet_sock(sk, &kind))
		track(sk, &p, 0, true, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_socket")
int tp_socket(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret < 0)
		return 0;
	return on_born(NULL, ctx->ret);
}

SEC("fentry/security_socket_post_create")
int BPF_PROG(fx_socket, struct socket *sock, int family, int type, int protocol, int kern)
{
	return on_born(sock, -1);
}

SEC("kprobe/security_socket_post_create")
int BPF_KPROBE(kp_socket, struct socket *sock)
{
	return on_born(sock, -1);
}

/* ---- Connect: started by the process, settled by the handshake ---- */

/* A handshake's outcome: the state left SYN_SENT for `newstate`. */
static __always_inline int connect_settled(void *ctx, const struct sock *sk,
					   struct sock_state *st, int newstate)
{
	__s64 result;

	if (!st->connect_ns)
		return 0;
	if (newstate == TCP_ESTABLISHED) {
		result = 0;
	} else {
		/* tcp_reset() and tcp_write_err() set sk_err before moving to CLOSE. */
		result = -(__s64)BPF_CORE_READ(sk, sk_err);
	}
	if (wanted(EV_CONNECT))
		emit_connect(ctx, sk, st, result,
			     newstate != TCP_ESTABLISHED && !result ? EF_ABORTED : 0,
			     bpf_ktime_get_boot_ns() - st->connect_ns, 0, false);
	st->connect_ns = 0;
	return 0;
}

/* Under Release. */
static __always_inline bool tcp_detached(const struct sock *sk);
static __always_inline void tcp_released(void *ctx, const struct sock *sk);

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(tp_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk, now;
	struct sock_state *st, untracked;
	struct call *call;
	struct proc p;

	/* Tracepoint mode: the first change after the socket's release reports it. */
	if (no_release_hook && newstate != TCP_SYN_SENT && tcp_detached(sk)) {
		tcp_released(ctx, sk);
		if (oldstate != TCP_SYN_SENT)
			return 0;
	}
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		/* Runs in the connecting process. */
		if (!current_proc(&p))
			return 0;
		now = bpf_ktime_get_boot_ns();
		call = bpf_map_lookup_elem(&calls, &p.tid);
		if (call) {
			call->syn_sent = 1;
			now = call->start_ns;
		}
		st = bpf_map_lookup_elem(&socks, &key);
		if (!st) {
			if (!track(sk, &p, now, true, true)) {
				struct sock_state c = { .connect_ns = now, .pid = p.pid, .tid = p.tid };

				__builtin_memcpy(c.comm, p.comm, TASK_COMM_LEN);
				bpf_map_update_elem(&connecting, &key, &c, BPF_ANY);
			}
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
	if (st)
		return connect_settled(ctx, sk, st, newstate);
	st = bpf_map_lookup_elem(&connecting, &key);
	if (!st)
		return 0;
	/* Untracked: its one line is all there is to report. */
	untracked = *st;
	bpf_map_delete_elem(&connecting, &key);
	return connect_settled(ctx, sk, &untracked, newstate);
}

/* connect() returns without a TCP outcome when it is in progress or was interrupted. */
static __always_inline bool tcp_connect_pending(long ret)
{
	return ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN || ret == -EINTR ||
	       (ret <= -ERESTARTSYS && ret >= -ERESTARTSYS - 4);
}

/* `flags` of a stashed connect. */
#define CALL_COLLECTS 1

/*
 * A connect() on a TCP socket whose earlier attempt already ended (SS_CONNECTING,
 * yet TCP_CLOSE) starts nothing: it only collects that attempt's error, as hiredis
 * and redis-cli learn a non-blocking connect's outcome. That outcome was reported.
 */
static __always_inline bool collects_outcome(const struct socket *sock)
{
	struct sock *sk = BPF_CORE_READ(sock, sk);

	return sock && BPF_CORE_READ(sock, state) == SS_CONNECTING &&
	       BPF_CORE_READ(sk, __sk_common.skc_state) == TCP_CLOSE;
}

static __always_inline int connect_stash(const struct proc *p, struct socket *sock, __u64 addr)
{
	stash_as(p, (__u64)sock, addr, collects_outcome(sock) ? CALL_COLLECTS : 0);
	return 0;
}

static __always_inline int connect_begin(struct socket *sock, __u64 addr)
{
	struct proc p;

	return current_proc(&p) ? connect_stash(&p, sock, addr) : 0;
}

/*
 * A connect call returned: report what never began a handshake (UDP, and TCP that
 * failed at once); a handshake reports through inet_sock_set_state.
 */
static __always_inline int connect_end(void *ctx, struct sock *sk, long ret, __u64 addr,
				       bool user, const struct call *call)
{
	struct sock_state owner = {}, *st;
	struct sock_kind kind;
	struct proc p;
	__u64 key = (__u64)sk;

	if (!current_proc(&p) || !inet_sock(sk, &kind))
		return 0;
	/* connect() with AF_UNSPEC dissolves a UDP association: no connect at all. */
	if (addr_family(addr, user) == AF_UNSPEC)
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	if (st)
		st->connected = 1;
	if (kind.protocol == IPPROTO_TCP && (call->syn_sent || ret == 0 || tcp_connect_pending(ret)))
		return 0;
	if (call->flags & CALL_COLLECTS)
		return 0;
	owner.pid = p.pid;
	owner.tid = p.tid;
	__builtin_memcpy(owner.comm, p.comm, TASK_COMM_LEN);
	/*
	 * A connected socket names its ends as the kernel resolved them (a wildcard peer
	 * is loopback); a failed one may have none yet: then the peer as the process named it.
	 */
	emit_connect(ctx, sk, &owner, ret, 0, bpf_ktime_get_boot_ns() - call->start_ns,
		     ret ? addr : 0, user);
	return 0;
}

/* fexit: the call's own arguments are at hand. */
static __always_inline int fx_connect_done(void *ctx, struct socket *sock, struct sockaddr *uaddr,
					   int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return connect_end(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, false, &call);
}

/* kretprobe: the arguments the kprobe stashed. */
static __always_inline int kp_connect_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return connect_end(ctx, socket_sk(call.arg0), ret, call.arg1, false, &call);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int tp_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct file *file;
	struct proc p;

	if (!current_proc(&p))
		return 0;
	file = file_from_fd(ctx->args[0]);
	if (!file || (BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	return connect_stash(&p, BPF_CORE_READ(file, private_data), 0);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tp_connect_r(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;
	struct call call;

	if (!unstash(&call))
		return 0;
	regs = user_regs();
	return connect_end(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs))),
			   ctx->ret, PT_REGS_PARM2_CORE_SYSCALL(regs), true, &call);
}

/* inet_stream_connect (TCP) and inet_dgram_connect (UDP) serve IPv4 and IPv6. */
SEC("fentry/inet_stream_connect")
int BPF_PROG(fx_connect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/inet_stream_connect")
int BPF_PROG(fx_connect_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("fentry/inet_dgram_connect")
int BPF_PROG(fx_dconnect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("fexit/inet_dgram_connect")
int BPF_PROG(fx_dconnect_r, struct socket *sock, struct sockaddr *uaddr, int addr_len, int flags,
	     int ret)
{
	return fx_connect_done(ctx, sock, uaddr, ret);
}

SEC("kprobe/inet_stream_connect")
int BPF_KPROBE(kp_connect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/inet_stream_connect")
int BPF_KRETPROBE(kp_connect_r, int ret)
{
	return kp_connect_done(ctx, ret);
}

SEC("kprobe/inet_dgram_connect")
int BPF_KPROBE(kp_dconnect, struct socket *sock, struct sockaddr *uaddr)
{
	return connect_begin(sock, (__u64)uaddr);
}

SEC("kretprobe/inet_dgram_connect")
int BPF_KRETPROBE(kp_dconnect_r, int ret)
{
	return kp_connect_done(ctx, ret);
}

/* ---- Listen: TCP listen(), and a UDP server's bind() ---- */

static __always_inline int on_listen(void *ctx, struct sock *sk, long ret)
{
	struct event e;
	struct proc p;
	struct sock_kind kind;

	if (ret != 0 || !current_proc(&p) || !inet_sock(sk, &kind))
		return 0;
	fill_proc(&e, EV_LISTEN, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &kind);
	/* The backlog the kernel uses: the requested one capped at net.core.somaxconn. */
	e.value = BPF_CORE_READ(sk, sk_max_ack_backlog);
	emit(ctx, &e);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_listen")
int tp_listen(struct trace_event_raw_sys_exit *ctx)
{
	if (ctx->ret != 0)
		return 0;
	return on_listen(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs()))),
			 ctx->ret);
}

SEC("fexit/inet_listen")
int BPF_PROG(fx_listen, struct socket *sock, int backlog, int ret)
{
	return on_listen(ctx, BPF_CORE_READ(sock, sk), ret);
}

SEC("kprobe/inet_listen")
int BPF_KPROBE(kp_listen, struct socket *sock)
{
	stash((__u64)sock, 0, 0);
	return 0;
}

SEC("kretprobe/inet_listen")
int BPF_KRETPROBE(kp_listen_r, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_listen(ctx, socket_sk(call.arg0), ret);
}

/* A UDP socket bound to a port it named is a UDP server starting: its LISTEN. */
static __always_inline int on_bind(void *ctx, struct sock *sk, long ret, __u64 addr, bool user)
{
	struct event e;
	struct proc p;
	struct sock_kind kind;

	if (ret != 0 || !current_proc(&p) || !inet_sock(sk, &kind) ||
	    kind.protocol != IPPROTO_UDP)
		return 0;
	/* Port 0 asks for an ephemeral port, as clients do: not a server. */
	if (!addr_port(addr, user))
		return 0;
	fill_proc(&e, EV_LISTEN, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &kind);
	emit(ctx, &e);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int tp_bind(struct trace_event_raw_sys_exit *ctx)
{
	struct pt_regs *regs;

	if (ctx->ret != 0)
		return 0;
	regs = user_regs();
	return on_bind(ctx, sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(regs))),
		       ctx->ret, PT_REGS_PARM2_CORE_SYSCALL(regs), true);
}

SEC("fexit/inet_bind")
int BPF_PROG(fx_bind, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return on_bind(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, false);
}

SEC("fexit/inet6_bind")
int BPF_PROG(fx_bind6, struct socket *sock, struct sockaddr *uaddr, int addr_len, int ret)
{
	return on_bind(ctx, BPF_CORE_READ(sock, sk), ret, (__u64)uaddr, false);
}

static __always_inline int kp_bind_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_bind(ctx, socket_sk(call.arg0), ret, call.arg1, false);
}

SEC("kprobe/inet_bind")
int BPF_KPROBE(kp_bind, struct socket *sock, struct sockaddr *uaddr)
{
	stash((__u64)sock, (__u64)uaddr, 0);
	return 0;
}

SEC("kretprobe/inet_bind")
int BPF_KRETPROBE(kp_bind_r, int ret)
{
	return kp_bind_done(ctx, ret);
}

SEC("kprobe/inet6_bind")
int BPF_KPROBE(kp_bind6, struct socket *sock, struct sockaddr *uaddr)
{
	stash((__u64)sock, (__u64)uaddr, 0);
	return 0;
}

SEC("kretprobe/inet6_bind")
int BPF_KRETPROBE(kp_bind6_r, int ret)
{
	return kp_bind_done(ctx, ret);
}

/* ---- Accept ---- */

/*
 * A traced process accepted `sk`. `listener`, when known, is adopted if it was
 * opened before tracing began.
 */
static __always_inline int on_accept(void *ctx, const struct proc *p, struct sock *sk,
				     struct sock *listener)
{
	struct event e;
	struct sock_kind kind;

	if (!inet_sock(sk, &kind))
		return 0;
	fill_proc(&e, EV_ACCEPT, p->pid, p->tid, p->comm);
	fill_ends(&e, sk, &kind);
	/* A connection the filters exclude needs no tracking: none of its events will pass. */
	if (!event_passes(&e))
		return 0;
	e.flags = EF_ACCEPTED;
	if (wanted(EV_CLOSE)) {
		struct sock_state *st = track(sk, p, 0, true, true);

		if (st)
			st->accepted = 1;
		if (listener)
			adopt(listener, p);
	}
	if (wanted(EV_ACCEPT))
		emit(ctx, &e);
	return 0;
}

/* accept() returned descriptor `fd`; its first argument is the listener's. */
static __always_inline int tp_on_accept(void *ctx, long fd)
{
	struct proc p;

	if (fd < 0 || !current_proc(&p))
		return 0;
	return on_accept(ctx, &p, sock_from_file(file_from_fd(fd)),
			 sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs()))));
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return tp_on_accept(ctx, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_accept(struct trace_event_raw_sys_exit *ctx)
{
	return tp_on_accept(ctx, ctx->ret);
}

/*
 * inet_accept grafts the new socket onto its struct socket once accepted: an entry
 * hook, so no return probe can be missed however many threads wait in accept().
 */
static __always_inline int on_graft(void *ctx, struct sock *sk)
{
	struct proc p;

	if (!current_proc(&p))
		return 0;
	return on_accept(ctx, &p, sk, NULL);
}

SEC("fentry/security_sock_graft")
int BPF_PROG(fx_accept, struct sock *sk, struct socket *parent)
{
	return on_graft(ctx, sk);
}

SEC("kprobe/security_sock_graft")
int BPF_KPROBE(kp_accept, struct sock *sk)
{
	return on_graft(ctx, sk);
}

/* ---- Send and receive ---- */

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

/* A UDP socket with no connected peer: each datagram names its own. */
static __always_inline bool unconnected_udp(const struct sock *sk, const struct sock_kind *k,
					    bool btf)
{
	return k->protocol == IPPROTO_UDP &&
	       SK_FIELD(btf, sk, __sk_common.skc_state) != TCP_ESTABLISHED;
}

/*
 * Whether a socket's events can pass the filters. Its ends are fixed, except an
 * unconnected UDP socket's peer, which each datagram names: those are decided per event.
 */
static __always_inline bool sock_may_pass(const struct sock *sk, const struct sock_kind *k,
					  bool unconnected, bool btf)
{
	__u8 raddr[16] = {};

	if (only_protocol && k->protocol != only_protocol)
		return false;
	if (unconnected)
		return true;
	/* skc_num, the local port in host order, is set while the socket moves bytes. */
	if (n_ports && !ports_pass(SK_FIELD(btf, sk, __sk_common.skc_num),
				   bpf_ntohs(SK_FIELD(btf, sk, __sk_common.skc_dport))))
		return false;
	if (!n_peers)
		return true;
	if (k->family == AF_INET6 && btf)
		__builtin_memcpy(raddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	else if (k->family == AF_INET6)
		BPF_CORE_READ_INTO(&raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	else
		*(__u32 *)raddr = SK_FIELD(btf, sk, __sk_common.skc_daddr);
	return peer_passes(k->family, raddr);
}

/*
 * Bytes moved on a socket. An unconnected UDP socket's peer is the datagram's
 * address: in the kernel's msghdr (`peer`), or, on the tracepoints, in the
 * syscall's arguments, where a receive's sender is written only after the
 * tracepoint and is read at syscall exit.
 */
static __always_inline int on_transfer(void *ctx, struct sock *sk, long ret, int msg_flags,
				       __u8 kind, __u64 peer, bool from_syscall, bool btf)
{
	struct sock_state *st = NULL;
	struct pending_recv pending;
	struct event e;
	struct proc p;
	struct sock_kind sock;
	bool unconnected;

	if (ret < 0 || !current_proc(&p) || !inet_sock_of(sk, &sock, btf))
		return 0;
	if (kind == EV_RECV && (msg_flags & MSG_PEEK))
		return 0;
	unconnected = unconnected_udp(sk, &sock, btf);
	/* Cheap for a busy socket the filters exclude: no accounting, no copy. */
	if (filtering() && !sock_may_pass(sk, &sock, unconnected, btf))
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

	if (unconnected && from_syscall)
		peer = syscall_peer_ptr(kind == EV_RECV);
	if (unconnected && peer && from_syscall && kind == EV_RECV) {
		/* The kernel copies the sender out only after this point; finish at syscall exit. */
		fill_proc(&pending.e, kind, p.pid, p.tid, p.comm);
		fill_ends(&pending.e, sk, &sock);
		pending.e.value = ret;
		pending.uaddr = peer;
		__sync_fetch_and_add(&pending_count, 1);
		if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_NOEXIST)) {
			/* This thread's entry is already counted (its syscall never exited). */
			__sync_fetch_and_add(&pending_count, -1);
			if (bpf_map_update_elem(&pending_recvs, &p.tid, &pending, BPF_ANY))
				bump(CTR_LOST);
		}
		return 0;
	}

	fill_proc(&e, kind, p.pid, p.tid, p.comm);
	fill_ends(&e, sk, &sock);
	e.value = ret;
	if (st && st->accepted)
		e.flags |= EF_ACCEPTED;
	if (unconnected && !read_peer(&e, peer, from_syscall))
		e.flags |= EF_PEER_UNKNOWN;
	emit(ctx, &e);
	return 0;
}

/*
 * A send or receive's kprobe: a socket the filters exclude stashes nothing, so its
 * kretprobe costs what an untraced process's does.
 */
static __always_inline void stash_transfer(struct sock *sk, __u64 arg1, __u32 flags)
{
	struct sock_kind kind;
	struct proc p;

	if (!current_proc(&p))
		return;
	if (filtering() && inet_sock(sk, &kind) &&
	    !sock_may_pass(sk, &kind, unconnected_udp(sk, &kind, false), false))
		return;
	stash_as(&p, (__u64)sk, arg1, flags);
}

/* A datagram's address in a kernel msghdr: the destination on send, the sender on receive. */
static __always_inline __u64 msg_peer(struct msghdr *msg)
{
	return (__u64)BPF_CORE_READ(msg, msg_name);
}

/* The tracepoints see every send and receive path, in the calling process. */
SEC("tp_btf/sock_send_length")
int BPF_PROG(tp_send, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_SEND, 0, true, true);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(tp_recv, struct sock *sk, int ret, int flags)
{
	return on_transfer(ctx, sk, ret, flags, EV_RECV, 0, true, true);
}

static __always_inline int finish_recv(void *ctx)
{
	struct pending_recv *pending;
	struct event e;
	__u32 tid;

	if (!pending_count)
		return 0;
	tid = (__u32)bpf_get_current_pid_tgid();
	pending = bpf_map_lookup_elem(&pending_recvs, &tid);
	if (!pending)
		return 0;
	__builtin_memcpy(&e, &pending->e, sizeof(e));
	if (!read_peer(&e, pending->uaddr, true))
		e.flags |= EF_PEER_UNKNOWN;
	emit(ctx, &e);
	if (!bpf_map_delete_elem(&pending_recvs, &tid))
		__sync_fetch_and_add(&pending_count, -1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int tp_recvfrom_r(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv(ctx);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int tp_recvmsg_r(struct trace_event_raw_sys_exit *ctx)
{
	return finish_recv(ctx);
}

/*
 * splice() from a TCP socket reads through tcp_splice_read, which the receive
 * tracepoint does not see; other sockets' splice reads go through recvmsg and do.
 */
SEC("tracepoint/syscalls/sys_exit_splice")
int tp_splice_r(struct trace_event_raw_sys_exit *ctx)
{
	struct sock_kind kind;
	struct proc p;
	struct sock *sk;

	if (ctx->ret <= 0 || !current_proc(&p))
		return 0;
	sk = sock_from_file(file_from_fd(PT_REGS_PARM1_CORE_SYSCALL(user_regs())));
	if (!inet_sock(sk, &kind) || kind.protocol != IPPROTO_TCP)
		return 0;
	return on_transfer(ctx, sk, ctx->ret, 0, EV_RECV, 0, false, false);
}

/*
 * The socket functions. udpv6_sendmsg hands a v4-mapped destination to udp_sendmsg:
 * that one counts only IPv4 sockets, so no datagram counts twice. Before 6.5,
 * sendfile and splice reach TCP and UDP through their sendpage functions.
 */
static __always_inline int send_ipv4_only(void *ctx, struct sock *sk, struct msghdr *msg, long ret,
					  bool btf)
{
	if (SK_FIELD(btf, sk, __sk_common.skc_family) != AF_INET)
		return 0;
	return on_transfer(ctx, sk, ret, 0, EV_SEND, msg_peer(msg), false, btf);
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(fx_tcp_send, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, 0, false, true);
}

SEC("fexit/udp_sendmsg")
int BPF_PROG(fx_udp_send, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	return send_ipv4_only(ctx, sk, msg, ret, true);
}

SEC("fexit/udpv6_sendmsg")
int BPF_PROG(fx_udp6_send, struct sock *sk, struct msghdr *msg, size_t len, int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, msg_peer(msg), false, true);
}

SEC("fexit/tcp_sendpage")
int BPF_PROG(fx_tcp_page, struct sock *sk, struct page *page, int offset, size_t size, int flags,
	     int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, 0, false, true);
}

SEC("fexit/udp_sendpage")
int BPF_PROG(fx_udp_page, struct sock *sk, struct page *page, int offset, size_t size, int flags,
	     int ret)
{
	return on_transfer(ctx, sk, ret, 0, EV_SEND, 0, false, true);
}

/* A send whose peer, if any, the socket holds (TCP, and UDP's sendpage). */
static __always_inline int kp_send_done(void *ctx, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_transfer(ctx, (struct sock *)call.arg0, ret, 0, EV_SEND, 0, false, false);
}

SEC("kprobe/tcp_sendmsg")
int BPF_KPROBE(kp_tcp_send, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_sendmsg")
int BPF_KRETPROBE(kp_tcp_send_r, int ret)
{
	return kp_send_done(ctx, ret);
}

SEC("kprobe/udp_sendmsg")
int BPF_KPROBE(kp_udp_send, struct sock *sk, struct msghdr *msg)
{
	stash_transfer(sk, (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/udp_sendmsg")
int BPF_KRETPROBE(kp_udp_send_r, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return send_ipv4_only(ctx, (struct sock *)call.arg0, (struct msghdr *)call.arg1, ret, false);
}

SEC("kprobe/udpv6_sendmsg")
int BPF_KPROBE(kp_udp6_send, struct sock *sk, struct msghdr *msg)
{
	stash_transfer(sk, (__u64)msg, 0);
	return 0;
}

SEC("kretprobe/udpv6_sendmsg")
int BPF_KRETPROBE(kp_udp6_send_r, int ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return on_transfer(ctx, (struct sock *)call.arg0, ret, 0, EV_SEND,
			   msg_peer((struct msghdr *)call.arg1), false, false);
}

SEC("kprobe/tcp_sendpage")
int BPF_KPROBE(kp_tcp_page, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/tcp_sendpage")
int BPF_KRETPROBE(kp_tcp_page_r, int ret)
{
	return kp_send_done(ctx, ret);
}

SEC("kprobe/udp_sendpage")
int BPF_KPROBE(kp_udp_page, struct sock *sk)
{
	stash_transfer(sk, 0, 0);
	return 0;
}

SEC("kretprobe/udp_sendpage")
int BPF_KRETPROBE(kp_udp_page_r, int ret)
{
	return kp_send_done(ctx, ret);
}

/*
 * tcp_recvmsg, udp_recvmsg, udpv6_recvmsg: (sk, msg, len, [nonblock,] flags, addr_len).
 * The sender of a datagram is in msg->msg_name once the function returns.
 */
static __always_inline int recv_done(void *ctx, struct sock *sk, struct msghdr *msg, long ret,
				     int flags, bool ipv4_only, bool btf)
{
	if (ipv4_only && SK_FIELD(btf, sk, __sk_common.skc_family) != AF_INET)
		return 0;
	return on_transfer(ctx, sk, ret, flags, EV_RECV, msg ? msg_peer(msg) : 0, false, btf);
}

/*
 * The receive functions lost `nonblock` in 5.19 (user space loads the matching
 * variant), and later `addr_len`: from 5.19 the return value comes from
 * bpf_get_func_ret (5.17+) rather than from a fixed place after the arguments.
 */
static __always_inline int fx_recv(__u64 *ctx, struct sock *sk, struct msghdr *msg, int flags,
				   bool ipv4_only)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	return recv_done(ctx, sk, msg, (int)ret, flags, ipv4_only, true);
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fx_tcp_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, false);
}

SEC("fexit/tcp_recvmsg")
int BPF_PROG(fx_tcp_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, false, true);
}

SEC("fexit/udp_recvmsg")
int BPF_PROG(fx_udp_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, true);
}

SEC("fexit/udp_recvmsg")
int BPF_PROG(fx_udp_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, true, true);
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(fx_udp6_recv, struct sock *sk, struct msghdr *msg, size_t len, int flags)
{
	return fx_recv(ctx, sk, msg, flags, false);
}

SEC("fexit/udpv6_recvmsg")
int BPF_PROG(fx_udp6_recv_nb, struct sock *sk, struct msghdr *msg, size_t len, int nonblock,
	     int flags, int *addr_len, int ret)
{
	return recv_done(ctx, sk, msg, ret, flags, false, true);
}

/* splice(2) from a TCP socket bypasses tcp_recvmsg. */
SEC("fexit/tcp_splice_read")
int BPF_PROG(fx_tcp_splice, struct socket *sock, loff_t *ppos, struct pipe_inode_info *pipe,
	     size_t len, unsigned int flags, long ret)
{
	return recv_done(ctx, BPF_CORE_READ(sock, sk), NULL, ret, 0, false, false);
}

static __always_inline int kp_recv(struct pt_regs *ctx)
{
	/* Both read first: a choice of register offset on the context is refused. */
	int flags4 = PT_REGS_PARM4(ctx), flags5 = PT_REGS_PARM5(ctx);
	int flags = recv_has_nonblock ? flags5 : flags4;

	stash_transfer((struct sock *)PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), flags);
	return 0;
}

static __always_inline int kp_recv_r(struct pt_regs *ctx, bool ipv4_only)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return recv_done(ctx, (struct sock *)call.arg0, (struct msghdr *)call.arg1,
			 (int)PT_REGS_RC(ctx), call.flags, ipv4_only, false);
}

SEC("kprobe/tcp_recvmsg")
int kp_tcp_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/tcp_recvmsg")
int kp_tcp_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/udp_recvmsg")
int kp_udp_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/udp_recvmsg")
int kp_udp_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, true);
}

SEC("kprobe/udpv6_recvmsg")
int kp_udp6_recv(struct pt_regs *ctx)
{
	return kp_recv(ctx);
}

SEC("kretprobe/udpv6_recvmsg")
int kp_udp6_recv_r(struct pt_regs *ctx)
{
	return kp_recv_r(ctx, false);
}

SEC("kprobe/tcp_splice_read")
int BPF_KPROBE(kp_tcp_splice, struct socket *sock)
{
	stash_transfer(BPF_CORE_READ(sock, sk), 0, 0);
	return 0;
}

SEC("kretprobe/tcp_splice_read")
int BPF_KRETPROBE(kp_tcp_splice_r, long ret)
{
	struct call call;

	if (!unstash(&call))
		return 0;
	return recv_done(ctx, (struct sock *)call.arg0, NULL, ret, 0, false, false);
}

/* ---- Release ---- */

/*
 * A socket let go that has no entry: forget that a full table turned it away, or
 * adopt one that was open before tracing began, for its CLOSE.
 */
static __always_inline struct sock_state *adopt_at_release(const struct sock *sk,
							   const struct proc *p)
{
	__u64 key = (__u64)sk;

	if (any_skipped && bpf_map_lookup_elem(&skipped, &key)) {
		bpf_map_delete_elem(&skipped, &key);
		return NULL;
	}
	return wanted(EV_CLOSE) ? adopt(sk, p) : NULL;
}

/*
 * Tracepoint mode: a traced process closes a descriptor. Another reference (a dup,
 * a forked child, a call in flight in another thread) keeps the socket alive, and
 * the process that closed it need not be the one that lets it go last.
 */
static __always_inline int on_close_fd(void *ctx, const struct proc *p, long fd)
{
	struct sock_state *st;
	struct file *file;
	struct sock *sk;
	struct sock_kind kind;
	__u64 key;

	file = file_from_fd(fd);
	sk = sock_from_file(file);
	if (!inet_sock(sk, &kind))
		return 0;
	key = (__u64)sk;
	st = bpf_map_lookup_elem(&socks, &key);
	if (file_refs(file) > 1) {
		if (st && st->pid == p->pid)
			st->unowned = 1;
		return 0;
	}
	if (!st)
		st = adopt_at_release(sk, p);
	if (st)
		release(ctx, sk, st, p);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int tp_close(struct trace_event_raw_sys_enter *ctx)
{
	struct proc p;

	if (!current_proc(&p))
		return 0;
	return on_close_fd(ctx, &p, ctx->args[0]);
}

/* dup2 and dup3 close what `newfd` held, unless `oldfd` is the same or not open. */
static __always_inline int on_dup(void *ctx, long oldfd, long newfd)
{
	struct proc p;

	if (!current_proc(&p) || oldfd == newfd || !file_from_fd(oldfd))
		return 0;
	return on_close_fd(ctx, &p, newfd);
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int tp_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return on_dup(ctx, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int tp_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return on_dup(ctx, ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_close_range")
int tp_close_range(struct trace_event_raw_sys_enter *ctx)
{
	struct fd_walk w = { .why = WALK_RANGE, .traced = true };

	/* CLOSE_RANGE_CLOEXEC only marks the descriptors: exec closes them. */
	if (ctx->args[2] & CLOSE_RANGE_CLOEXEC || !current_proc(&w.p))
		return 0;
	w.first = ctx->args[0];
	w.last = ctx->args[1];
	walk_fds(&w);
	return 0;
}

/*
 * Tracepoint mode: TCP's own release, whatever let the last reference go where no
 * syscall shows it (a call in flight in another thread, a process the socket was
 * passed to, a reset after either). inet_release detaches the struct socket before
 * tcp_close changes the state; a socket closed in TCP_CLOSE is destroyed at once.
 */
static __always_inline bool tcp_detached(const struct sock *sk)
{
	struct socket *sock = sk->sk_socket;

	return !sock || sock->sk != sk;
}

static __always_inline void tcp_released(void *ctx, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_state *st = bpf_map_lookup_elem(&socks, &key);
	struct proc p;

	if (!st)
		return;
	/* Inside inet_release the task letting go is current; an orphan's changes run anywhere. */
	release(ctx, sk, st, sk->sk_socket && current_proc(&p) ? &p : NULL);
}

SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(tp_destroy, struct sock *sk)
{
	tcp_released(ctx, sk);
	return 0;
}

/*
 * fentry and kprobe modes: the kernel releases the socket (inet6_release calls
 * inet_release), whichever way its last reference went: close, dup2 over it,
 * close_range, close-on-exec, exit, io_uring. It runs in the task that let go;
 * when that one is not traced, the CLOSE is the owner's.
 */
static __always_inline int on_release(void *ctx, struct sock *sk)
{
	struct sock_state *st;
	struct sock_kind kind;
	struct proc p;
	bool traced;
	__u64 key = (__u64)sk;

	if (!sk)
		return 0;
	st = bpf_map_lookup_elem(&socks, &key);
	traced = current_proc(&p);
	if (!st) {
		if (!traced || !inet_sock(sk, &kind))
			return 0;
		st = adopt_at_release(sk, &p);
		if (!st)
			return 0;
	}
	release(ctx, sk, st, traced ? &p : NULL);
	return 0;
}

SEC("fentry/inet_release")
int BPF_PROG(fx_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}

SEC("kprobe/inet_release")
int BPF_KPROBE(kp_release, struct socket *sock)
{
	return on_release(ctx, BPF_CORE_READ(sock, sk));
}

/* ---- Deny: cgroup hooks on COMMAND's own cgroup, in every mode ---- */

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

/* A connect (or a datagram sent to an address) in COMMAND's cgroup: 1 lets it through, 0 makes it fail with EPERM. */
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
	e.rport = bpf_ntohs((__u16)ctx->user_port);
	if (family == AF_INET) {
		__u32 a = ctx->user_ip4;

		__builtin_memcpy(e.raddr, &a, 4);
	} else {
		__u32 a[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };

		__builtin_memcpy(e.raddr, a, 16);
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
