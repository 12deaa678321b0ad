/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Constants the kernel headers do not carry, and what differs by architecture
 * and kernel version.
 * Part of sockwatch.bpf.c, which includes every header once, in order.
 */
#pragma once

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
/* Sockets a skipped hook run may have missed (an LRU: the oldest go first). */
#define MAX_SKIPPED 16384
/* Sockets one exec can let go by close-on-exec and still report; more count as missed. */
#define MAX_EXEC_CLOSES 8

/* x86-64's syscall numbers: vmlinux/ holds x86-64's types only. */
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47
#define SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
