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

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&enf_stats, &slot);

	if (n)
		__sync_fetch_and_add(n, 1);
}

#endif /* IMGSIGN_ENF_MAPS_H */
