/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Privileges as signed. A listed binary runs with the privileges some
 * signed entry with its digest has, or fewer: a copy of a listed `ping`
 * that someone made setuid, or gave a file capability, is not the signed
 * `ping`, though its bytes are.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 *
 * Where: bprm_creds_from_file, after the kernel computed the new
 * credentials (bprm_fill_uid reads the setuid/setgid bits there, under the
 * inode lock; commoncap, always the first LSM, applies the file
 * capabilities), for the file the credentials come from. A check at
 * bprm_check_security would come before both, and a chmod u+s between the
 * two would go unseen.
 *
 * What: the shape of the exec (ENF_PRIV_SETUID: the file has S_ISUID or the
 * exec changes the effective uid; ENF_PRIV_SETGID likewise) must be that of
 * a signed entry with the digest, or a part of it (user space sets
 * enf_privs.shapes to every subset of every entry's shape: fewer privileges
 * than signed are allowed, a mix of two entries' privileges is not). The
 * capabilities the exec gains (new permitted set minus the old) must be in
 * enf_privs.caps, the union of the entries' security.capability sets.
 * Capabilities are judged by their effect: BPF cannot read the xattr on
 * 6.1, and a file capability that grants nothing the task did not have
 * changes nothing. Gains are judged only when the new effective uid is not
 * 0: for root, commoncap refills the permitted set from the bounding set on
 * every exec, whatever the file says, and an exec that makes the task root
 * is a setuid shape, judged by the bits.
 *
 * An exec that changes no uid or gid and gains no capability is decided
 * without a lookup: the common case costs a few loads. Otherwise the digest
 * (from the cache, which enf_bprm_check just filled) must be in the scope's
 * set with those privileges: refused in enforce mode, reported either way,
 * with reason ENF_REASON_PRIVILEGE on hook ENF_HOOK_CREDS.
 */
#ifndef IMGSIGN_ENF_PRIVS_H
#define IMGSIGN_ENF_PRIVS_H

#define ENF_S_ISUID 04000
#define ENF_S_ISGID 02000

/* A capability set as one 64-bit word: kernel_cap_t is two __u32 on 6.1
 * and one __u64 from 6.3, the same bytes on little-endian x86. */
static __always_inline __u64 cap_word(const kernel_cap_t *set)
{
	__u64 word = 0;

	bpf_probe_read_kernel(&word, sizeof(word), set);
	return word;
}

/* The shape of an exec and the capabilities it gains. */
static __always_inline __u8 exec_shape(struct linux_binprm *bprm, struct file *file, __u64 *gained)
{
	const struct cred *now = bpf_get_current_task_btf()->cred;
	const struct cred *next = bprm->cred;
	__u16 mode = BPF_CORE_READ(file, f_inode, i_mode);
	__u32 next_euid = BPF_CORE_READ(next, euid.val);
	__u8 shape = 0;

	if ((mode & ENF_S_ISUID) || next_euid != BPF_CORE_READ(now, euid.val))
		shape |= ENF_PRIV_SETUID;
	if ((mode & ENF_S_ISGID) || BPF_CORE_READ(next, egid.val) != BPF_CORE_READ(now, egid.val))
		shape |= ENF_PRIV_SETGID;
	*gained = 0;
	if (next_euid != 0)
		*gained = cap_word(&next->cap_permitted) & ~cap_word(&now->cap_permitted);
	return shape;
}

SEC("lsm.s/bprm_creds_from_file")
int BPF_PROG(enf_privs_creds, struct linux_binprm *bprm, struct file *file, int ret)
{
	struct enf_digest_key key = {};
	struct enf_privs privs = {};
	struct enf_scope scope = {};
	struct enf_fs fs = {};
	__u64 scope_cgroup_id = 0, gained;
	__s32 hash_ret = -EOPNOTSUPP;
	__u8 shape, verdict;
	int known = 0;

	if (ret != 0)
		return ret;
	shape = exec_shape(bprm, file, &gained);
	if (!shape && !gained)
		return 0; /* no privilege gained: nothing to judge */
	if (!find_scope(&scope, &scope_cgroup_id))
		return 0;

	fs_judge(file, &fs);
	if (!(fs.remote && !(scope.flags & ENF_FLAG_REMOTE_FS)) && !fs.unknown)
		hash_ret = file_digest(file, &fs, key.digest);
	if (hash_ret == ENF_HASH_ALGO_SHA256)
		known = allowed(&scope, &scope_cgroup_id, &key, &privs);
	else
		__builtin_memset(key.digest, 0, ENF_SHA256_LEN);
	if (known && (privs.shapes & (1 << shape)) && !(gained & ~privs.caps))
		return 0;

	verdict = scope.mode == ENF_MODE_AUDIT ? ENF_VERDICT_AUDIT : ENF_VERDICT_DENY;
	emit(file, ENF_HOOK_CREDS, verdict, ENF_REASON_PRIVILEGE, bpf_get_current_cgroup_id(),
	     scope_cgroup_id, &scope, hash_ret, key.digest);
	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}

#endif /* IMGSIGN_ENF_PRIVS_H */
