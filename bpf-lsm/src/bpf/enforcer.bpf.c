// SPDX-License-Identifier: GPL-2.0
//
// imgsign enforcer: content-addressed exec control per cgroup scope.
//
// Two sleepable BPF-LSM programs decide, for tasks in a scope, whether the
// bytes about to run are bytes the scope allows:
//   - enf_bprm_check on bprm_check_security: every execve/execveat;
//   - enf_mmap_file on mmap_file: every mapping of a file with PROT_EXEC
//     (the ELF loader's own mappings, ld.so's mappings of libraries,
//     `ld.so /path/prog`, LD_PRELOAD, dlopen).
// (Hooks in events: 1 bprm_check_security, 2 mmap_file, 3 file_mprotect.)
// Both hash the file in the kernel with bpf_ima_file_hash(), which with no
// IMA policy loaded computes the SHA-256 of the file's current content on
// every call (no cache), so a file rewritten after its scope was loaded is
// judged by its new bytes.
//
// Scope model: a scope is a cgroup v2 subtree, keyed in `enf_scopes` by the
// cgroup id of its top (the directory's inode number). A task belongs to the
// scope of its nearest ancestor cgroup (itself included) that is a key there;
// the root cgroup as a scope covers the whole node. A task under no scope is
// untouched: the programs return before hashing. Several cgroups may share
// one scope id, which names the digest set.
//
// Digest sets: `enf_sets` maps a scope id to its current set id (a
// generation), and `enf_allowed` holds (set id, digest) pairs. Replacing the
// digests a cgroup allows never opens a window of a mixed or empty set, in
// either of two ways user space may use:
//   - same scope id: fill a new set id, repoint `enf_sets` (one map update:
//     readers see the old id or the new one), then delete the old pairs;
//   - fresh scope id: fill it, switch the cgroup's `enf_scopes` entry to it
//     (one map update), then delete the old scope's pairs.
// A decision reads the scope and set before hashing (which sleeps) and looks
// the digest up after. If that lookup misses, the program reads the task's
// scope entry and the scope's set id again and, if either changed, looks
// again. Every replacement switches before it deletes, so a decision that
// missed because old pairs were deleted sees the switch on its second look.
// (On x86 loads are not reordered with loads, which this argument uses.) A
// miss counts only when nothing changed between two looks.
//   enforce mode: unknown digest (or a file that cannot be hashed) -> -EPERM;
//   audit mode:   allowed, and reported as "would deny".
//
// Events go to the `enf_events` ring buffer. A full buffer drops the event
// (counted in `enf_stats`); delivery never blocks or changes a verdict.
// Denials and audit findings are always reported; allowed decisions only
// when the scope has ENF_FLAG_REPORT_ALLOWED.
//
// A third program, enf_file_mprotect (not sleepable, so it cannot hash),
// refuses making a non-executable file mapping executable in a scope.
//
// The loader pins the links and every map under bpffs, so enforcement
// outlives it (src/enforcer.rs). Not yet here: a per-inode verdict cache.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define EOPNOTSUPP 95
#define SHA256_LEN 32
#define TASK_COMM_LEN 16
#define IMA_HASH_ALGO_SHA256 4 /* enum hash_algo: HASH_ALGO_SHA256 */

/* Scope modes (struct enf_scope.mode). */
#define ENF_MODE_ENFORCE 0
#define ENF_MODE_AUDIT 1

/* Scope flags (struct enf_scope.flags). */
#define ENF_FLAG_REPORT_ALLOWED 0x1

/* Hooks (struct enf_event.hook). */
#define ENF_HOOK_BPRM_CHECK 1
#define ENF_HOOK_MMAP_FILE 2
#define ENF_HOOK_FILE_MPROTECT 3

/* Verdicts (struct enf_event.verdict). */
#define ENF_VERDICT_ALLOW 0
#define ENF_VERDICT_DENY 1
#define ENF_VERDICT_AUDIT 2 /* unknown content, allowed because the scope audits */

/* enf_stats slots. */
#define ENF_STAT_EVENTS_DROPPED 0
#define ENF_STAT_MAX 4

/* Deepest cgroup level searched for a scope (the root is level 0). */
#define ENF_MAX_CGROUP_LEVEL 32
/* Lookups of a digest while its scope's set is being replaced. */
#define ENF_SET_ATTEMPTS 3

char LICENSE[] SEC("license") = "GPL";

/* Value of enf_scopes, keyed by cgroup id (__u64). 8 bytes. */
struct enf_scope {
	__u32 scope_id;
	__u8 mode;
	__u8 flags;
	__u16 pad;
};

/* Key of enf_allowed. 40 bytes, no implicit padding. */
struct enf_digest_key {
	__u32 set_id;
	__u32 pad;
	__u8 digest[SHA256_LEN];
};

#define ENF_PATH_LEN 256

/* One decision, as read by user space. 360 bytes, no implicit padding. */
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
	__u8 mode;             /* the scope's mode */
	__u8 pad0;
	__s32 hash_ret;        /* bpf_ima_file_hash(): 4 = SHA-256, < 0 = error */
	__s32 path_len;        /* bpf_d_path(): length with the NUL, < 0 = error */
	__u8 comm[TASK_COMM_LEN];
	__u8 digest[SHA256_LEN]; /* zero unless hash_ret is 4 */
	char path[ENF_PATH_LEN];
};

_Static_assert(sizeof(struct enf_scope) == 8, "enf_scope layout");
_Static_assert(sizeof(struct enf_digest_key) == 40, "enf_digest_key layout");
_Static_assert(sizeof(struct enf_event) == 360, "enf_event layout");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct enf_scope);
} enf_scopes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);   /* scope id */
	__type(value, __u32); /* set id */
} enf_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct enf_digest_key);
	__type(value, __u8);
} enf_allowed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} enf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} enf_stats SEC(".maps");

/* The current task's tgid and pid namespace inode, as seen from its own
 * (innermost) pid namespace. */
static __always_inline void task_pid_ns(__u32 *ns_tgid, __u32 *pid_ns)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
	struct upid upid = {};
	unsigned int level;

	*ns_tgid = 0;
	*pid_ns = 0;
	if (!pid)
		return;
	level = BPF_CORE_READ(pid, level);
	/* pid->numbers[level], with every offset CO-RE relocated (numbers is
	 * a flexible array whose length is level + 1). */
	if (bpf_probe_read_kernel(&upid, sizeof(upid),
				  (void *)pid + bpf_core_field_offset(struct pid, numbers) +
					  (__u64)level * bpf_core_type_size(struct upid)))
		return;
	*ns_tgid = upid.nr;
	*pid_ns = BPF_CORE_READ(upid.ns, ns.inum);
}

static __always_inline void emit(struct file *file, __u8 hook, __u8 verdict,
				 __u64 cgroup_id, __u64 scope_cgroup_id,
				 const struct enf_scope *scope, __s32 hash_ret,
				 const __u8 *digest)
{
	struct task_struct *task;
	struct enf_event *ev;

	ev = bpf_ringbuf_reserve(&enf_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 slot = ENF_STAT_EVENTS_DROPPED;
		__u64 *dropped = bpf_map_lookup_elem(&enf_stats, &slot);

		if (dropped)
			__sync_fetch_and_add(dropped, 1);
		return;
	}
	task = bpf_get_current_task_btf();
	ev->time_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cgroup_id;
	ev->scope_cgroup_id = scope_cgroup_id;
	ev->host_tgid = bpf_get_current_pid_tgid() >> 32;
	task_pid_ns(&ev->ns_tgid, &ev->pid_ns);
	ev->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	ev->scope_id = scope->scope_id;
	ev->hook = hook;
	ev->verdict = verdict;
	ev->mode = scope->mode;
	ev->pad0 = 0;
	ev->hash_ret = hash_ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	__builtin_memcpy(ev->digest, digest, SHA256_LEN);
	if (file) {
		/* f_path is const in newer kernels; bpf_d_path only reads it. */
		ev->path_len = bpf_d_path((struct path *)&file->f_path, ev->path,
					  sizeof(ev->path));
		if (ev->path_len < 0)
			ev->path[0] = 0;
	} else {
		/* Non-sleepable hooks may not call bpf_d_path. */
		ev->path_len = -EOPNOTSUPP;
		ev->path[0] = 0;
	}
	bpf_ringbuf_submit(ev, 0);
}

/* The scope of the current task: its nearest ancestor cgroup (itself
 * included) that is a key of enf_scopes. Copies the value (a preallocated
 * hash element removed later can be reused for another key while the
 * program sleeps) and the scope's cgroup id; returns 0 if there is none. */
static __always_inline int find_scope(struct enf_scope *scope, __u64 *scope_cgroup_id)
{
	struct enf_scope *found;
	__u64 id;
	int level, hit = 0;

	/* Level 0 is the root; an ancestor id of 0 means the task's own
	 * cgroup is above that level. The deepest match wins. */
	for (level = 0; level < ENF_MAX_CGROUP_LEVEL; level++) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			break;
		found = bpf_map_lookup_elem(&enf_scopes, &id);
		if (found) {
			*scope = *found;
			*scope_cgroup_id = id;
			hit = 1;
		}
	}
	return hit;
}

/* Whether the digest set in force for the current task holds key->digest
 * (see the replacement argument at the top). On a miss it looks again, at
 * most ENF_SET_ATTEMPTS times, as long as the task's scope entry or the
 * scope's set id changed since the previous look; `scope` and
 * `scope_cgroup_id` end up describing the scope of the last look. */
static __always_inline int allowed(struct enf_scope *scope, __u64 *scope_cgroup_id,
				   struct enf_digest_key *key)
{
	__u32 *set, set_id, last_scope = 0, last_set = 0;
	int attempt;

	for (attempt = 0; attempt < ENF_SET_ATTEMPTS; attempt++) {
		if (attempt > 0 && !find_scope(scope, scope_cgroup_id))
			return 0; /* the scope went away meanwhile: still unknown */
		set = bpf_map_lookup_elem(&enf_sets, &scope->scope_id);
		set_id = set ? *(volatile __u32 *)set : 0;
		if (attempt > 0 && scope->scope_id == last_scope && set_id == last_set)
			return 0; /* nothing changed and still missing: unknown */
		last_scope = scope->scope_id;
		last_set = set_id;
		if (!set)
			continue; /* no set (yet): nothing allowed */
		key->set_id = set_id;
		if (bpf_map_lookup_elem(&enf_allowed, key))
			return 1;
	}
	return 0;
}

/* The verdict for `file` run by the current task: 0 or -EPERM. */
static __always_inline int decide(struct file *file, __u8 hook)
{
	struct enf_digest_key key = {};
	struct enf_scope scope = {};
	__u64 cgroup_id, scope_cgroup_id = 0;
	__s32 hash_ret;
	__u8 verdict;
	int known = 0;

	if (!find_scope(&scope, &scope_cgroup_id))
		return 0; /* not in any scope: untouched */
	cgroup_id = bpf_get_current_cgroup_id();

	hash_ret = bpf_ima_file_hash(file, key.digest, SHA256_LEN);
	if (hash_ret == IMA_HASH_ALGO_SHA256)
		known = allowed(&scope, &scope_cgroup_id, &key);
	else
		/* Unhashable, or hashed with another algorithm: unknown. */
		__builtin_memset(key.digest, 0, SHA256_LEN);

	if (known)
		verdict = ENF_VERDICT_ALLOW;
	else if (scope.mode == ENF_MODE_AUDIT)
		verdict = ENF_VERDICT_AUDIT;
	else
		verdict = ENF_VERDICT_DENY;

	if (verdict != ENF_VERDICT_ALLOW || (scope.flags & ENF_FLAG_REPORT_ALLOWED))
		emit(file, hook, verdict, cgroup_id, scope_cgroup_id, &scope, hash_ret,
		     key.digest);

	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}

SEC("lsm.s/bprm_check_security")
int BPF_PROG(enf_bprm_check, struct linux_binprm *bprm, int ret)
{
	/* Respect an earlier denial by another program on this hook. */
	if (ret != 0)
		return ret;
	return decide(bprm->file, ENF_HOOK_BPRM_CHECK);
}

SEC("lsm.s/mmap_file")
int BPF_PROG(enf_mmap_file, struct file *file, unsigned long reqprot,
	     unsigned long prot, unsigned long flags, int ret)
{
	if (ret != 0)
		return ret;
	/* Anonymous mappings and mappings without execute permission are
	 * not decided here. `prot` is what will be applied (it includes
	 * READ_IMPLIES_EXEC), not only what was asked for. */
	if (!file || !(prot & PROT_EXEC))
		return 0;
	return decide(file, ENF_HOOK_MMAP_FILE);
}

/* mprotect(2) and pkey_mprotect(2): this hook may not sleep, so it cannot
 * hash. It refuses, in a scope, making a file mapping executable that was
 * not executable: such a mapping was never checked by enf_mmap_file (which
 * judges only mappings created with PROT_EXEC), and the pages may even be
 * private copies written since. This is stricter than "never verified": a
 * checked mapping whose PROT_EXEC was dropped cannot get it back either
 * (telling the two apart needs per-mapping state, still to come). Turning
 * anonymous memory executable (JITs) is not judged here. */
SEC("lsm/file_mprotect")
int BPF_PROG(enf_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	__u8 digest[SHA256_LEN] = {};
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;
	__u8 verdict;

	if (ret != 0)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	if (BPF_CORE_READ(vma, vm_flags) & VM_EXEC)
		return 0; /* already executable: nothing new */
	if (!BPF_CORE_READ(vma, vm_file))
		return 0; /* anonymous memory */
	if (!find_scope(&scope, &scope_cgroup_id))
		return 0;

	verdict = scope.mode == ENF_MODE_AUDIT ? ENF_VERDICT_AUDIT : ENF_VERDICT_DENY;
	emit(NULL, ENF_HOOK_FILE_MPROTECT, verdict, bpf_get_current_cgroup_id(),
	     scope_cgroup_id, &scope, -EOPNOTSUPP, digest);
	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}
