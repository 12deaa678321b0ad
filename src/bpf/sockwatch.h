/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The ABI between sockwatch's BPF program and user space. */
#ifndef SOCKWATCH_H
#define SOCKWATCH_H

#define TASK_COMM_LEN 16
#define MAX_NAMES 8
#define MAX_PIDS 8
#define MAX_PORTS 8
#define MAX_PEERS 8
#define PATH_LEN 256
/* A unix-domain address's sun_path, and the words a path is compared in. */
#define UNIX_PATH_LEN 108
#define PATH_WORDS 14
#define MAX_PATHS 8
/* --expect and --forbid expressions in all, and terms in one. */
#define MAX_RULES 16
#define MAX_TERMS 8
/* -c's rows the kernel adds sends and receives up in; beyond, events go to user space. */
#define MAX_TALLIES 4096

enum event_kind {
	EV_EXEC = 1,
	EV_EXIT = 2,
	EV_LISTEN = 3,
	EV_CONNECT = 4,
	EV_ACCEPT = 5,
	EV_SEND = 6,
	EV_RECV = 7,
	EV_CLOSE = 8,
	EV_FORK = 9,
	EV_DENY = 10,
	EV_RETRANS = 11, /* opt-in */
	EV_RESET = 12,   /* opt-in */
	/* A TCP connection that went on retransmitting after its CLOSE, once the kernel is
	 * done with it: the final count (`retrans`; `value`: how many came after CLOSE). */
	EV_DONE = 13,
};

/* EV_RESET's `value`. */
enum reset_way {
	RESET_SENT = 0,
	RESET_RECEIVED = 1,
};

enum event_flag {
	/* The socket was open before tracing began: totals and lifetime count from first sight. */
	EF_PARTIAL = 1,
	/* Unconnected UDP whose peer the syscall did not name (read(), recv(), sendmmsg()). */
	EF_PEER_UNKNOWN = 2,
	/* CONNECT: the socket was closed before the handshake had an outcome. */
	EF_ABORTED = 4,
	/* EXEC: the path was longer than PATH_LEN and is cut. */
	EF_CUT = 8,
	/* Socket events: the server's end of an accepted connection, whoever holds it. */
	EF_ACCEPTED = 16,
	/* DENY: the call was a datagram send to an address, not a connect(). */
	EF_SENDMSG = 32,
};

/* How a TCP connection ended: whichever of these came first. */
enum tcp_end {
	END_LOCAL_FIN = 1, /* this side closed first, with a FIN */
	END_PEER_FIN = 2,
	END_LOCAL_RST = 3, /* this side reset it (unread data at close, SO_LINGER 0, an abort) */
	END_PEER_RST = 4,
	END_TIMEOUT = 5,   /* the kernel gave up on an unanswered peer (retransmits, keepalives) */
};

/* DENY's `value` when no --allow fitted the call; otherwise the --deny's index. */
enum deny_reason {
	DENY_UNLISTED = -1,
};

/* Why a process is in the `followed` map: descent from COMMAND, or --follow. */
enum followed_by {
	FOLLOWED_FROM_COMMAND = 1,
	FOLLOWED_BY_FLAG = 2,
};

/* Indexes into the per-CPU `counters` array. */
enum counter {
	CTR_LOST = 0,      /* events the ring buffer had no room for */
	CTR_UNTRACKED = 1, /* sockets the socket table had no room for */
	CTR_UNFOLLOWED = 2, /* processes the table of followed processes had no room for */
	CTR_MISSED = 3,    /* tracked sockets whose release no hook saw: no CLOSE */
	CTR_DENIED = 4,    /* connects and sends --deny or --allow refused */
	CTR_UNAUDITED = 5, /* --audit destinations its table had no room for */
	CTR_UNSTASHED = 6, /* calls in progress (and connects of untracked sockets) with no room in their table */
	CTR_UNFINISHED = 7, /* closed connections the table of orphans had no room for */
	CTR_MAX = 8,
};

/*
 * One end of a socket, as the event's `family` says: an IP address in network byte
 * order (IPv4 in the first four bytes, IPv6 in all sixteen) and a port in host
 * order. A unix-domain socket's ends follow the event (struct unix_event).
 */
struct endpoint {
	__u8 addr[16];
	__u16 port;
};

/* Who a process is: what --wide and JSON print beside its pid. */
struct identity {
	__u64 cgroup; /* its cgroup v2 id (the directory's inode number) */
	__u32 uid;    /* its real uid */
	__u32 ppid;   /* its parent's pid */
};

/* One socket or process event. */
struct event {
	__u64 ts_ns;       /* CLOCK_BOOTTIME */
	__s64 value;       /* SEND/RECV bytes, CONNECT -errno, LISTEN backlog, EXIT wait status,
			      EXEC/FORK parent pid, DENY the rule (enum deny_reason),
			      RETRANS segments, RESET enum reset_way */
	__u64 duration_ns; /* CONNECT latency, CLOSE lifetime */
	__u64 sent;        /* CLOSE: bytes sent over the socket's life */
	__u64 received;    /* CLOSE: bytes received */
	__u32 pid;         /* thread-group id */
	__u32 tid;
	char comm[TASK_COMM_LEN]; /* process name: the group leader's comm */
	struct endpoint local;
	struct endpoint remote;
	__u8 kind;     /* enum event_kind */
	__u8 family;   /* AF_INET, AF_INET6, AF_UNIX, or 0 for process events */
	__u8 protocol; /* IPPROTO_TCP, IPPROTO_UDP; AF_UNIX: the socket type (SOCK_STREAM...) */
	__u8 flags;    /* enum event_flag */
	__u16 matched; /* bit i: the event matched rules[i] (an --expect or --forbid) */
	__u8 end;      /* CLOSE of a TCP connection: enum tcp_end; 0 when it never had one */
	__u8 unused;
	__u32 rtt_us;  /* CLOSE with `end`: the smoothed round-trip time */
	__u32 retrans; /* CLOSE with `end`: segments retransmitted over the connection's life */
	__u32 unused2;
	struct identity who; /* of the process the event is charged to; cgroup 0: unknown */
};

/*
 * A unix-domain address: `len` bytes of sun_path, 0 when unnamed. An abstract name
 * starts with a NUL; a filesystem path ends with one.
 */
struct unix_name {
	__u8 len;
	char path[UNIX_PATH_LEN] __attribute__((aligned(8)));
	char unused[PATH_WORDS * 8 - UNIX_PATH_LEN]; /* zero: paths compare as whole words */
};

/* An AF_UNIX socket event: the common part, then both ends' addresses. */
struct unix_event {
	struct event base;
	__u32 peer_pid;  /* the peer's process from its credentials (SO_PEERCRED); 0 unknown */
	__u8 has_remote; /* a peer socket, or the address a datagram named */
	__u8 fds;        /* SEND/RECV: descriptors the message passed (SCM_RIGHTS) */
	__u8 unused[2];
	struct unix_name local;
	struct unix_name remote;
};

/*
 * A --path: a unix-domain address as `struct unix_name` holds it, and the bytes
 * that decide (all of them, or a prefix ending in '/').
 */
struct path_prefix {
	__u64 words[PATH_WORDS];
	__u64 mask[PATH_WORDS];
};

/*
 * A --peer prefix: an address in network byte order (IPv4 in the first word) and
 * the mask of the bits it decides, as four 32-bit words.
 */
struct peer_prefix {
	__u32 addr[4];
	__u32 mask[4];
	__u8 family; /* AF_INET or AF_INET6 */
};

/*
 * What assertion terms test, gathered from an event. A term is a masked compare
 * of the whole key (two, ORed, for `port=`: local or remote), so matching has no
 * branch per term.
 */
struct match_key {
	__u32 addr[4];  /* remote address as `struct peer_prefix` holds it: IPv4-mapped is IPv4 */
	__u64 comm[2];  /* process name */
	__u64 path[PATH_WORDS]; /* AF_UNIX: the peer's address if named, else the socket's own */
	__u32 result;   /* CONNECT: 0, the errno, or MATCH_ABORTED */
	__u16 lport;
	__u16 rport;
	__u8 family;    /* of `addr` */
	__u8 protocol;
	__u8 has;       /* enum match_has */
	__u8 unused[5];
};

/* The fields an event has: a term about a missing field holds neither way. */
enum match_has {
	HAS_SOCKET = 1,
	HAS_PEER = 2,
	HAS_RESULT = 4,
	HAS_PORT = 8, /* an IP socket */
	HAS_PATH = 16, /* a unix-domain socket with a named end */
};

/* `result` of an aborted CONNECT: above every errno. */
enum match_result {
	MATCH_ABORTED = 0x10000,
};

struct rule_term {
	struct match_key mask;
	struct match_key value;
	struct match_key alt_mask; /* a second compare, ORed with the first */
	struct match_key alt_value;
	__u8 has;      /* enum match_has: the fields the term is about */
	__u8 negated;
};

/* An --expect or --forbid: event kinds (bit 1 << kind) and terms that must all hold. */
struct rule {
	__u32 kinds;
	struct rule_term terms[MAX_TERMS]; /* unused ones hold: zero masks, zero values */
};

/*
 * -c: a summary row the kernel adds up sends and receives in, instead of sending
 * each (what user space's summary keys its rows by).
 */
struct tally_key {
	char comm[TASK_COMM_LEN];
	__u64 cgroup; /* the process's identity, as struct identity has it (0: unknown) */
	__u32 uid;
	struct endpoint remote; /* zero without a peer; an accepted socket's port is 0 */
	__u8 family;
	__u8 protocol;
	__u8 peer;     /* 1: the event had a peer */
	__u8 accepted; /* the server's end of an accepted connection */
	__u16 unused[3];
};

struct tally {
	__u64 sent;
	__u64 received;
	__u64 events;
};

/* A destination --audit saw COMMAND's tree reach. */
struct destination {
	__u32 addr[4]; /* as `struct match_key` holds it */
	__u16 port;
	__u8 family;
	__u8 protocol;
	__u8 sendmsg;  /* 1: a datagram sent to it without connect() */
	__u8 unused[3];
};

/*
 * EV_EXEC carries the executed path after the common part. The largest record:
 * every event is built in room of its size (a struct unix_event fits).
 */
struct exec_event {
	struct event base;
	char filename[PATH_LEN];
};

/* The --proto bits. */
enum proto_bit {
	PROTO_TCP = 1,
	PROTO_UDP = 2,
	PROTO_UNIX = 4,
};

#endif /* SOCKWATCH_H */
