/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Self-protection and escapes: what a task in a scope may not do besides
 * running unsigned code. All programs here are non-sleepable and decide
 * without hashing.
 *   - enf_task_alloc (task_alloc): every fork/clone. The child inherits its
 *     parent's sticky scope (scope.h). clone3(CLONE_INTO_CGROUP) from a
 *     scoped task is refused in enforce mode: the child would start in a
 *     cgroup of the caller's choosing, outside the scope.
 *   - enf_bpf (bpf): any bpf() command from a scoped task is refused in
 *     enforce mode (loading programs, opening the enforcer's pinned maps or
 *     links, detaching links by id...). The registered owner (the daemon,
 *     see enf_guard) is exempt, so a daemon that itself sits in a scope can
 *     still run the enforcer.
 *   - enf_inode_unlink, enf_inode_rmdir, enf_inode_rename, enf_sb_umount:
 *     removing or renaming an entry of the pin directory, the directory
 *     itself, or unmounting the bpffs instance holding it is refused to every
 *     process but the registered owner, scoped or not (removing the link pins
 *     ends enforcement). enf_guard holds the pin directory's inode number and
 *     super block, and the owner's tgid: Enforcer::attach_pinned,
 *     open_pinned and unpin register their caller first (one map update).
 *     This stops a scoped task and any process that cannot call bpf(); root
 *     outside every scope can still register itself through bpf() (and can
 *     unload any program anyway): the threat model's attacker is inside a
 *     scope. The owner is a tgid: if the daemon dies, a process that later
 *     gets the same pid is taken for it (for the pins, and for bpf() from a
 *     scope) until the next registration.
 *   - enf_kernel_read_file, enf_kernel_load_data: module (init_module,
 *     finit_module), firmware, kexec image/initramfs, IMA policy and
 *     certificate loads from a scoped task are refused in enforce mode:
 *     kernel code that no scope's digest set judged. Module autoloading
 *     (request_module) runs modprobe outside the scope and is not refused.
 * Audit scopes get the same events with verdict "audit" and are not refused
 * (the pins are refused regardless of mode).
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_GUARD_H
#define IMGSIGN_ENF_GUARD_H

#define CLONE_INTO_CGROUP 0x200000000ULL
#define BPF_FS_MAGIC 0xcafe4a11

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_guard);
} enf_guard SEC(".maps");

static __always_inline struct enf_guard *guard_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&enf_guard, &zero);
}

/* Whether the current process is the registered owner. */
static __always_inline int is_owner(const struct enf_guard *g)
{
	return g && g->owner_tgid && g->owner_tgid == (__u32)(bpf_get_current_pid_tgid() >> 32);
}

/* Reports and returns the verdict of a refusal that needs no digest, for
 * the current task in `scope`: deny in enforce mode, audit in audit mode. */
static __always_inline int refuse(__u8 hook, __u8 reason, struct enf_scope *scope,
				  __u64 scope_cgroup_id)
{
	__u8 digest[ENF_SHA256_LEN] = {};
	__u8 verdict = scope->mode == ENF_MODE_AUDIT ? ENF_VERDICT_AUDIT : ENF_VERDICT_DENY;

	emit(NULL, hook, verdict, reason, bpf_get_current_cgroup_id(), scope_cgroup_id, scope,
	     -EOPNOTSUPP, digest);
	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}

/* The refusal, for the current task if it is in a scope (0 otherwise). */
static __always_inline int refuse_scoped(__u8 hook, __u8 reason)
{
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;

	if (!find_scope(&scope, &scope_cgroup_id))
		return 0;
	return refuse(hook, reason, &scope, scope_cgroup_id);
}

SEC("lsm/task_alloc")
int BPF_PROG(enf_task_alloc, struct task_struct *task, unsigned long clone_flags, int ret)
{
	struct enf_sticky *parent, *child;
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;

	if (ret != 0)
		return ret;
	/* The parent's scope (recording its sticky scope if it had none). */
	if (!find_scope(&scope, &scope_cgroup_id))
		return 0;
	if ((clone_flags & CLONE_INTO_CGROUP) &&
	    refuse(ENF_HOOK_TASK_ALLOC, ENF_REASON_ESCAPE, &scope, scope_cgroup_id))
		return -EPERM;
	parent = bpf_task_storage_get(&enf_task_scope, bpf_get_current_task_btf(), 0, 0);
	child = bpf_task_storage_get(&enf_task_scope, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!child)
		return 0;
	if (parent && parent->cgroup_id) {
		child->cgroup_id = parent->cgroup_id;
		child->scope = parent->scope;
	} else {
		child->cgroup_id = scope_cgroup_id;
		child->scope = scope;
	}
	return 0;
}

SEC("lsm/bpf")
int BPF_PROG(enf_bpf, int cmd, union bpf_attr *attr, unsigned int size, int ret)
{
	if (ret != 0)
		return ret;
	if (is_owner(guard_config()))
		return 0;
	return refuse_scoped(ENF_HOOK_BPF, ENF_REASON_SELF);
}

/* Whether `inode` is the pin directory recorded in `g`. */
static __always_inline int is_pin_dir(struct inode *inode, const struct enf_guard *g)
{
	struct super_block *sb;

	if (!inode || BPF_CORE_READ(inode, i_ino) != g->pin_ino)
		return 0;
	sb = BPF_CORE_READ(inode, i_sb);
	return BPF_CORE_READ(sb, s_magic) == BPF_FS_MAGIC && BPF_CORE_READ(sb, s_dev) == g->pin_dev;
}

/* Refuses, to everyone but the owner, a change where `a` or `b` is the pin
 * directory (the directory an entry is removed from or renamed in or out
 * of, or the directory itself removed or renamed). */
static __always_inline int guard_pins(struct inode *a, struct inode *b)
{
	struct enf_guard *g = guard_config();
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;

	if (!g || !g->pin_ino)
		return 0;
	if (!is_pin_dir(a, g) && !is_pin_dir(b, g))
		return 0;
	if (is_owner(g))
		return 0;
	find_scope(&scope, &scope_cgroup_id);
	scope.mode = ENF_MODE_ENFORCE; /* refused whatever the scope's mode, or none */
	return refuse(ENF_HOOK_PIN, ENF_REASON_SELF, &scope, scope_cgroup_id);
}

SEC("lsm/inode_unlink")
int BPF_PROG(enf_inode_unlink, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret != 0)
		return ret;
	return guard_pins(dir, NULL);
}

SEC("lsm/inode_rmdir")
int BPF_PROG(enf_inode_rmdir, struct inode *dir, struct dentry *dentry, int ret)
{
	if (ret != 0)
		return ret;
	return guard_pins(dir, BPF_CORE_READ(dentry, d_inode));
}

SEC("lsm/inode_rename")
int BPF_PROG(enf_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry, int ret)
{
	if (ret != 0)
		return ret;
	ret = guard_pins(old_dir, new_dir);
	if (ret != 0)
		return ret;
	return guard_pins(BPF_CORE_READ(old_dentry, d_inode), BPF_CORE_READ(new_dentry, d_inode));
}

/* Unmounting the bpffs instance that holds the pins (its last mount frees
 * them, and with them the links). */
SEC("lsm/sb_umount")
int BPF_PROG(enf_sb_umount, struct vfsmount *mnt, int flags, int ret)
{
	struct enf_guard *g;
	struct super_block *sb;
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;

	if (ret != 0)
		return ret;
	g = guard_config();
	if (!g || !g->pin_ino)
		return 0;
	sb = BPF_CORE_READ(mnt, mnt_sb);
	if (BPF_CORE_READ(sb, s_magic) != BPF_FS_MAGIC || BPF_CORE_READ(sb, s_dev) != g->pin_dev)
		return 0;
	if (is_owner(g))
		return 0;
	find_scope(&scope, &scope_cgroup_id);
	scope.mode = ENF_MODE_ENFORCE;
	return refuse(ENF_HOOK_PIN, ENF_REASON_SELF, &scope, scope_cgroup_id);
}

SEC("lsm/kernel_read_file")
int BPF_PROG(enf_kernel_read_file, struct file *file, enum kernel_read_file_id id, bool contents,
	     int ret)
{
	if (ret != 0)
		return ret;
	return refuse_scoped(ENF_HOOK_KERNEL_LOAD, ENF_REASON_KERNEL_LOAD);
}

SEC("lsm/kernel_load_data")
int BPF_PROG(enf_kernel_load_data, enum kernel_load_data_id id, bool contents, int ret)
{
	if (ret != 0)
		return ret;
	return refuse_scoped(ENF_HOOK_KERNEL_LOAD, ENF_REASON_KERNEL_LOAD);
}

#endif /* IMGSIGN_ENF_GUARD_H */
