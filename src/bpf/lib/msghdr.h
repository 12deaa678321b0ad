/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a send or receive names beside the socket: the peer a datagram is sent to
 * or came from, and the descriptors a unix-domain message passes, from the
 * kernel's msghdr or the syscall's own arguments.
 */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "../sockwatch.h"
#include "addr.h"
#include "compat.h"

/*
 * What a call's message names: a datagram's address and its length (-1: unknown),
 * and its control messages (SCM_RIGHTS descriptors).
 */
struct msg_args {
	__u64 ptr;
	long len;
	__u64 control;
	__u64 controllen;
};

/* Control messages read before giving up: sockets pass descriptors in one. */
#define MAX_CMSGS 4
#define SOL_SOCKET 1
#define SCM_RIGHTS 1

/* The descriptors SCM_RIGHTS messages in a control buffer pass. */
static __always_inline __u32 count_rights(__u64 control, __u64 len, bool user)
{
	struct {
		__u64 len;
		__s32 level;
		__s32 type;
	} h;
	__u64 pos = 0;
	__u32 fds = 0;

	for (int i = 0; i < MAX_CMSGS; i++) {
		if (!control || pos + sizeof(h) > len ||
		    read_addr(&h, sizeof(h), control + pos, user))
			break;
		if (h.len < sizeof(h) || h.len > len - pos)
			break;
		if (h.level == SOL_SOCKET && h.type == SCM_RIGHTS)
			fds += (h.len - sizeof(h)) / sizeof(int);
		pos += (h.len + 7) & ~7ULL;
	}
	return fds;
}

/*
 * The address and control arguments of the syscall we are in, for
 * sendto/sendmsg/recvfrom/recvmsg; none for every other path (write, read,
 * recvmmsg, io_uring). A receive's lengths are what the kernel wrote back, so they
 * are read at syscall exit.
 */
static __always_inline struct msg_args syscall_msg(bool recv)
{
	struct msg_args a = { .len = -1 };
#ifdef NR_SENDTO
	struct pt_regs *regs = user_regs();
	long nr = SYSCALL_NR(regs);
	int len = -1;

	if (nr == (recv ? NR_RECVFROM : NR_SENDTO)) {
		a.ptr = PT_REGS_PARM5_CORE_SYSCALL(regs);
		if (recv)
			bpf_probe_read_user(&len, sizeof(len), (void *)PT_REGS_PARM6_CORE_SYSCALL(regs));
		else
			len = PT_REGS_PARM6_CORE_SYSCALL(regs);
	} else if (nr == (recv ? NR_RECVMSG : NR_SENDMSG)) {
		struct user_msghdr *msg = (void *)PT_REGS_PARM2_CORE_SYSCALL(regs);

		bpf_probe_read_user(&a.ptr, sizeof(a.ptr), &msg->msg_name);
		bpf_probe_read_user(&len, sizeof(len), &msg->msg_namelen);
		bpf_probe_read_user(&a.control, sizeof(a.control), &msg->msg_control);
		bpf_probe_read_user(&a.controllen, sizeof(a.controllen), &msg->msg_controllen);
	}
	a.len = len;
#endif
	return a;
}

/* A datagram's address in a kernel msghdr: the destination on send, the sender on receive. */
static __always_inline struct msg_args msg_peer(struct msghdr *msg)
{
	struct msg_args a = {
		.ptr = (__u64)BPF_CORE_READ(msg, msg_name),
		.len = BPF_CORE_READ(msg, msg_namelen),
	};

	return a;
}

/* A unix-domain send's msghdr: its address, and its control messages (copied into the kernel). */
static __always_inline struct msg_args msg_sent(struct msghdr *msg)
{
	struct msg_args a = msg_peer(msg);

	a.control = (__u64)BPF_CORE_READ(msg, msg_control);
	a.controllen = BPF_CORE_READ(msg, msg_controllen);
	return a;
}

/* No address: a stream, or a connected datagram socket. */
static const struct msg_args no_addr = { .len = -1 };
