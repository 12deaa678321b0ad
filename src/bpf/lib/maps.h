/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Per-socket and per-call state, and the maps that hold it.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "../sockwatch.h"
#include "compat.h"
#include "knobs.h"

/* Emit the ABI types' BTF so the skeleton generates them for user space. */
struct event _event = {};
struct exec_event _exec_event = {};
struct unix_event _unix_event = {};
struct path_prefix _path_prefix = {};
enum proto_bit _proto_bit = PROTO_TCP;
enum event_kind _event_kind = EV_EXEC;
enum event_flag _event_flag = EF_PARTIAL;
enum tcp_end _tcp_end = END_LOCAL_FIN;
enum reset_way _reset_way = RESET_SENT;
enum match_has _match_has = HAS_SOCKET;
enum match_result _match_result = MATCH_ABORTED;
enum counter _counter = CTR_LOST;
enum followed_by _followed_by = FOLLOWED_FROM_COMMAND;
struct peer_prefix _peer_prefix = {};
struct tally_key _tally_key = {};
struct tally _tally = {};

/* A socket's two ends as last reported, for CLOSE after the kernel reset them. */
struct ends {
	struct endpoint local;
	struct endpoint remote;
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
	/*
	 * -c: the owner's sends and receives on this TCP or connected unix-domain socket,
	 * not yet in its row (flush_tally).
	 */
	__u64 tally_sent;
	__u64 tally_received;
	__u64 tally_events;
	/* Its owner's identity, for events charged to it where another task runs. */
	struct identity who;
	char comm[TASK_COMM_LEN] __attribute__((aligned(8))); /* read as two words too */
	__u32 walk_seen;
	/* TCP: the counters as they were when it reached CLOSE (a disconnect zeroes them). */
	__u32 rtt_us;
	__u32 retrans;
	struct ends ends;
	__u8 partial;
	__u8 connected; /* a connect was tried, even one that failed before any handshake */
	/* Its owner let go while others held it: the next user takes it over. */
	__u8 unowned;
	/* The server's end of an accepted connection. */
	__u8 accepted;
	/* TCP: how the connection ended (enum tcp_end), once it has. */
	__u8 end;
	/* rtt_us and retrans are set. */
	__u8 counted;
};
/* No padding: a copy made on the stack is initialized in every byte (the verifier
 * checks that for a caller without CAP_PERFMON). */
_Static_assert(sizeof(struct sock_state) == 168, "struct sock_state has no holes");

/* Its BTF, for user space's sweep of the table at the end (tracepoint mode). */
struct sock_state _sock_state = {};

/*
 * TCP connections their process let go (CLOSE was reported) that the kernel keeps
 * until its last segment is acknowledged or it gives up: their owner and counters
 * as at CLOSE. Retransmits there are the owner's; at the end, a DONE line gives
 * the final count if it grew. Sized at load: an eighth of the socket table.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, struct sock_state);
} orphans SEC(".maps");

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

/*
 * A datagram received on an unconnected socket: the sender is known only at syscall
 * exit. Built in an event slot, which it fills.
 */
struct pending_recv {
	struct unix_event e; /* an IP one uses the common part */
	__u64 uaddr; /* user pointer the kernel writes the sender to */
};

_Static_assert(sizeof(struct pending_recv) <= sizeof(struct exec_event), "a slot holds it");
_Static_assert(sizeof(struct unix_event) <= sizeof(struct exec_event), "a slot holds it");

/*
 * SCM_RIGHTS descriptors a thread's receive is taking in, from where the kernel
 * installs them to the receive's return (fentry and kprobe modes). Looked up only
 * once any was noted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} rights_in SEC(".maps");

bool rights_seen = false;

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
 * Room for events off the stack: an EXEC event, too large for it, and the others,
 * built there or copied there for match_event() (see take_slot()). One of those
 * per nesting level: a program in a softirq can interrupt one in a process on
 * the same CPU between building an event and sending it.
 */
#define MAX_NESTING 4
enum { SLOT_EXEC = 0, SLOT_EVENT = 1 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOT_EVENT + MAX_NESTING);
	__type(key, __u32);
	__type(value, struct exec_event);
} scratch SEC(".maps");

/* The event slots in use on this CPU, innermost last. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nesting SEC(".maps");

/* The key match_event() builds, one per slot: off the stack, which its callers nearly fill. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLOT_EVENT + MAX_NESTING);
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

/* -c: sends and receives added up per summary row (knobs.h's `tallied`). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_TALLIES);
	__type(key, struct tally_key);
	__type(value, struct tally);
} tallies SEC(".maps");

/*
 * -c: the unix-domain addresses of summary rows, under the 64-bit hash that stands
 * for them in a row's key (unix_row_end). Never deleted: user space reads them at the end.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TALLIES);
	__type(key, __u64);
	__type(value, struct unix_name);
} unix_ends SEC(".maps");

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
 * only its start and owner, not the socket's totals. Every entry goes at the
 * connect's outcome; one that finds no room is counted (CTR_UNSTASHED).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
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
 * Processes whose exit was handled (EXIT reported, descriptors walked), with their
 * start time (so a reused pid is a new process): two threads exiting at once can
 * both find the process dead.
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
