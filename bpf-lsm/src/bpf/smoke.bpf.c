// SPDX-License-Identifier: GPL-2.0
//
// Lab smoke program: NOT the imgsign enforcer.
//
// A sleepable BPF-LSM program on bprm_check_security that proves, inside a
// real kernel, the two things the enforcer will stand on:
//   1. bpf_ima_file_hash() gives the SHA-256 of the file being executed;
//      the program records it per inode in `smoke_seen` so user space can
//      compare it with its own hash of the file;
//   2. returning -EPERM from the hook refuses the exec; the program does so
//      when the digest is in `smoke_deny`, a set filled by user space.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1
#define SHA256_LEN 32
#define IMA_HASH_ALGO_SHA256 4 /* enum hash_algo: HASH_ALGO_SHA256 */

char LICENSE[] SEC("license") = "GPL";

struct smoke_digest {
	__u8 bytes[SHA256_LEN];
};

/* What the program saw for one inode: the hash algorithm the kernel
 * reported (4 = SHA-256, negative = error) and the digest. */
struct smoke_seen {
	__s64 algo;
	__u8 digest[SHA256_LEN];
	__u32 denied;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct smoke_digest);
	__type(value, __u8);
} smoke_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 256);
	__type(key, __u64); /* inode number */
	__type(value, struct smoke_seen);
} smoke_seen SEC(".maps");

SEC("lsm.s/bprm_check_security")
int BPF_PROG(smoke_bprm_check, struct linux_binprm *bprm, int ret)
{
	struct smoke_seen seen = {};
	struct smoke_digest key = {};
	__u64 ino;

	/* Respect an earlier denial by another program on this hook. */
	if (ret != 0)
		return ret;

	seen.algo = bpf_ima_file_hash(bprm->file, seen.digest, SHA256_LEN);
	ino = BPF_CORE_READ(bprm, file, f_inode, i_ino);

	if (seen.algo == IMA_HASH_ALGO_SHA256) {
		__builtin_memcpy(key.bytes, seen.digest, SHA256_LEN);
		if (bpf_map_lookup_elem(&smoke_deny, &key))
			seen.denied = 1;
	}
	bpf_map_update_elem(&smoke_seen, &ino, &seen, BPF_ANY);

	return seen.denied ? -EPERM : 0;
}
