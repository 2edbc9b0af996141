/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The enforcer's ABI: every struct and constant shared by the C programs
 * (enforcer.bpf.c) and the Rust loader (src/abi.rs). This file is the only
 * place they are written. build.rs reads it and generates the Rust constants
 * and #[repr(C)] structs, and two layout checks computed from the same field
 * lists: `_Static_assert`s of every size and offset for the C side
 * (abi_layout.h, included at the end) and `assert!`s
 * of the same numbers for the Rust side. A struct whose fields leave
 * implicit padding is refused by build.rs: user space writes map keys whole,
 * and padding bytes would make equal keys differ.
 *
 * What build.rs understands, and all this file may hold besides comments:
 *   #define NAME VALUE  (rust TYPE)      a constant; TYPE is its Rust type
 *   struct NAME { TYPE field; TYPE field[LEN]; };
 * with TYPE one of __u8 __u16 __u32 __u64 __s32 __s64 char and LEN a number
 * or a constant defined above it. Include it after vmlinux.h (it uses the
 * kernel's __u* types).
 */
#ifndef IMGSIGN_ENF_ABI_H
#define IMGSIGN_ENF_ABI_H

#define ENF_SHA256_LEN 32 /* (rust usize) bytes of a SHA-256 digest */
#define ENF_COMM_LEN 16 /* (rust usize) TASK_COMM_LEN */
#define ENF_PATH_LEN 256 /* (rust usize) room for a path, NUL included */

/* What bpf_ima_file_hash() returns for SHA-256 (enum hash_algo). */
#define ENF_HASH_ALGO_SHA256 4 /* (rust i32) */

/* Scope modes (enf_scope.mode, enf_event.mode). */
#define ENF_MODE_ENFORCE 0 /* (rust u8) unknown content is refused */
#define ENF_MODE_AUDIT 1 /* (rust u8) unknown content is allowed and reported */

/* Scope flags (enf_scope.flags). */
#define ENF_FLAG_REPORT_ALLOWED 0x1 /* (rust u8) report allowed decisions too */

/* Hooks (enf_event.hook). */
#define ENF_HOOK_BPRM_CHECK 1 /* (rust u8) bprm_check_security: an exec */
#define ENF_HOOK_MMAP_FILE 2 /* (rust u8) mmap_file with PROT_EXEC */
#define ENF_HOOK_FILE_MPROTECT 3 /* (rust u8) file_mprotect adding PROT_EXEC */

/* Verdicts (enf_event.verdict). */
#define ENF_VERDICT_ALLOW 0 /* (rust u8) known content */
#define ENF_VERDICT_DENY 1 /* (rust u8) unknown content, refused */
#define ENF_VERDICT_AUDIT 2 /* (rust u8) unknown content, allowed: the scope audits */

/* enf_stats slots. */
#define ENF_STAT_EVENTS_DROPPED 0 /* (rust u32) ring buffer full */
#define ENF_STAT_CACHE_HITS 1 /* (rust u32) digest taken from the inode cache */
#define ENF_STAT_CACHE_FILLS 2 /* (rust u32) digest stored in the inode cache */
#define ENF_STAT_MAX 4 /* (rust u32) slots in enf_stats */

/* Value of enf_scopes, keyed by cgroup id (__u64). */
struct enf_scope {
	__u32 scope_id; /* names the digest set (enf_sets) */
	__u8 mode;      /* ENF_MODE_* */
	__u8 flags;     /* ENF_FLAG_* */
	__u16 pad;      /* zero */
};

/* Key of enf_allowed: one digest of one set. */
struct enf_digest_key {
	__u32 set_id;
	__u32 pad; /* zero, so equal keys are equal bytes */
	__u8 digest[ENF_SHA256_LEN];
};

/* One decision, as the programs write it to enf_events. */
struct enf_event {
	__u64 time_ns;         /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;       /* the task's own cgroup */
	__u64 scope_cgroup_id; /* the cgroup whose scope decided */
	__u32 host_tgid;       /* tgid in the initial pid namespace */
	__u32 ns_tgid;         /* tgid in the task's own pid namespace */
	__u32 pid_ns;          /* inode number of the task's pid namespace */
	__u32 mnt_ns;          /* inode number of the task's mount namespace */
	__u32 scope_id;
	__u8 hook;             /* ENF_HOOK_* */
	__u8 verdict;          /* ENF_VERDICT_* */
	__u8 mode;             /* the scope's mode, ENF_MODE_* */
	__u8 pad0;
	__s32 hash_ret;        /* bpf_ima_file_hash(): ENF_HASH_ALGO_SHA256, < 0 = error */
	__s32 path_len;        /* bpf_d_path(): length with the NUL, < 0 = error */
	__u8 comm[ENF_COMM_LEN];
	__u8 digest[ENF_SHA256_LEN]; /* zero unless hash_ret is ENF_HASH_ALGO_SHA256 */
	char path[ENF_PATH_LEN];
};

/* _Static_asserts of the sizes and offsets build.rs computed from the lists
 * above (generated into the build's include directory). */
#include "abi_layout.h"

#endif /* IMGSIGN_ENF_ABI_H */
