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
// Both hash the file in the kernel with bpf_ima_file_hash(), which with no
// IMA policy loaded computes the SHA-256 of the file's current content on
// every call (no cache), so a file rewritten after its scope was loaded is
// judged by its new bytes.
//
// Scope model: the calling task's cgroup id (bpf_get_current_cgroup_id(),
// the cgroup v2 directory's inode number) is looked up in `enf_scopes`. A task
// whose cgroup is not there is untouched: the programs return at once, before
// hashing. A scoped task's digest is looked up in `enf_allowed` under
// (scope id, digest); scope ids let many cgroups share one digest set.
//   enforce mode: unknown digest (or a file that cannot be hashed) -> -EPERM;
//   audit mode:   allowed, and reported as "would deny".
// Only the task's own cgroup counts (not its ancestors): a scope is one leaf
// cgroup, which is what a container runtime creates per container.
//
// Events go to the `enf_events` ring buffer. A full buffer drops the event
// (counted in `enf_stats`); delivery never blocks or changes a verdict.
// Denials and audit findings are always reported; allowed decisions only
// when the scope has ENF_FLAG_REPORT_ALLOWED.
//
// Not yet here (see src/enforcer.rs): file_mprotect, memfd/anonymous exec
// rules, a per-inode verdict cache, pinning, atomic digest-set replacement.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1
#define PROT_EXEC 0x4
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

/* Verdicts (struct enf_event.verdict). */
#define ENF_VERDICT_ALLOW 0
#define ENF_VERDICT_DENY 1
#define ENF_VERDICT_AUDIT 2 /* unknown content, allowed because the scope audits */

/* enf_stats slots. */
#define ENF_STAT_EVENTS_DROPPED 0
#define ENF_STAT_MAX 4

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
	__u32 scope_id;
	__u32 pad;
	__u8 digest[SHA256_LEN];
};

/* One decision, as read by user space. 80 bytes, no implicit padding. */
struct enf_event {
	__u64 cgroup_id;
	__u32 host_tgid;   /* tgid in the initial pid namespace */
	__u32 ns_tgid;     /* tgid in the task's own pid namespace */
	__u32 scope_id;
	__u8 hook;         /* ENF_HOOK_* */
	__u8 verdict;      /* ENF_VERDICT_* */
	__u8 mode;         /* the scope's mode */
	__u8 pad0;
	__s32 hash_ret;    /* bpf_ima_file_hash(): 4 = SHA-256, < 0 = error */
	__u32 pad1;
	__u8 comm[TASK_COMM_LEN];
	__u8 digest[SHA256_LEN]; /* zero unless hash_ret is 4 */
};

_Static_assert(sizeof(struct enf_scope) == 8, "enf_scope layout");
_Static_assert(sizeof(struct enf_digest_key) == 40, "enf_digest_key layout");
_Static_assert(sizeof(struct enf_event) == 80, "enf_event layout");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct enf_scope);
} enf_scopes SEC(".maps");

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

/* The tgid of the current task in its own (innermost) pid namespace. */
static __always_inline __u32 ns_tgid(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
	unsigned int level;
	int nr = 0;

	if (!pid)
		return 0;
	level = BPF_CORE_READ(pid, level);
	/* &pid->numbers[level].nr, with every offset CO-RE relocated
	 * (numbers is a flexible array whose length is level + 1). */
	bpf_probe_read_kernel(&nr, sizeof(nr),
			      (void *)pid + bpf_core_field_offset(struct pid, numbers) +
				      (__u64)level * bpf_core_type_size(struct upid) +
				      bpf_core_field_offset(struct upid, nr));
	return nr;
}

static __always_inline void emit(__u8 hook, __u8 verdict, __u64 cgroup_id,
				 const struct enf_scope *scope, __s32 hash_ret,
				 const __u8 *digest)
{
	struct enf_event *ev;

	ev = bpf_ringbuf_reserve(&enf_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 slot = ENF_STAT_EVENTS_DROPPED;
		__u64 *dropped = bpf_map_lookup_elem(&enf_stats, &slot);

		if (dropped)
			__sync_fetch_and_add(dropped, 1);
		return;
	}
	ev->cgroup_id = cgroup_id;
	ev->host_tgid = bpf_get_current_pid_tgid() >> 32;
	ev->ns_tgid = ns_tgid();
	ev->scope_id = scope->scope_id;
	ev->hook = hook;
	ev->verdict = verdict;
	ev->mode = scope->mode;
	ev->pad0 = 0;
	ev->hash_ret = hash_ret;
	ev->pad1 = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	__builtin_memcpy(ev->digest, digest, SHA256_LEN);
	bpf_ringbuf_submit(ev, 0);
}

/* The verdict for `file` run by the current task: 0 or -EPERM. */
static __always_inline int decide(struct file *file, __u8 hook)
{
	struct enf_digest_key key = {};
	struct enf_scope *found, scope;
	__u64 cgroup_id;
	__s32 hash_ret;
	__u8 verdict;
	int known = 0;

	cgroup_id = bpf_get_current_cgroup_id();
	found = bpf_map_lookup_elem(&enf_scopes, &cgroup_id);
	if (!found)
		return 0; /* not in any scope: untouched */
	/* Copy before sleeping in bpf_ima_file_hash(): a preallocated hash
	 * element removed meanwhile can be reused for another key. */
	scope = *found;

	hash_ret = bpf_ima_file_hash(file, key.digest, SHA256_LEN);
	if (hash_ret == IMA_HASH_ALGO_SHA256) {
		key.scope_id = scope.scope_id;
		known = bpf_map_lookup_elem(&enf_allowed, &key) != NULL;
	} else {
		/* Unhashable, or hashed with another algorithm: unknown. */
		__builtin_memset(key.digest, 0, SHA256_LEN);
	}

	if (known)
		verdict = ENF_VERDICT_ALLOW;
	else if (scope.mode == ENF_MODE_AUDIT)
		verdict = ENF_VERDICT_AUDIT;
	else
		verdict = ENF_VERDICT_DENY;

	if (verdict != ENF_VERDICT_ALLOW || (scope.flags & ENF_FLAG_REPORT_ALLOWED))
		emit(hook, verdict, cgroup_id, &scope, hash_ret, key.digest);

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
