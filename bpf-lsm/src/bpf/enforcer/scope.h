/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Which scope a task is in (sticky across cgroup moves), and whether the
 * scope's digest set in force holds a digest (the set replacement argument
 * is in enforcer.bpf.c).
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_SCOPE_H
#define IMGSIGN_ENF_SCOPE_H

/*
 * Sticky scopes. A task is bound to the scope it was in: its task storage
 * (enf_task_scope) records the scope's cgroup id and entry at the task's
 * first decision inside a scope (any program calling find_scope: an exec,
 * an executable mapping, a fork, bpf(), ...), and a child gets its parent's
 * record at fork (enf_task_alloc, enforcer/guard.h). A decision inside a
 * scope nested within the recorded one narrows the record to it.
 *   - A task still in its sticky scope's subtree (the recorded cgroup is
 *     among its cgroup's ancestors) is judged as before: by the scope of its
 *     nearest scoped ancestor; a scope removed from the policy no longer
 *     applies to it.
 *   - A task that left it (a write to another cgroup's cgroup.procs, or
 *     moved by someone else) into a cgroup under no scope is judged by the
 *     sticky scope (find_scope returns it, marked ENF_SCOPE_ESCAPED, and a
 *     refusal is reported with reason ESCAPE), so every program that asks
 *     whether a task is scoped sees the escaped task as scoped. A task that
 *     moved into ANOTHER scope is judged by that scope only (judging it by
 *     both, as was tried, walks the cgroups once more per decision and made
 *     the exec program too large for 6.1's verifier).
 *   - If the sticky scope's entry is gone (the scope was removed after the
 *     task escaped), the recorded entry decides: fail closed. An escaped
 *     task of an enforce scope keeps being refused what its scope's digest
 *     set (as long as it exists) does not hold, and everything once the set
 *     is gone.
 * Not covered: a task that entered a scope before the enforcer was loaded
 * and made no decision and no fork since has no record yet; leaving then
 * escapes (its next decision happens outside).
 */
/* Set in the `pad` of a scope copy (never in the map) when find_scope
 * returned the sticky scope of a task that left it. */
#define ENF_SCOPE_ESCAPED 1

struct enf_sticky {
	__u64 cgroup_id;        /* the sticky scope's cgroup */
	struct enf_scope scope; /* its entry when last seen */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct enf_sticky);
} enf_task_scope SEC(".maps");

/* A copy of the enf_scopes entry of `id`, into `scope`; 0 if there is none.
 * The value is read in one 8-byte load and confirmed by a second lookup
 * that must find the same element still holding it: hash elements are
 * allocated on insert (BPF_F_NO_PREALLOC), but bpf_mem_alloc may hand a
 * deleted element to the next insert on the same CPU while a sleepable
 * program that looked it up is preempted, so a bare copy could be another
 * key's value. What is returned is a value `id` had at the second lookup. */
static __always_inline int scope_entry(__u64 id, struct enf_scope *scope)
{
	__u64 *found, *again, raw;

	found = bpf_map_lookup_elem(&enf_scopes, &id);
	if (!found)
		return 0;
	raw = *(volatile __u64 *)found;
	again = bpf_map_lookup_elem(&enf_scopes, &id);
	if (!again)
		return 0; /* removed meanwhile */
	if (again != found || *(volatile __u64 *)again != raw)
		raw = *(volatile __u64 *)again; /* changed meanwhile: the newer one */
	__builtin_memcpy(scope, &raw, sizeof(*scope));
	return 1;
}

/* Walks the current task's cgroup ancestors: the nearest one that is a key
 * of enf_scopes (copied into `scope`, its id into `scope_cgroup_id`;
 * returns 0 if none) and whether `sticky_id` is among them (`inside`).
 * Level 0 is the root; an ancestor id of 0 means the task's own cgroup is
 * above that level. The deepest match wins. */
static __always_inline int walk_scopes(struct enf_scope *scope, __u64 *scope_cgroup_id,
				       __u64 sticky_id, int *inside)
{
	__u64 id;
	int level, hit = 0;

	*inside = 0;
	for (level = 0; level < ENF_MAX_CGROUP_LEVEL; level++) {
		id = bpf_get_current_ancestor_cgroup_id(level);
		if (!id)
			break;
		if (id == sticky_id)
			*inside = 1;
		if (scope_entry(id, scope)) {
			*scope_cgroup_id = id;
			hit = 1;
		}
	}
	return hit;
}

/* The scope of the current task: its nearest ancestor cgroup (itself
 * included) that is a key of enf_scopes; if there is none and the task left
 * its sticky scope, the sticky scope (see above). Copies the scope entry
 * (scope_entry) and the scope's cgroup id; returns 0 if there is none.
 * Records or narrows the task's sticky scope. */
static __always_inline int find_scope(struct enf_scope *scope, __u64 *scope_cgroup_id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct enf_sticky *sticky;
	__u64 sticky_id = 0;
	int inside;

	sticky = bpf_task_storage_get(&enf_task_scope, task, 0, 0);
	if (sticky)
		sticky_id = sticky->cgroup_id;
	if (walk_scopes(scope, scope_cgroup_id, sticky_id, &inside)) {
		if (!sticky_id || inside) {
			/* First decision in a scope, or one inside the sticky
			 * scope's subtree: bound to this (deepest) scope. */
			if (!sticky)
				sticky = bpf_task_storage_get(&enf_task_scope, task, 0,
							      BPF_LOCAL_STORAGE_GET_F_CREATE);
			if (sticky) {
				sticky->cgroup_id = *scope_cgroup_id;
				sticky->scope = *scope;
			}
		}
		return 1;
	}
	if (!sticky_id || inside)
		return 0; /* never scoped, or its scope was removed while it stayed */
	/* Escaped to a cgroup under no scope: the sticky scope decides; its
	 * recorded entry if it is gone (fail closed). */
	if (!scope_entry(sticky_id, scope))
		*scope = sticky->scope;
	scope->pad = ENF_SCOPE_ESCAPED; /* only in this copy: decide() reports ESCAPE */
	*scope_cgroup_id = sticky_id;
	return 1;
}

/* The scope a decision is about, read again: the task's (find_scope), or
 * with `fixed` the entry of cgroup *scope_cgroup_id (a sticky scope; its
 * last copy stays if the entry is gone). */
static __always_inline int reread_scope(struct enf_scope *scope, __u64 *scope_cgroup_id, int fixed)
{
	if (!fixed)
		return find_scope(scope, scope_cgroup_id);
	scope_entry(*scope_cgroup_id, scope);
	return 1;
}

/* Whether the digest set in force for the scope holds key->digest (see the
 * replacement argument at the top). On a miss it looks again, at most
 * ENF_SET_ATTEMPTS times, as long as the scope entry or the scope's set id
 * changed since the previous look; `scope` and `scope_cgroup_id` end up
 * describing the scope of the last look, and `privs` the privileges the
 * digest may have (privs.h). Without `fixed` the scope is the
 * current task's, looked up again each time; with it, cgroup
 * *scope_cgroup_id's. */
static __always_inline int allowed_in(struct enf_scope *scope, __u64 *scope_cgroup_id,
				      struct enf_digest_key *key, int fixed, struct enf_privs *privs)
{
	struct enf_privs *found;
	__u32 *set, set_id, last_scope = 0, last_set = 0;
	int attempt;

	for (attempt = 0; attempt < ENF_SET_ATTEMPTS; attempt++) {
		if (attempt > 0 && !reread_scope(scope, scope_cgroup_id, fixed))
			return 0; /* the scope went away meanwhile: still unknown */
		set = bpf_map_lookup_elem(&enf_sets, &scope->scope_id);
		set_id = set ? *(volatile __u32 *)set : 0;
		/* enf_sets is preallocated: an element deleted while this
		 * program slept may already hold another scope's set id. The
		 * same element must still be the scope's (privs_read does the
		 * same for enf_allowed with a check word). */
		if (set && bpf_map_lookup_elem(&enf_sets, &scope->scope_id) != set)
			set = NULL;
		if (attempt > 0 && scope->scope_id == last_scope && set_id == last_set)
			return 0; /* nothing changed and still missing: unknown */
		last_scope = scope->scope_id;
		last_set = set_id;
		if (!set)
			continue; /* no set (yet): nothing allowed */
		key->set_id = set_id;
		found = bpf_map_lookup_elem(&enf_allowed, key);
		if (found && privs_read(found, key, privs))
			return 1;
	}
	return 0;
}

/* Whether the digest set in force for the current task holds key->digest.
 * A retry re-reads the entry of the same scope cgroup (which is where a
 * replacement switches the scope id) rather than walking the cgroups again:
 * a second walk per retry made the exec program too large for 6.1's
 * verifier once sticky scopes were added. */
static __always_inline int allowed(struct enf_scope *scope, __u64 *scope_cgroup_id,
				   struct enf_digest_key *key, struct enf_privs *privs)
{
	return allowed_in(scope, scope_cgroup_id, key, 1, privs);
}

#endif /* IMGSIGN_ENF_SCOPE_H */
