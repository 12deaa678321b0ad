/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Constants the kernel headers do not carry, and what differs by architecture
 * and kernel version.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"

#define AF_UNSPEC 0
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define MSG_PEEK 0x2
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define SOCK_SEQPACKET 5
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define ENOENT 2
#define EINTR 4
#define EPIPE 32
#define ECONNABORTED 103
#define ECONNRESET 104
#define EISCONN 106
#define EALREADY 114
#define EINPROGRESS 115
#define ERESTARTSYS 512 /* kernel-internal restart codes are 512..516 */
#define CLOSE_RANGE_CLOEXEC 4
#define SOCK_BINDPORT_LOCK 8
/* The socket table's default size; user space sets --max-sockets before load. */
#define MAX_SOCKS 65536
/* Sockets a skipped hook run may have missed (an LRU: the oldest go first). */
#define MAX_SKIPPED 16384
/* Sockets one exec can let go by close-on-exec and still report; more count as missed. */
#define MAX_EXEC_CLOSES 8

/*
 * struct file before 6.13, whose 90ee6ed776c0 ("fs: port files to file_ref")
 * turned f_count into f_ref: file_refs() reads whichever the kernel has (CO-RE).
 */
struct file___pre613 {
	atomic_long_t f_count;
};

/*
 * Elsewhere, by kernel version (user space decides, from BTF, before load):
 * - tcp_recvmsg and udp(v6)_recvmsg took `nonblock` before 5.19's ec095263a965
 *   ("net: remove noblock parameter from recvmsg() entities"): `recv_has_nonblock`
 *   (knobs.h) and the `_nb` receive programs (probes.rs, Only::RecvNonblock);
 * - tcp_sendpage and udp_sendpage exist before 6.5: their programs load only
 *   where the kernel has them (Only::WithFunction);
 * - the sock:sock_send_length and sock:sock_recv_length tracepoints, which the
 *   tracepoint mode needs, are 6.3's;
 * - bpf_get_current_task_btf is 5.11's: current_proc() falls back to probe reads.
 */

/* x86-64's syscall numbers: vmlinux/ holds x86-64's types only. */
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
