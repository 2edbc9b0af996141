/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which file a decision is about: overlayfs' real file, and remote file
 * systems.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 *
 * Overlayfs. An overlay file F keeps in F->private_data the real (lower or
 * upper) file it opened at open time (a `struct file *` on 6.1 and 6.12).
 * ovl_mmap maps THAT file, for ever, whatever happens to the overlay entry
 * later; reads through F (and so bpf_ima_file_hash(F)) go to the entry's
 * CURRENT real data file, which after a copy-up is a new upper inode that
 * overlayfs opens for the read (a kernel open through do_dentry_open, so
 * security_file_open sees it). The attack: open F while the file is only in
 * the lower layer, copy it up (open for write through the overlay) and write
 * other bytes, then mmap PROT_EXEC through the old F: the hash reads the
 * upper, the mapping runs the lower.
 *
 * The decision must be about the mapped file. A BPF program cannot hash it
 * directly: private_data is a `void *`, so the verifier gives the program a
 * number, not a `struct file` pointer that bpf_ima_file_hash() (or
 * bpf_inode_storage_get(), for the cache) would accept, on both lab kernels
 * (bpf_rdonly_cast exists from 6.3 and yields an untrusted pointer those
 * helpers refuse as well). So the enforcer proves instead that the hash of
 * F read the mapped inode: it notes the inodes of F and of its real file
 * (read with probe reads), hashes F, and watches (enf_file_open, through
 * fs_note_open) every file the hashing task opens meanwhile. Overlayfs
 * reads F's private_data file directly while its inode is the entry's
 * current real data, and opens another real file otherwise; an open of an
 * inode other than those noted means the hash read other bytes than the
 * mapping holds: the content is then treated as unknown (refused in enforce
 * mode, hash_ret -ESTALE in the event). Without such an open every byte
 * hashed came from the mapped inode. A copy-up after the hash changes
 * nothing for this mapping: ovl_mmap still maps private_data. A
 * private_data that does not look like the real file (its path is neither
 * the overlay file's nor its own inode's) makes the content unknown.
 *
 * The digest cache (cache.h, point 6) keys overlay files on their overlay
 * inode and records which real inode the digest is of, so a warm exec from
 * an overlay rootfs is not hashed again while the mapped file is the same.
 *
 * Remote file systems. FUSE, NFS, 9p, CIFS/SMB2 and ceph can serve one
 * content to the hash and another to the page fault that maps it (the
 * server, or another machine, decides what each read returns). Exec and
 * executable mappings of their files are refused in enforce scopes unless
 * the scope has ENF_FLAG_REMOTE_FS, judged on the super block of the real
 * file (an overlay over them counts), with reason ENF_REASON_REMOTE_FS.
 */
#ifndef IMGSIGN_ENF_FS_H
#define IMGSIGN_ENF_FS_H

#define ENF_OVERLAYFS_MAGIC 0x794c7630
/* Overlays stack at most FILESYSTEM_MAX_STACK_DEPTH (2) deep. */
#define ENF_OVL_DEPTH 2
#define ENF_ESTALE 116

/* What a decision about a file concerns. */
struct enf_fs {
	/* Inode addresses (never dereferenced but by probe reads): the file's
	 * own, then each real file's under overlayfs; the last one is mapped. */
	__u64 inodes[ENF_OVL_DEPTH + 1];
	__u32 depth;          /* overlay levels crossed: 0 for a plain file */
	__u32 remote;         /* the mapped inode is on a remote file system */
	__u32 unknown;        /* an overlay file whose real file was not found */
	__u32 pad;
};

/* Per task (key: pid_tgid) while it hashes an overlay file. */
struct enf_ovl_watch {
	__u64 inodes[ENF_OVL_DEPTH + 1];
	__u32 diverged; /* the hash opened another real file */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct enf_ovl_watch);
} enf_ovl_watch SEC(".maps");

/* How many tasks hash an overlay file now: enf_file_open looks at the watch
 * map only when this is not 0. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} enf_ovl_watchers SEC(".maps");

static __always_inline int remote_fs(unsigned long magic)
{
	return magic == 0x65735546 ||  /* FUSE */
	       magic == 0x6969 ||      /* NFS */
	       magic == 0x01021997 ||  /* 9p */
	       magic == 0xFF534D42 ||  /* CIFS */
	       magic == 0xFE534D42 ||  /* SMB2 */
	       magic == 0x00c36400;    /* ceph */
}

/* Fills `fs` for `file`: the real files under overlayfs, and whether the
 * mapped one is on a remote file system. */
static __always_inline void fs_judge(struct file *file, struct enf_fs *fs)
{
	struct file *f = file, *real;
	struct dentry *dentry;
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	unsigned long magic = BPF_CORE_READ(inode, i_sb, s_magic);
	int level;

	fs->inodes[0] = (__u64)inode;
	fs->depth = 0;
	for (level = 1; level <= ENF_OVL_DEPTH; level++) {
		if (magic != ENF_OVERLAYFS_MAGIC)
			break;
		if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
			break;
		/* private_data: the real file (a void *: probe reads only). */
		real = (struct file *)BPF_CORE_READ(f, private_data);
		inode = real ? BPF_CORE_READ(real, f_inode) : NULL;
		dentry = real ? BPF_CORE_READ(real, f_path.dentry) : NULL;
		/* Check that it is one: its path is the overlay file's (6.1:
		 * open_with_fake_path) or its own inode's (6.12: a backing file
		 * on the real path). A kernel whose private_data is something
		 * else (6.13+: struct ovl_file) fails here: unknown, refused. */
		if (!inode || !dentry ||
		    (dentry != BPF_CORE_READ(f, f_path.dentry) &&
		     BPF_CORE_READ(dentry, d_inode) != inode)) {
			fs->unknown = 1;
			return;
		}
		f = real;
		magic = BPF_CORE_READ(inode, i_sb, s_magic);
		fs->inodes[level] = (__u64)inode;
		fs->depth = level;
	}
	fs->remote = remote_fs(magic);
}

static __always_inline __u64 *ovl_watchers(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&enf_ovl_watchers, &zero);
}

/* Before hashing an overlay file: watch the task's opens. Returns 0 if the
 * watch could not be set up (then the hash cannot be trusted). */
static __always_inline int fs_watch_begin(const struct enf_fs *fs)
{
	struct enf_ovl_watch w = {};
	__u64 key = bpf_get_current_pid_tgid();
	__u64 *n = ovl_watchers();

	if (!fs->depth)
		return 1;
	if (!n)
		return 0;
	__builtin_memcpy(w.inodes, fs->inodes, sizeof(w.inodes));
	if (bpf_map_update_elem(&enf_ovl_watch, &key, &w, BPF_ANY))
		return 0;
	__sync_fetch_and_add(n, 1);
	return 1;
}

/* After hashing: whether every byte hashed came from the mapped inode. */
static __always_inline int fs_watch_end(const struct enf_fs *fs)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct enf_ovl_watch *w;
	__u64 *n = ovl_watchers();
	int ok;

	if (!fs->depth)
		return 1;
	w = bpf_map_lookup_elem(&enf_ovl_watch, &key);
	ok = w && !*(volatile __u32 *)&w->diverged;
	bpf_map_delete_elem(&enf_ovl_watch, &key);
	if (n)
		__sync_fetch_and_sub(n, 1);
	return ok;
}

/* From enf_file_open: an open by a task hashing an overlay file. */
static __always_inline void fs_note_open(struct file *file)
{
	__u64 key, inode, *n = ovl_watchers();
	struct enf_ovl_watch *w;
	int i;

	if (!n || !*(volatile __u64 *)n)
		return;
	key = bpf_get_current_pid_tgid();
	w = bpf_map_lookup_elem(&enf_ovl_watch, &key);
	if (!w)
		return;
	inode = (__u64)BPF_CORE_READ(file, f_inode);
	for (i = 0; i <= ENF_OVL_DEPTH; i++)
		if (w->inodes[i] == inode)
			return;
	w->diverged = 1;
}

#endif /* IMGSIGN_ENF_FS_H */
