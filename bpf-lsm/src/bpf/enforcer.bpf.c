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
// Both take the SHA-256 of the file's current content: from the per-inode
// digest cache below when it is provably current, else from
// bpf_ima_file_hash(), which with no IMA policy loaded hashes the file on
// every call. A file rewritten after its scope was loaded is judged by its
// new bytes.
//
// Every struct and constant user space shares with these programs (scope
// entries, digest keys, events, modes, hooks, verdicts, stat slots) is in
// abi.h; the Rust loader's side is generated from it by build.rs.
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
// The loader (src/enforcer/mod.rs) pins the links and every map under bpffs,
// so enforcement outlives it.
//
// ---------------------------------------------------------------------------
// Per-inode digest cache (what makes a warm exec cost no hash)
// ---------------------------------------------------------------------------
// `enf_inode_cache` (BPF_MAP_TYPE_INODE_STORAGE) holds, per in-memory inode,
// { write_gen, seq, cached, digest }. It caches the DIGEST of the content,
// not a verdict: every decision still looks the digest up in the scope's set
// in force, so replacing a set or moving a cgroup needs no invalidation.
//
// Claim: a digest taken from the cache equals the SHA-256 of the inode's
// content at the time of the decision (for exec, where exec holds
// deny_write_access, exactly; for mmap_file up to the same write-after-check
// window an uncached hash has).
//
// 1. Every content change of a regular file on the whitelisted filesystems
//    (below) goes through one of:
//    a. a struct file with FMODE_WRITE (write, pwrite, writev, splice,
//       copy_file_range, fallocate, ftruncate, io_uring, reflink
//       destinations, MAP_SHARED|PROT_WRITE mappings, which keep that file
//       alive; dedupe may target a read-only fd, but only replaces ranges
//       with identical bytes). Such a file is made by do_dentry_open(), which takes write
//       access (i_writecount++, an atomic RMW) BEFORE it calls
//       security_file_open(): so while such a file exists i_writecount > 0,
//       and after it was made `write_gen` was bumped (enf_file_open, with
//       __sync_fetch_and_add). The same holds for files the kernel opens for
//       itself (filp_open, kernel_file_open, nfsd, ksmbd, overlayfs opening
//       its real upper inode, coredumps, swapon, loop devices).
//    b. notify_change() with ATTR_SIZE (truncate(2), open(O_TRUNC) even
//       with O_RDONLY, ftruncate, and truncation done for another layer:
//       nfsd SETATTR, overlayfs truncating its upper inode, ksmbd), which
//       calls security_inode_setattr() before the size changes: enf_inode_setattr
//       bumps `write_gen` there. (path_truncate alone would miss nfsd's and
//       overlayfs's truncations of a real inode, and on 6.2+ open(O_TRUNC)
//       goes through file_truncate instead; inode_setattr sees all of them.
//       enf_file_open also bumps on O_TRUNC, which do_dentry_open strips
//       only after security_file_open.)
//    Rename of another file onto the path, or a copy replacing it, is a
//    different inode: it has its own (empty) storage. An inode evicted from
//    memory loses its storage: the next decision hashes again.
//    Pseudo files that never pass through do_dentry_open (memfd_create, SysV
//    shm: shmem files made by alloc_file_pseudo, writable without a write
//    count) are unlinked (i_nlink == 0) and are never cached; nor is any
//    other inode with i_nlink == 0, nor anything but a regular file.
// 2. Filesystems: only where every content change of an inode goes through
//    1a/1b on that very inode, by s_magic: ext4 (and ext2/3) 0xEF53, xfs,
//    tmpfs, ramfs, btrfs. NOT overlayfs (writes reach its real lower/upper
//    inodes, not the overlay inode whose file exec sees), nor NFS, FUSE, 9p,
//    CIFS (content changes on another machine or in a user-space server).
//    Overlay-backed containers are therefore hashed at every exec until the
//    cache learns to key on the real inode (next step). Out of scope, as for
//    IMA: writes to the block device under a mounted filesystem, and kernel
//    bugs that change page-cache pages without a writer.
// 3. Fill (after a miss): g0 = write_gen (atomic RMW: a full barrier), then
//    i_writecount; if it is > 0 (writers may exist) the cache is neither
//    used nor filled. Hash. Then i_writecount again (must be <= 0) and
//    write_gen again (must still be g0), then store {digest, cached = g0+1}.
//    A writer does i_writecount++ ; write_gen++ ; writes ; i_writecount--.
//    If it wrote bytes the hash read, its i_writecount++ precedes them, so the
//    second i_writecount read either sees it (> 0: no fill) or sees its
//    decrement, in which case the write_gen read after it sees its bump
//    (!= g0: no fill), unless the bump was already in g0, in which case
//    the first i_writecount read saw it held (> 0: no cache at all). A
//    writer whose bump comes after the fill's check makes write_gen != cached
//    - 1 for every later use.
//    The programs bumping write_gen look the storage up without creating it
//    (so writes to files never executed cost no allocation). A writer that
//    found no storage raced with its creation: writer {i_writecount++ (full
//    barrier); look up} against filler {create; g0 (full barrier); read
//    i_writecount}: at least one sees the other, so either the bump lands
//    or the filler sees the writer and caches nothing.
// 4. Use: {cached, digest} copied under `seq` (a seqcount: a filler makes it
//    odd with a compare-and-swap, writes, makes it even; a reader retries
//    never, it just hashes when seq was odd or moved). Then i_writecount
//    must be <= 0 and write_gen must equal cached - 1, read in that order
//    (as in 3). During exec, exec holds deny_write_access (i_writecount < 0,
//    every open for write fails with ETXTBSY, seen on both lab kernels),
//    so the content is frozen for the whole decision: the cached digest is
//    the content that runs. (A kernel that stopped denying write access
//    during exec would still be covered by the i_writecount/write_gen
//    checks, with the same write-after-check window as an uncached hash.)
//    Two fillers with the same g0 hashed the same content; fillers with
//    different g0 are serialised by seq, and the older one's `cached` no
//    longer matches write_gen.
// 5. Attach order: the loader attaches enf_file_open and enf_inode_setattr
//    before the hooks that fill, and detaches/unpins them after, so no
//    change can go unseen while a cache entry may be filled or used. Writers
//    that opened before the programs were attached hold i_writecount > 0.
// Cache hits and fills are counted in enf_stats (slots 1 and 2).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#define EPERM 1
#define PROT_EXEC 0x4
#define VM_EXEC 0x4
#define EOPNOTSUPP 95
#define FMODE_WRITE 0x2
#define O_TRUNC 01000
#define ATTR_SIZE (1 << 3)
#define S_IFMT 00170000
#define S_IFREG 0100000
#define BPF_LOCAL_STORAGE_GET_F_CREATE 1

/* Deepest cgroup level searched for a scope (the root is level 0). */
#define ENF_MAX_CGROUP_LEVEL 32
/* Lookups of a digest while its scope's set is being replaced. */
#define ENF_SET_ATTEMPTS 3

/* Structs and constants shared with user space (modes, flags, hooks,
 * verdicts, stat slots, enf_scope, enf_digest_key, enf_event). */
#include "abi.h"

char LICENSE[] SEC("license") = "GPL";

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

/* Per-inode digest cache (see the argument at the top). 56 bytes. */
struct enf_inode {
	__u64 write_gen; /* bumped before every possible content change */
	__u64 seq;       /* even: stable; odd: a fill is writing */
	__u64 cached;    /* write_gen + 1 of the hashed content; 0: nothing */
	__u8 digest[ENF_SHA256_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enf_inode);
} enf_inode_cache SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&enf_stats, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

/* An atomic read that is also a full barrier (a locked RMW on x86). */
static __always_inline __u64 read_once_full(__u64 *p)
{
	return __sync_fetch_and_add(p, 0);
}

/* Filesystems where every content change of an inode passes through an
 * open-for-write or a size change of that very inode (argument, point 2). */
static __always_inline int cacheable_fs(unsigned long magic)
{
	return magic == 0xEF53 ||      /* ext2/3/4 */
	       magic == 0x58465342 ||  /* xfs */
	       magic == 0x01021994 ||  /* tmpfs */
	       magic == 0x858458F6 ||  /* ramfs */
	       magic == 0x9123683E;    /* btrfs */
}

static __always_inline int has_writers(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_writecount.counter) > 0;
}

/* The cache entry of `inode`, created if missing, or NULL if the inode may
 * not be cached (argument, points 1 and 2). */
static __always_inline struct enf_inode *cache_entry(struct inode *inode)
{
	if (!inode)
		return NULL;
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return NULL;
	if (BPF_CORE_READ(inode, __i_nlink) == 0)
		return NULL; /* memfd, shm, unlinked: maybe writable without a count */
	if (!cacheable_fs(BPF_CORE_READ(inode, i_sb, s_magic)))
		return NULL;
	return bpf_inode_storage_get(&enf_inode_cache, inode, 0,
				     BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* Copies the cached digest of `inode` into `digest` if it is current
 * (argument, point 4). */
static __always_inline int cache_use(struct enf_inode *c, struct inode *inode, __u8 *digest)
{
	__u8 copy[ENF_SHA256_LEN];
	__u64 s1, s2, cached;

	s1 = read_once_full(&c->seq);
	if (s1 & 1)
		return 0;
	cached = c->cached;
	__builtin_memcpy(copy, c->digest, ENF_SHA256_LEN);
	s2 = read_once_full(&c->seq);
	if (s1 != s2 || !cached)
		return 0;
	if (has_writers(inode))
		return 0;
	if (read_once_full(&c->write_gen) + 1 != cached)
		return 0;
	__builtin_memcpy(digest, copy, ENF_SHA256_LEN);
	return 1;
}

/* Stores `digest`, hashed after write_gen read g0, if nothing could have
 * changed the content since (argument, point 3). */
static __always_inline void cache_fill(struct enf_inode *c, struct inode *inode, __u64 g0,
				       const __u8 *digest)
{
	__u64 s;

	if (has_writers(inode))
		return;
	if (read_once_full(&c->write_gen) != g0)
		return;
	s = read_once_full(&c->seq);
	if (s & 1)
		return;
	if (__sync_val_compare_and_swap(&c->seq, s, s + 1) != s)
		return; /* another fill is writing */
	__builtin_memcpy(c->digest, digest, ENF_SHA256_LEN);
	c->cached = g0 + 1;
	__sync_fetch_and_add(&c->seq, 1);
	count(ENF_STAT_CACHE_FILLS);
}

/* SHA-256 of `file` into `digest`, from the cache when it is current;
 * returns what bpf_ima_file_hash() would (4 for SHA-256). */
static __always_inline __s32 file_digest(struct file *file, __u8 *digest)
{
	struct inode *inode = file->f_inode;
	struct enf_inode *c = cache_entry(inode);
	__u64 g0 = 0;
	__s32 ret;

	if (c) {
		if (cache_use(c, inode, digest)) {
			count(ENF_STAT_CACHE_HITS);
			return ENF_HASH_ALGO_SHA256;
		}
		g0 = read_once_full(&c->write_gen);
		if (has_writers(inode))
			c = NULL; /* writers may exist: neither use nor fill */
	}
	ret = bpf_ima_file_hash(file, digest, ENF_SHA256_LEN);
	if (c && ret == ENF_HASH_ALGO_SHA256)
		cache_fill(c, inode, g0, digest);
	return ret;
}

/* A possible content change of `inode` is coming: invalidate its entry.
 * No entry is created (argument, end of point 3). */
static __always_inline void bump(struct inode *inode)
{
	struct enf_inode *c;

	if (!inode)
		return;
	c = bpf_inode_storage_get(&enf_inode_cache, inode, 0, 0);
	if (c)
		__sync_fetch_and_add(&c->write_gen, 1);
}

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
	__builtin_memcpy(ev->digest, digest, ENF_SHA256_LEN);
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

	hash_ret = file_digest(file, key.digest);
	if (hash_ret == ENF_HASH_ALGO_SHA256)
		known = allowed(&scope, &scope_cgroup_id, &key);
	else
		/* Unhashable, or hashed with another algorithm: unknown. */
		__builtin_memset(key.digest, 0, ENF_SHA256_LEN);

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
	__u8 digest[ENF_SHA256_LEN] = {};
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

/* Invalidation, part 1a: every open for write (and O_TRUNC, even O_RDONLY).
 * Runs whatever earlier programs decided: bumping too often is harmless. */
SEC("lsm/file_open")
int BPF_PROG(enf_file_open, struct file *file, int ret)
{
	if ((file->f_mode & FMODE_WRITE) || (file->f_flags & O_TRUNC))
		bump(file->f_inode);
	return ret;
}

/* Invalidation, part 1b: every size change (notify_change with ATTR_SIZE).
 * The hook gained an idmap argument in 6.x: enf_inode_setattr3 is the
 * (idmap, dentry, attr) form, enf_inode_setattr2 the (dentry, attr) one. The
 * loader loads the first the verifier accepts: on a kernel with two
 * arguments, the third slot is the int return value and the direct
 * `attr->ia_valid` load of enf_inode_setattr3 is refused. The 2-argument
 * form is tried only after, because on a 3-argument kernel its `dentry`
 * would be the idmap. */
SEC("lsm/inode_setattr")
int BPF_PROG(enf_inode_setattr3, void *idmap, struct dentry *dentry, struct iattr *attr,
	     int ret)
{
	if (attr->ia_valid & ATTR_SIZE)
		bump(dentry->d_inode);
	return ret;
}

SEC("lsm/inode_setattr")
int BPF_PROG(enf_inode_setattr2, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (attr->ia_valid & ATTR_SIZE)
		bump(dentry->d_inode);
	return ret;
}
