/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which scope a task is in, and whether the scope's digest set in force
 * holds a digest (the set replacement argument is in enforcer.bpf.c).
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_SCOPE_H
#define IMGSIGN_ENF_SCOPE_H

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

#endif /* IMGSIGN_ENF_SCOPE_H */
