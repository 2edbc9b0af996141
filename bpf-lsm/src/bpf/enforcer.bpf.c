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
// one scope id, which names the digest set. A task that leaves its scope's
// subtree stays bound to it (sticky scopes, enforcer/scope.h).
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
// (counted in `enf_stats`, and per scope in `enf_scope_stats` with each
// event numbered in its scope); delivery never blocks or changes a verdict.
// Denials and audit findings are always reported; allowed decisions only
// when the scope has ENF_FLAG_REPORT_ALLOWED.
//
// A third program, enf_file_mprotect (not sleepable, so it cannot hash),
// refuses making a non-executable file mapping executable in a scope.
//
// The loader (src/enforcer/mod.rs) pins the links and the maps under bpffs,
// so enforcement outlives it, and shares them with a newer build's programs
// on upgrade (src/enforcer/takeover.rs); the digest cache is not pinned (the
// programs keep it alive, and each build starts its own).
//
// The parts, each in its own header under enforcer/:
//   maps.h    the shared maps and stats;
//   cache.h   the per-inode digest cache and its soundness argument;
//   events.h  decision events;
//   scope.h   scope lookup and digest-set membership;
//   fs.h      which file a decision is about (overlayfs' real file; remote
//             file systems, refused unless the scope opts in);
//   guard.h   self-protection and escapes: clone3 into a cgroup, bpf(),
//             the pins, kernel module/firmware/kexec loads; sticky scopes
//             at fork;
//   patch.h   no code patching in a scope (/proc/PID/mem, ptrace,
//             userfaultfd, W+X) and the strict profile: its own programs;
//   seal.h    sealed execution: what was judged cannot be written while it
//             runs, files with writers and unsealed memfds do not run;
//   privs.h   privileges as signed: setuid, setgid and file capabilities
//             an exec gains must be those of a signed entry.

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

/* Lookups of a digest while its scope's set is being replaced. build.rs
 * compiles a test-only second object with 2 (other programs of the same
 * layout, for the upgrade tests). */
#ifndef ENF_SET_ATTEMPTS
#define ENF_SET_ATTEMPTS 3
#endif

/* Structs and constants shared with user space (modes, flags, hooks,
 * verdicts, stat slots, enf_scope, enf_digest_key, enf_event). */
#include "abi.h"

char LICENSE[] SEC("license") = "GPL";

#include "enforcer/maps.h"
#include "enforcer/fs.h"
#include "enforcer/cache.h"
#include "enforcer/events.h"
#include "enforcer/scope.h"
#include "enforcer/guard.h"
#include "enforcer/patch.h"
#include "enforcer/seal.h"
#include "enforcer/privs.h"

/* The verdict for `file` run by the current task: 0 or -EPERM. */
static __always_inline int decide(struct file *file, __u8 hook)
{
	struct enf_digest_key key = {};
	struct enf_privs privs; /* not needed here: privs.h judges privileges */
	struct enf_scope scope = {};
	struct enf_fs fs = {};
	struct seal_state seal = {};
	__u64 cgroup_id, scope_cgroup_id = 0;
	__s32 hash_ret;
	__u8 verdict, reason = ENF_REASON_DIGEST;
	int known = 0, escaped;

	if (!find_scope(&scope, &scope_cgroup_id))
		return 0; /* not in any scope: untouched */
	escaped = scope.pad == ENF_SCOPE_ESCAPED;
	cgroup_id = bpf_get_current_cgroup_id();

	/* fs.h: the real file under overlayfs; remote file systems. */
	fs_judge(file, &fs);
	/* Sealed execution (seal.h), before the hash: unsealed memfds and
	 * files with writers are refused whatever their digest. */
	seal_prepare(&seal, file);
	if (fs.remote && !(scope.flags & ENF_FLAG_REMOTE_FS)) {
		reason = ENF_REASON_REMOTE_FS;
		hash_ret = -EOPNOTSUPP;
	} else if (fs.unknown) {
		hash_ret = -ENF_ESTALE;
	} else {
		/* cache.h: cached, or hashed (under overlayfs, watched: fs.h). */
		hash_ret = file_digest(file, &fs, key.digest);
	}
	if (hash_ret == ENF_HASH_ALGO_SHA256)
		known = allowed(&scope, &scope_cgroup_id, &key, &privs);
	else
		/* Unhashable, or hashed with another algorithm: unknown. */
		__builtin_memset(key.digest, 0, ENF_SHA256_LEN);

	/* Sealed execution, after: known content is sealed (enforce scopes
	 * only), unless a writer was or may have been there (seal.h, 2). */
	if (known && !seal.reason)
		seal.reason = seal_commit(&seal, scope.mode == ENF_MODE_ENFORCE);
	if (known && seal.reason) {
		known = 0;
		reason = seal.reason;
	}

	if (known)
		verdict = ENF_VERDICT_ALLOW;
	else if (scope.mode == ENF_MODE_AUDIT)
		verdict = ENF_VERDICT_AUDIT;
	else
		verdict = ENF_VERDICT_DENY;
	/* A task that left its sticky scope for no scope is judged by it (scope.h). */
	if (verdict != ENF_VERDICT_ALLOW && escaped && reason == ENF_REASON_DIGEST)
		reason = ENF_REASON_ESCAPE;

	if (verdict != ENF_VERDICT_ALLOW || (scope.flags & ENF_FLAG_REPORT_ALLOWED))
		emit(file, hook, verdict, reason, cgroup_id, scope_cgroup_id, &scope, hash_ret,
		     key.digest);
	else
		/* Counted all the same (emit counts the decisions it reports). */
		tally(scope_stats(scope_cgroup_id), verdict);

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
	 * not decided here (patch.h judges anonymous executable memory).
	 * MAP_ANONYMOUS first: the verifier may take the hook's `file` for
	 * non-NULL and drop the `!file` test (patch.h says more). `prot`
	 * is what will be applied (it includes READ_IMPLIES_EXEC), not only
	 * what was asked for. */
	if ((flags & MAP_ANONYMOUS) || !file || !(prot & PROT_EXEC))
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
	emit(NULL, ENF_HOOK_FILE_MPROTECT, verdict, ENF_REASON_MPROTECT, bpf_get_current_cgroup_id(),
	     scope_cgroup_id, &scope, -EOPNOTSUPP, digest);
	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}

/* Invalidation, part 1a: every open for write (and O_TRUNC, even O_RDONLY).
 * Runs whatever earlier programs decided: bumping too often is harmless.
 * Also tells fs.h which real files a task hashing an overlay file opens. */
SEC("lsm/file_open")
int BPF_PROG(enf_file_open, struct file *file, int ret)
{
	if ((file->f_mode & FMODE_WRITE) || (file->f_flags & O_TRUNC))
		bump(file->f_inode);
	fs_note_open(file);
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
