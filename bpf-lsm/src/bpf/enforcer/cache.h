/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per-inode digest cache: what makes a warm exec cost no hash. The
 * soundness argument is below; every change to this file must keep it true.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_CACHE_H
#define IMGSIGN_ENF_CACHE_H

/* ---------------------------------------------------------------------------
 * Per-inode digest cache (what makes a warm exec cost no hash)
 * ---------------------------------------------------------------------------
 * `enf_inode_cache` (BPF_MAP_TYPE_INODE_STORAGE) holds, per in-memory inode,
 * { write_gen, seq, cached, digest }. It caches the DIGEST of the content,
 * not a verdict: every decision still looks the digest up in the scope's set
 * in force, so replacing a set or moving a cgroup needs no invalidation.
 *
 * Claim: a digest taken from the cache equals the SHA-256 of the inode's
 * content at the time of the decision (for exec, where exec holds
 * deny_write_access, exactly; for mmap_file up to the same write-after-check
 * window an uncached hash has).
 *
 * 1. Every content change of a regular file on the whitelisted filesystems
 *    (below) goes through one of:
 *    a. a struct file with FMODE_WRITE (write, pwrite, writev, splice,
 *       copy_file_range, fallocate, ftruncate, io_uring, reflink
 *       destinations, MAP_SHARED|PROT_WRITE mappings, which keep that file
 *       alive; dedupe may target a read-only fd, but only replaces ranges
 *       with identical bytes). Such a file is made by do_dentry_open(), which takes write
 *       access (i_writecount++, an atomic RMW) BEFORE it calls
 *       security_file_open(): so while such a file exists i_writecount > 0,
 *       and after it was made `write_gen` was bumped (enf_file_open, with
 *       __sync_fetch_and_add). The same holds for files the kernel opens for
 *       itself (filp_open, kernel_file_open, nfsd, ksmbd, overlayfs opening
 *       its real upper inode, coredumps, swapon, loop devices).
 *    b. notify_change() with ATTR_SIZE (truncate(2), open(O_TRUNC) even
 *       with O_RDONLY, ftruncate, and truncation done for another layer:
 *       nfsd SETATTR, overlayfs truncating its upper inode, ksmbd), which
 *       calls security_inode_setattr() before the size changes: enf_inode_setattr
 *       bumps `write_gen` there. (path_truncate alone would miss nfsd's and
 *       overlayfs's truncations of a real inode, and on 6.2+ open(O_TRUNC)
 *       goes through file_truncate instead; inode_setattr sees all of them.
 *       enf_file_open also bumps on O_TRUNC, which do_dentry_open strips
 *       only after security_file_open.)
 *    Rename of another file onto the path, or a copy replacing it, is a
 *    different inode: it has its own (empty) storage. An inode evicted from
 *    memory loses its storage: the next decision hashes again.
 *    Pseudo files that never pass through do_dentry_open (memfd_create, SysV
 *    shm: shmem files made by alloc_file_pseudo, writable without a write
 *    count) are unlinked (i_nlink == 0) and are never cached; nor is any
 *    other inode with i_nlink == 0, nor anything but a regular file.
 * 2. Filesystems: only where every content change of an inode goes through
 *    1a/1b on that very inode, by s_magic: ext4 (and ext2/3) 0xEF53, xfs,
 *    ramfs, btrfs. NOT tmpfs/shmem: long-term pinned pages (io_uring fixed
 *    buffers registered on a MAP_SHARED mapping of the file, then the
 *    mapping unmapped and the fd closed) write its pages with no writer
 *    open and no hook called. The kernel allows such write pins of file
 *    pages only on shmem and hugetlbfs (io_uring's own check on 6.1, GUP's
 *    FOLL_LONGTERM check since 6.5), so the disk filesystems above and
 *    ramfs are not exposed. NOT NFS, FUSE, 9p, CIFS (content changes on
 *    another machine or in a user-space server; fs.h refuses code from
 *    those unless a scope opts in). Overlayfs: see point 6. Out of scope,
 *    as for IMA: writes to the block device under a mounted filesystem,
 *    and kernel bugs that change page-cache pages without a writer.
 * 3. Fill (after a miss): g0 = write_gen (atomic RMW: a full barrier), then
 *    i_writecount; if it is > 0 (writers may exist) the cache is neither
 *    used nor filled. Hash. Then i_writecount again (must be <= 0) and
 *    write_gen again (must still be g0), then store {digest, cached = g0+1}.
 *    A writer does i_writecount++ ; write_gen++ ; writes ; i_writecount--.
 *    If it wrote bytes the hash read, its i_writecount++ precedes them, so the
 *    second i_writecount read either sees it (> 0: no fill) or sees its
 *    decrement, in which case the write_gen read after it sees its bump
 *    (!= g0: no fill), unless the bump was already in g0, in which case
 *    the first i_writecount read saw it held (> 0: no cache at all). A
 *    writer whose bump comes after the fill's check makes write_gen != cached
 *    - 1 for every later use.
 *    The programs bumping write_gen look the storage up without creating it
 *    (so writes to files never executed cost no allocation). A writer that
 *    found no storage raced with its creation: writer {i_writecount++ (full
 *    barrier); look up} against filler {create; g0 (full barrier); read
 *    i_writecount}: at least one sees the other, so either the bump lands
 *    or the filler sees the writer and caches nothing.
 * 4. Use: {cached, digest} copied under `seq` (a seqcount: a filler makes it
 *    odd with a compare-and-swap, writes, makes it even; a reader retries
 *    never, it just hashes when seq was odd or moved). Then i_writecount
 *    must be <= 0 and write_gen must equal cached - 1, read in that order
 *    (as in 3). During exec, exec holds deny_write_access (i_writecount < 0,
 *    every open for write fails with ETXTBSY, seen on both lab kernels),
 *    so the content is frozen for the whole decision: the cached digest is
 *    the content that runs. (A kernel that stopped denying write access
 *    during exec would still be covered by the i_writecount/write_gen
 *    checks, with the same write-after-check window as an uncached hash.)
 *    Two fillers with the same g0 hashed the same content; fillers with
 *    different g0 are serialised by seq, and the older one's `cached` no
 *    longer matches write_gen.
 * 5. Attach order: the loader attaches enf_file_open and enf_inode_setattr
 *    before the hooks that fill, and detaches/unpins them after, so no
 *    change can go unseen while a cache entry may be filled or used. Writers
 *    that opened before the programs were attached hold i_writecount > 0.
 * 6. Overlayfs (one level). The entry lives on the OVERLAY inode O (the
 *    programs hold a typed pointer to it; the real inode they reach only
 *    as an address, fs.h) and records in `real` the address of the real
 *    inode R whose content was hashed: the file the overlay file maps
 *    (its private_data), which fs.h's watch checks is the one the hash
 *    read. A use requires the decision's mapped real inode to be R again.
 *    R must be a linked regular file on a cacheable file system (point 2).
 *    While O lives it holds references on its real inodes, so the address
 *    R names the same inode for the entry's whole life (an evicted O takes
 *    its entry with it). R's content changes in one of two ways:
 *    a. through O: a write through the overlay to a lower R copies the
 *       file up into a NEW upper inode (the mapped inode differs: a miss);
 *       an upper R is written through an overlay file opened for write,
 *       which takes write access on O itself before overlayfs opens R
 *       (O's i_writecount, and enf_file_open bumps O's write_gen), or is
 *       truncated by notify_change on O (enf_inode_setattr bumps O). Exec
 *       holds deny_write_access on O.
 *    b. behind the overlay, on R directly (the host writing a layer, or
 *       another mount of it): such a write opens R itself for write, or
 *       truncates it, and points 1a/1b apply to R. R's own storage is out
 *       of reach, so `enf_real_gen` (an LRU hash keyed by R's address)
 *       stands for its write_gen: bump() stores a never used value from
 *       enf_real_clock in R's entry if there is one, the fill makes the
 *       entry and reads it before the hash (then R's i_writecount, the
 *       order of point 3) and again after, and a use needs it unchanged.
 *       An entry evicted (LRU) or made again holds a value no fill saw: a
 *       miss. R's i_writecount is checked at fill and use like O's.
 *    Nested overlays are not cached.
 * Cache hits and fills are counted in enf_stats (slots 1 and 2).
 */

/* Per-inode digest cache (see the argument at the top). 72 bytes. */
struct enf_inode {
	__u64 write_gen; /* bumped before every possible content change */
	__u64 seq;       /* even: stable; odd: a fill is writing */
	__u64 cached;    /* write_gen + 1 of the hashed content; 0: nothing */
	__u64 real;      /* address of the inode whose content was hashed (point 6) */
	__u64 real_gen;  /* its enf_real_gen value when hashed (point 6) */
	__u8 digest[ENF_SHA256_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enf_inode);
} enf_inode_cache SEC(".maps");

/* Write generations of real inodes under an overlay, by inode address
 * (point 6): the programs cannot reach a real inode's storage, so writers
 * bump this entry too. An evicted entry only makes a later use miss. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} enf_real_gen SEC(".maps");

/* The source of enf_real_gen values: each value is used once, so an entry
 * evicted and made again never matches a generation recorded before. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} enf_real_clock SEC(".maps");

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
	       magic == 0x858458F6 ||  /* ramfs */
	       magic == 0x9123683E;    /* btrfs */
}

static __always_inline int has_writers(struct inode *inode)
{
	return BPF_CORE_READ(inode, i_writecount.counter) > 0;
}

/* A never used generation value (0 if the clock cannot be read). */
static __always_inline __u64 real_clock_next(void)
{
	__u32 zero = 0;
	__u64 *clock = bpf_map_lookup_elem(&enf_real_clock, &zero);

	return clock ? __sync_fetch_and_add(clock, 1) + 1 : 0;
}

/* The write generation of real inode `real`, its entry made if missing
 * (with a full barrier after, point 3's order); 0 if it cannot be made. */
static __always_inline __u64 real_gen_begin(__u64 real)
{
	__u64 *gen = bpf_map_lookup_elem(&enf_real_gen, &real), fresh;

	if (!gen) {
		fresh = real_clock_next();
		if (!fresh)
			return 0;
		bpf_map_update_elem(&enf_real_gen, &real, &fresh, BPF_NOEXIST);
		gen = bpf_map_lookup_elem(&enf_real_gen, &real);
		if (!gen)
			return 0;
	}
	return read_once_full(gen);
}

/* The write generation of real inode `real` now; 0 if it has no entry. */
static __always_inline __u64 real_gen_now(__u64 real)
{
	__u64 *gen = bpf_map_lookup_elem(&enf_real_gen, &real);

	return gen ? read_once_full(gen) : 0;
}

/* Whether the real (mapped) file under one overlay level may be cached:
 * a linked regular file on a cacheable file system. `real` is an address
 * read from the overlay file (fs.h): probe reads only. */
static __always_inline int real_cacheable(struct inode *real)
{
	if ((BPF_CORE_READ(real, i_mode) & S_IFMT) != S_IFREG)
		return 0;
	if (BPF_CORE_READ(real, __i_nlink) == 0)
		return 0;
	return cacheable_fs(BPF_CORE_READ(real, i_sb, s_magic));
}

/* The cache entry of `inode` (the file's own inode, an overlay inode under
 * overlayfs), created if missing, or NULL if the content may not be cached
 * (argument, points 1, 2 and 6). */
static __always_inline struct enf_inode *cache_entry(struct inode *inode, const struct enf_fs *fs)
{
	if (!inode || fs->unknown || fs->depth > 1)
		return NULL;
	if ((BPF_CORE_READ(inode, i_mode) & S_IFMT) != S_IFREG)
		return NULL;
	if (BPF_CORE_READ(inode, __i_nlink) == 0)
		return NULL; /* memfd, shm, unlinked: maybe writable without a count */
	if (fs->depth == 1) {
		if (!real_cacheable((struct inode *)fs->inodes[1]))
			return NULL;
	} else if (!cacheable_fs(BPF_CORE_READ(inode, i_sb, s_magic))) {
		return NULL;
	}
	return bpf_inode_storage_get(&enf_inode_cache, inode, 0,
				     BPF_LOCAL_STORAGE_GET_F_CREATE);
}

/* Copies the cached digest into `digest` if it is current for the mapped
 * inode `real` (argument, points 4 and 6). */
static __always_inline int cache_use(struct enf_inode *c, struct inode *inode, __u64 real,
				     __u8 *digest)
{
	__u8 copy[ENF_SHA256_LEN];
	__u64 s1, s2, cached, cached_real, cached_real_gen;

	s1 = read_once_full(&c->seq);
	if (s1 & 1)
		return 0;
	cached = c->cached;
	cached_real = c->real;
	cached_real_gen = c->real_gen;
	__builtin_memcpy(copy, c->digest, ENF_SHA256_LEN);
	s2 = read_once_full(&c->seq);
	if (s1 != s2 || !cached || cached_real != real)
		return 0;
	if (has_writers(inode) || has_writers((struct inode *)real))
		return 0;
	if (read_once_full(&c->write_gen) + 1 != cached)
		return 0;
	if ((__u64)inode != real && real_gen_now(real) != cached_real_gen)
		return 0; /* the real inode was (or may have been) written */
	__builtin_memcpy(digest, copy, ENF_SHA256_LEN);
	return 1;
}

/* Stores `digest` of the mapped inode `real`, hashed after write_gen read
 * g0, if nothing could have changed the content since (argument, point 3). */
static __always_inline void cache_fill(struct enf_inode *c, struct inode *inode, __u64 real,
				       __u64 g0, __u64 real_g0, const __u8 *digest)
{
	__u64 s;

	if (has_writers(inode) || has_writers((struct inode *)real))
		return;
	if (read_once_full(&c->write_gen) != g0)
		return;
	if ((__u64)inode != real && (!real_g0 || real_gen_now(real) != real_g0))
		return;
	s = read_once_full(&c->seq);
	if (s & 1)
		return;
	if (__sync_val_compare_and_swap(&c->seq, s, s + 1) != s)
		return; /* another fill is writing */
	__builtin_memcpy(c->digest, digest, ENF_SHA256_LEN);
	c->real = real;
	c->real_gen = real_g0;
	c->cached = g0 + 1;
	__sync_fetch_and_add(&c->seq, 1);
	count(ENF_STAT_CACHE_FILLS);
}

/* SHA-256 of the content `file` maps into `digest`, from the cache when it
 * is current; returns what bpf_ima_file_hash() would (4 for SHA-256), or
 * -ESTALE when the hash of an overlay file read another real file than the
 * one it maps (fs.h). */
static __always_inline __s32 file_digest(struct file *file, const struct enf_fs *fs, __u8 *digest)
{
	struct inode *inode = file->f_inode;
	struct enf_inode *c = cache_entry(inode, fs);
	__u64 real = fs->depth == 1 ? fs->inodes[1] : fs->inodes[0], g0 = 0, real_g0 = 0;
	__s32 ret;

	if (c) {
		if (cache_use(c, inode, real, digest)) {
			count(ENF_STAT_CACHE_HITS);
			return ENF_HASH_ALGO_SHA256;
		}
		g0 = read_once_full(&c->write_gen);
		if ((__u64)inode != real)
			real_g0 = real_gen_begin(real);
		if (has_writers(inode) || has_writers((struct inode *)real))
			c = NULL; /* writers may exist: neither use nor fill */
	}
	if (!fs_watch_begin(fs))
		return -ENF_ESTALE;
	ret = bpf_ima_file_hash(file, digest, ENF_SHA256_LEN);
	if (!fs_watch_end(fs))
		return -ENF_ESTALE; /* the hash read another file than the mapped one */
	if (c && ret == ENF_HASH_ALGO_SHA256)
		cache_fill(c, inode, real, g0, real_g0, digest);
	return ret;
}

/* A possible content change of `inode` is coming: invalidate its entry.
 * No entry is created (argument, end of point 3). */
static __always_inline void bump(struct inode *inode)
{
	struct enf_inode *c;
	__u64 addr = (__u64)inode, *gen, fresh;

	if (!inode)
		return;
	c = bpf_inode_storage_get(&enf_inode_cache, inode, 0, 0);
	if (c)
		__sync_fetch_and_add(&c->write_gen, 1);
	/* The inode may be the real file of a cached overlay file (point 6). */
	gen = bpf_map_lookup_elem(&enf_real_gen, &addr);
	if (gen) {
		fresh = real_clock_next();
		*(volatile __u64 *)gen = fresh;
		__sync_fetch_and_add(gen, 0); /* a full barrier after the store */
	}
}

#endif /* IMGSIGN_ENF_CACHE_H */
