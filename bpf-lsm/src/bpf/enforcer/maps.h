/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The enforcer's maps shared by every part (scopes, digest sets, events,
 * stats) and the stats counter.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_MAPS_H
#define IMGSIGN_ENF_MAPS_H

/* Not preallocated: an element deleted while a sleeping program holds a
 * pointer to it is freed after an RCU tasks trace grace period, never
 * reused for another key meanwhile (see find_scope). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u64); /* cgroup id */
	__type(value, struct enf_scope);
} enf_scopes SEC(".maps");

/* Preallocated, like enf_allowed: a program confirms what it read (an
 * element can be reused for another key at once; see allowed_in and
 * privs_read). */
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
	__type(value, struct enf_privs); /* read only through privs_read (privs.h) */
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

/* Which layout and build the pin directory holds (abi.h, struct
 * enf_identity). No program reads it: it is the loader's record, pinned by
 * name, so the next loader knows what it takes over. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_identity);
} enf_identity SEC(".maps");

/* Per-scope counters and event numbers (events.h). An LRU hash: entries
 * are made by the programs on a scope's first decision and never deleted,
 * so the least recently used (scopes long gone; cgroup ids are not reused)
 * make room. Preallocated: an entry evicted while a program holds it can be
 * reused for another scope at once, which can misplace one count, no more. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* the scope's cgroup id */
	__type(value, struct enf_scope_stats);
} enf_scope_stats SEC(".maps");

/* The check word of an enf_allowed element for `key`: user space writes it
 * into every value (src/enforcer/privs.rs spells the same formula). */
static __always_inline __u32 privs_check_word(const struct enf_digest_key *key)
{
	__u32 first;

	__builtin_memcpy(&first, key->digest, sizeof(first));
	return first ^ key->set_id ^ ENF_PRIVS_CHECK_SALT;
}

/* Copies the enf_allowed value `found` (looked up with `key`) into `privs`;
 * 0 if it may belong to another key. enf_allowed is preallocated: an
 * element deleted (a set replaced) while a sleepable program that looked it
 * up is preempted can be reused at once by an insert for another key, so a
 * bare copy could be another digest's privileges. The check word is read
 * before and after the copy and must be the one of `key` both times (an
 * insert writes the key, then the value: caps, then check). A mismatch is
 * a miss: the set was replaced, so allowed_in looks again. */
static __always_inline int privs_read(const struct enf_privs *found,
				      const struct enf_digest_key *key, struct enf_privs *privs)
{
	__u32 want = privs_check_word(key);

	if (*(volatile const __u32 *)&found->check != want)
		return 0;
	asm volatile("" ::: "memory");
	privs->caps = *(volatile const __u64 *)&found->caps;
	privs->shapes = *(volatile const __u8 *)&found->shapes;
	asm volatile("" ::: "memory");
	return *(volatile const __u32 *)&found->check == want;
}

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&enf_stats, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

#endif /* IMGSIGN_ENF_MAPS_H */
