/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Sealed execution: what a scope judged stays what runs.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 *
 * ---------------------------------------------------------------------------
 * 1. The seal
 * ---------------------------------------------------------------------------
 * When decide() lets a task in an ENFORCE scope exec a file or map it
 * executable, the inode is marked sealed in `enf_seals` (inode storage, any
 * regular file on any filesystem: the inode the hook sees, which under
 * overlayfs is the overlay inode, so writes through the overlay are refused;
 * the real upper or lower inode, reachable only from outside the container,
 * is not sealed, since the programs get no typed pointer to it, see fs.h).
 * From then on, while the inode stays
 * in memory, from ANY task (in a scope or not):
 *   - every open for write (FMODE_WRITE, and O_TRUNC even read-only) fails
 *     with -ETXTBSY (enf_seal_file_open, lsm/file_open);
 *   - every size change (notify_change with ATTR_SIZE: truncate(2),
 *     ftruncate, O_TRUNC, nfsd/overlayfs truncations) fails with -ETXTBSY
 *     (enf_seal_inode_setattr{3,2}, lsm/inode_setattr).
 * Each refusal is reported (hook ENF_HOOK_FILE_OPEN / ENF_HOOK_INODE_SETATTR,
 * reason ENF_REASON_SEALED, verdict DENY) in the writer's scope, or a zeroed
 * scope (id 0) for a writer in none; a full ring buffer drops the event.
 * The seal is never removed: an inode leaves memory only when nothing holds
 * it (no mapping, no open file, no running exec), and a new inode (a file
 * written elsewhere and renamed over the path, as package managers do) has
 * no seal. Audit scopes never seal.
 *
 * 2. Writers at the decision (Dekker)
 * ---------------------------------------------------------------------------
 * An exec or executable mapping of an inode that has writers
 * (i_writecount > 0: a file open for write, or a writable shared mapping,
 * which holds such a file) is refused in enforce mode, reason
 * ENF_REASON_WRITERS (reported as AUDIT in audit scopes). So is one during
 * which a writer may have come and gone (below). Per inode, `enf_seals`
 * holds { sealed, gen }.
 *   decide:  seal_prepare: create the entry; g0 = gen (atomic RMW: a full
 *            barrier); i_writecount > 0 -> refuse.
 *            hash, look the digest up.
 *            seal_commit (known digest only): sealed = 1 (atomic RMW, enforce
 *            only); i_writecount > 0 -> refuse; gen != g0 -> refuse.
 *   writer:  do_dentry_open: i_writecount++ (get_write_access, an atomic RMW)
 *            BEFORE security_file_open, where enf_seal_file_open looks the
 *            entry up (without creating it), refuses if sealed, else
 *            gen++ (atomic). Size changes (truncate by path) hold
 *            get_write_access too, and inode_setattr does the same check.
 * Both sides are a store (RMW) followed by a load of the other side's
 * variable, each RMW a full barrier (x86 locked instruction): at least one
 * side sees the other. Either the writer sees `sealed` (its open fails), or
 * decide's i_writecount read sees the writer (refused). The entry's creation
 * is covered the same way: a writer whose lookup missed the entry did its
 * i_writecount++ before the lookup, which preceded the creation, so decide's
 * later i_writecount read (after its RMW on gen) sees it, unless that writer
 * already left, which is the next case.
 * A writer that opened, wrote and closed between seal_prepare and
 * seal_commit (the window while the file is hashed) bumped gen at its open
 * after the entry existed (its lookup came after decide's creation, or
 * decide saw it in i_writecount): seal_commit sees gen != g0. So the hashed
 * bytes are the bytes the seal froze. Exec itself holds deny_write_access
 * (i_writecount < 0) for the whole decision, so there this only guards
 * mmap_file. A read-only O_TRUNC open of an unsealed file racing with a
 * decision bumps gen too, and makes it refuse (harmless for the writer,
 * who could as well have truncated it).
 *
 * 3. memfd and shared memory
 * ---------------------------------------------------------------------------
 * A regular file on shmem (s_magic 0x01021994) with i_nlink == 0 (memfd,
 * SysV shm, an unlinked or O_TMPFILE tmpfs file) is written without an open
 * (through the fd memfd_create returned, or shmat) and without a write
 * count, so the seal above cannot freeze it. It may be executed or mapped
 * executable only if its own seals (struct shmem_inode_info.seals, found by
 * CO-RE from the inode) include F_SEAL_WRITE or F_SEAL_FUTURE_WRITE AND no
 * writable shared mapping exists (address_space.i_mmap_writable > 0: a
 * mapping made before F_SEAL_FUTURE_WRITE keeps writing). Seals only grow,
 * and they are read before the hash, so the hashed bytes are final.
 * Anything else (unsealed memfds, SysV shm, hugetlbfs memfds) is refused in
 * enforce mode, reason ENF_REASON_MEMFD.
 *
 * What is NOT stopped here
 * ---------------------------------------------------------------------------
 * - Long-term pinned pages: io_uring fixed buffers (or other FOLL_LONGTERM
 *   pins) registered on a shared writable mapping of a file before the seal
 *   keep writing its page cache after the mapping and the fd are gone, with
 *   no open and no writer: a sealed tmpfs file, or a memfd sealed with
 *   F_SEAL_FUTURE_WRITE, can still be changed that way while it runs.
 *   (The kernel allows such pins of file pages only on shmem and hugetlbfs;
 *   F_SEAL_WRITE waits for them to go away before it is granted.) The
 *   digest cache does not trust shmem for that reason (cache.h, point 2);
 *   the strict profile refuses io_uring.
 * - Writes to the block device under a mounted filesystem, and filesystems
 *   whose content changes elsewhere (NFS, FUSE...: see the remote-fs policy).
 * - A file judged in an AUDIT scope is not sealed.
 */
#ifndef IMGSIGN_ENF_SEAL_H
#define IMGSIGN_ENF_SEAL_H

#define ETXTBSY 26
#define TMPFS_MAGIC 0x01021994
#define HUGETLBFS_MAGIC 0x958458f6
#define F_SEAL_WRITE 0x0008
#define F_SEAL_FUTURE_WRITE 0x0010

/* Per-inode seal state (argument, points 1 and 2). */
struct enf_seal {
	__u64 sealed; /* 1 once a scope was allowed to run this inode */
	__u64 gen;    /* bumped at every open for write, O_TRUNC, size change */
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enf_seal);
} enf_seals SEC(".maps");

/* What decide() learnt before hashing. Room for two inodes: the second slot
 * is for overlayfs' real inode once the programs can reach it (fs.h); it
 * stays empty today. */
struct seal_state {
	struct inode *inode[2];
	struct enf_seal *seal[2];
	__u64 g0[2];
	__u8 reason; /* set by seal_prepare: refuse whatever the digest */
};

static __always_inline int inode_writers(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_writecount.counter) > 0;
}

/* 0 if `inode` may run as far as shmem goes, else ENF_REASON_MEMFD
 * (argument, point 3). */
static __always_inline __u8 shm_check(struct inode *inode)
{
	unsigned long magic = BPF_CORE_READ(inode, i_sb, s_magic);
	struct shmem_inode_info *info;
	unsigned int seals;

	if (magic == HUGETLBFS_MAGIC && BPF_CORE_READ(inode, __i_nlink) == 0)
		return ENF_REASON_MEMFD;
	if (magic != TMPFS_MAGIC || BPF_CORE_READ(inode, __i_nlink) != 0)
		return 0;
	info = (void *)inode - bpf_core_field_offset(struct shmem_inode_info, vfs_inode);
	seals = BPF_CORE_READ(info, seals);
	if (!(seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
		return ENF_REASON_MEMFD;
	if (BPF_CORE_READ(inode, i_mapping, i_mmap_writable.counter) > 0)
		return ENF_REASON_MEMFD;
	return 0;
}

/* Before the hash, for one inode: the memfd rule, then the seal entry, gen
 * and the writers (argument, point 2). Returns a reason to refuse, or 0. */
static __always_inline __u8 seal_prepare_one(struct seal_state *st, int i, struct inode *inode)
{
	struct enf_seal *s;
	__u8 reason;

	st->inode[i] = inode;
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return 0; /* exec and mmap only run regular files */
	reason = shm_check(inode);
	if (reason)
		return reason;
	s = bpf_inode_storage_get(&enf_seals, inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return ENF_REASON_WRITERS; /* cannot seal (no memory): fail closed */
	st->seal[i] = s;
	st->g0[i] = __sync_fetch_and_add(&s->gen, 0);
	if (inode_writers(inode))
		return ENF_REASON_WRITERS;
	return 0;
}

/* Before the hash of `file`; the result is in st->reason. */
static __always_inline void seal_prepare(struct seal_state *st, struct file *file)
{
	st->reason = seal_prepare_one(st, 0, file->f_inode);
}

static __always_inline __u8 seal_commit_one(struct seal_state *st, int i, int seal)
{
	struct enf_seal *s = st->seal[i];

	if (!s)
		return 0; /* not a regular file */
	if (seal)
		__sync_fetch_and_or(&s->sealed, 1);
	else
		__sync_fetch_and_add(&s->gen, 0); /* the same barrier, no seal */
	if (inode_writers(st->inode[i]))
		return ENF_REASON_WRITERS;
	if (__sync_fetch_and_add(&s->gen, 0) != st->g0[i])
		return ENF_REASON_WRITERS;
	return 0;
}

/* After the digest was found allowed: seals (when `seal`, i.e. in an enforce
 * scope) and returns a reason to refuse after all, or 0. */
static __always_inline __u8 seal_commit(struct seal_state *st, int seal)
{
	__u8 reason = seal_commit_one(st, 0, seal);

	if (!reason)
		reason = seal_commit_one(st, 1, seal);
	return reason;
}

/* Refuses a change of a sealed inode: -ETXTBSY and an event, or 0. Bumps
 * gen of an unsealed entry (argument, point 2). No entry is created. */
static __always_inline int seal_guard(struct file *file, struct inode *inode, __u8 hook)
{
	__u8 digest[ENF_SHA256_LEN] = {};
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;
	struct enf_seal *s;

	if (!inode)
		return 0;
	s = bpf_inode_storage_get(&enf_seals, inode, 0, 0);
	if (!s)
		return 0;
	if (!__sync_fetch_and_add(&s->sealed, 0)) {
		__sync_fetch_and_add(&s->gen, 1);
		return 0;
	}
	find_scope(&scope, &scope_cgroup_id); /* none: a zeroed scope */
	emit(file, hook, ENF_VERDICT_DENY, ENF_REASON_SEALED, bpf_get_current_cgroup_id(),
	     scope_cgroup_id, &scope, -EOPNOTSUPP, digest);
	return -ETXTBSY;
}

/* Opens for write, and O_TRUNC even read-only, of a sealed inode. Runs after
 * enf_file_open (which bumps the digest cache). Sleepable (file_open is a
 * sleepable hook) only so that the event can carry the path. */
SEC("lsm.s/file_open")
int BPF_PROG(enf_seal_file_open, struct file *file, int ret)
{
	if (ret != 0)
		return ret;
	if (!(file->f_mode & FMODE_WRITE) && !(file->f_flags & O_TRUNC))
		return 0;
	return seal_guard(file, file->f_inode, ENF_HOOK_FILE_OPEN);
}

/* Size changes of a sealed inode; the two forms of the hook as for
 * enf_inode_setattr3/2 (the loader keeps the one the verifier accepts). */
SEC("lsm/inode_setattr")
int BPF_PROG(enf_seal_inode_setattr3, void *idmap, struct dentry *dentry, struct iattr *attr,
	     int ret)
{
	if (ret != 0)
		return ret;
	if (!(attr->ia_valid & ATTR_SIZE))
		return 0;
	return seal_guard(NULL, dentry->d_inode, ENF_HOOK_INODE_SETATTR);
}

SEC("lsm/inode_setattr")
int BPF_PROG(enf_seal_inode_setattr2, struct dentry *dentry, struct iattr *attr, int ret)
{
	if (ret != 0)
		return ret;
	if (!(attr->ia_valid & ATTR_SIZE))
		return 0;
	return seal_guard(NULL, dentry->d_inode, ENF_HOOK_INODE_SETATTR);
}

#endif /* IMGSIGN_ENF_SEAL_H */
