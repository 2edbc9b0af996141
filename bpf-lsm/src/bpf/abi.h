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
#define ENF_MAX_CGROUP_LEVEL 32 /* (rust usize) cgroup levels searched for a scope: 0 (the root) to 31 */

/* What bpf_ima_file_hash() returns for SHA-256 (enum hash_algo). */
#define ENF_HASH_ALGO_SHA256 4 /* (rust i32) */

/* Scope modes (enf_scope.mode, enf_event.mode). */
#define ENF_MODE_ENFORCE 0 /* (rust u8) unknown content is refused */
#define ENF_MODE_AUDIT 1 /* (rust u8) unknown content is allowed and reported */

/* Scope flags (enf_scope.flags). */
#define ENF_FLAG_REPORT_ALLOWED 0x1 /* (rust u8) report allowed decisions too */
#define ENF_FLAG_STRICT 0x2 /* (rust u8) strict profile: no anonymous executable memory, no io_uring */
#define ENF_FLAG_REMOTE_FS 0x4 /* (rust u8) allow code from FUSE, NFS, 9p, CIFS, ceph */

/* Hooks (enf_event.hook). */
#define ENF_HOOK_BPRM_CHECK 1 /* (rust u8) bprm_check_security: an exec */
#define ENF_HOOK_MMAP_FILE 2 /* (rust u8) mmap_file with PROT_EXEC */
#define ENF_HOOK_FILE_MPROTECT 3 /* (rust u8) file_mprotect adding PROT_EXEC */
#define ENF_HOOK_FILE_OPEN 4 /* (rust u8) file_open: a write open of a sealed file, /proc/PID/mem */
#define ENF_HOOK_INODE_SETATTR 5 /* (rust u8) inode_setattr: truncation of a sealed file */
#define ENF_HOOK_PTRACE 6 /* (rust u8) ptrace_access_check, ptrace_traceme */
#define ENF_HOOK_ANON_INODE 7 /* (rust u8) inode_init_security_anon: userfaultfd, io_uring */
#define ENF_HOOK_BPF 8 /* (rust u8) bpf(): the syscall, or the enforcer's maps and pins */
#define ENF_HOOK_KERNEL_LOAD 9 /* (rust u8) kernel_read_file, kernel_load_data: modules, firmware, kexec */
#define ENF_HOOK_TASK_ALLOC 10 /* (rust u8) task_alloc: clone3(CLONE_INTO_CGROUP) */
#define ENF_HOOK_CREDS 11 /* (rust u8) bprm_creds_from_file: privileges an exec gains */
#define ENF_HOOK_PIN 12 /* (rust u8) inode_unlink, inode_rename, inode_rmdir of the enforcer's pins */

/* Verdicts (enf_event.verdict). */
#define ENF_VERDICT_ALLOW 0 /* (rust u8) known content */
#define ENF_VERDICT_DENY 1 /* (rust u8) unknown content, refused */
#define ENF_VERDICT_AUDIT 2 /* (rust u8) unknown content, allowed: the scope audits */

/* Why a decision was not a plain digest lookup (enf_event.reason). */
#define ENF_REASON_DIGEST 0 /* (rust u8) the digest was (or was not) in the scope's set */
#define ENF_REASON_WRITERS 1 /* (rust u8) the file had writers at exec or mapping */
#define ENF_REASON_SEALED 2 /* (rust u8) a write or truncation of a file a scope judged */
#define ENF_REASON_MEMFD 3 /* (rust u8) memfd or shared memory not sealed against writes */
#define ENF_REASON_WRITE_EXEC 4 /* (rust u8) W+X file mapping, or write added to an executable one */
#define ENF_REASON_PATCH 5 /* (rust u8) /proc/PID/mem, ptrace, userfaultfd */
#define ENF_REASON_STRICT 6 /* (rust u8) anonymous executable memory or io_uring under strict */
#define ENF_REASON_REMOTE_FS 7 /* (rust u8) code from FUSE, NFS, 9p, CIFS, ceph */
#define ENF_REASON_PRIVILEGE 8 /* (rust u8) setuid/setgid/capabilities not as signed */
#define ENF_REASON_ESCAPE 9 /* (rust u8) leaving the scope (sticky scope, clone into cgroup) */
#define ENF_REASON_SELF 10 /* (rust u8) the enforcer's own programs, maps, pins; bpf() */
#define ENF_REASON_KERNEL_LOAD 11 /* (rust u8) a module, firmware or kexec image */
#define ENF_REASON_MPROTECT 12 /* (rust u8) a file mapping made executable after its mapping */

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

/* Privilege shapes of an exec (bits of a shape s; enf_privs.shapes has bit
 * 1 << s set when an exec of shape s is allowed). */
#define ENF_PRIV_SETUID 0x1 /* (rust u8) the file is setuid, or the exec changes the effective uid */
#define ENF_PRIV_SETGID 0x2 /* (rust u8) the file is setgid, or the exec changes the effective gid */
#define ENF_PRIVS_CHECK_SALT 0x50524956 /* (rust u32) mixed into enf_privs.check */

/* Value of enf_allowed: the privileges an exec of the digest may have, from
 * every signed entry with that digest (enforcer/privs.h). */
struct enf_privs {
	__u64 caps;   /* capabilities an exec may gain: union of the entries' security.capability */
	__u32 check;  /* privs_check_word() of the key, against a reused element (privs.h) */
	__u8 shapes;  /* bit 1 << s: shape s (ENF_PRIV_* bits) is that of an entry or fewer */
	__u8 pad[3];  /* zero */
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
	__u8 reason;           /* ENF_REASON_* */
	__s32 hash_ret;        /* bpf_ima_file_hash(): ENF_HASH_ALGO_SHA256, < 0 = error */
	__s32 path_len;        /* bpf_d_path(): length with the NUL, < 0 = error */
	__u8 comm[ENF_COMM_LEN];
	__u8 digest[ENF_SHA256_LEN]; /* zero unless hash_ret is ENF_HASH_ALGO_SHA256 */
	char path[ENF_PATH_LEN];
	/* The scope's counters (enf_scope_stats) as this event left them: a
	 * reader that sees scope_seq jump knows how many of the scope's events
	 * were lost. Read without a lock: the verdict counters may be a decision
	 * or two ahead of or behind scope_seq. */
	__u64 scope_seq;       /* this event's number among the scope's events (from 0) */
	__u64 scope_allowed;
	__u64 scope_denied;
	__u64 scope_audited;
	__u64 scope_dropped;
};

/* Value of enf_scope_stats, keyed by the cgroup id of a scope (0: events of
 * tasks in no scope, such as a write refused on a sealed file). */
struct enf_scope_stats {
	__u64 allowed; /* decisions that allowed known content (exec, mapping) */
	__u64 denied;  /* refusals */
	__u64 audited; /* findings let through in audit mode */
	__u64 dropped; /* events lost: the ring buffer was full */
	__u64 seq;     /* events emitted or dropped so far: the next one's scope_seq */
};

/* Value of enf_guard (one element): who may remove the enforcer's pins, and
 * where they are. Written by the loader; read by the self-protection
 * programs (enforcer/guard.h). */
struct enf_guard {
	__u64 pin_ino;    /* inode number of the pin directory on bpffs; 0 = not pinned */
	__u32 pin_dev;    /* its super block's s_dev (kernel dev_t: major << 20 | minor) */
	__u32 owner_tgid; /* the registered owner (daemon) */
};

/* The pinned layout: what a pin directory holds, and in which format. Bump
 * ENF_PIN_LAYOUT whenever the key or value layout (type, key and value size
 * or meaning) of a pinned map changes, or the set of pins changes. The pinned
 * maps are enf_scopes, enf_sets, enf_allowed, enf_events, enf_stats,
 * enf_guard, enf_identity (here and in enforcer/maps.h, enforcer/guard.h),
 * and the program state shared across an upgrade, enf_seals (struct enf_seal,
 * enforcer/seal.h) and enf_task_scope (struct enf_sticky, enforcer/scope.h).
 * The loader (src/enforcer/takeover.rs) shares every pinned map of a layout
 * it knows with the programs it loads: this number is the one place that
 * says those maps changed. Layout 1 is the pins of the builds before
 * identities (no enf_identity, enf_seals or enf_task_scope pins). */
#define ENF_PIN_LAYOUT 3 /* (rust u32) the layout this build pins */
#define ENF_PIN_LAYOUT_2 2 /* (rust u32) layout 2: layout 3 without enf_scope_stats */
#define ENF_PIN_LAYOUT_LEGACY 1 /* (rust u32) the layout pinned without an identity */

/* Value of enf_identity (one element, pinned, read by user space only):
 * which layout and which build of the programs a pin directory holds. Its
 * own layout never changes, whatever ENF_PIN_LAYOUT says, so any build can
 * read any later build's identity and refuse what it does not know. */
struct enf_identity {
	__u32 layout;                   /* ENF_PIN_LAYOUT of the build that pinned */
	__u32 pad;                      /* zero */
	__u8 build[ENF_SHA256_LEN];     /* SHA-256 of the loaded BPF object */
};

/* _Static_asserts of the sizes and offsets build.rs computed from the lists
 * above (generated into the build's include directory). */
#include "abi_layout.h"

#endif /* IMGSIGN_ENF_ABI_H */
