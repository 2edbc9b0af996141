/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Decision events: who (task, namespaces, cgroup), what (file, digest),
 * which hook and verdict, written to the enf_events ring buffer.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_EVENTS_H
#define IMGSIGN_ENF_EVENTS_H

/* The current task's tgid and pid namespace inode, as seen from its own
 * (innermost) pid namespace. */
static __always_inline void task_pid_ns(__u32 *ns_tgid, __u32 *pid_ns)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
	struct upid upid = {};
	unsigned int level;

	*ns_tgid = 0;
	*pid_ns = 0;
	if (!pid)
		return;
	level = BPF_CORE_READ(pid, level);
	/* pid->numbers[level], with every offset CO-RE relocated (numbers is
	 * a flexible array whose length is level + 1). */
	if (bpf_probe_read_kernel(&upid, sizeof(upid),
				  (void *)pid + bpf_core_field_offset(struct pid, numbers) +
					  (__u64)level * bpf_core_type_size(struct upid)))
		return;
	*ns_tgid = upid.nr;
	*pid_ns = BPF_CORE_READ(upid.ns, ns.inum);
}

/* The counters of the scope whose cgroup id is `scope_cgroup_id`, made on
 * first use; NULL only if the map refuses (then nothing is counted). */
static __always_inline struct enf_scope_stats *scope_stats(__u64 scope_cgroup_id)
{
	struct enf_scope_stats zero = {};
	struct enf_scope_stats *s;

	s = bpf_map_lookup_elem(&enf_scope_stats, &scope_cgroup_id);
	if (s)
		return s;
	/* Another CPU may make it first: BPF_NOEXIST keeps its counts. */
	bpf_map_update_elem(&enf_scope_stats, &scope_cgroup_id, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&enf_scope_stats, &scope_cgroup_id);
}

/* Counts one decision of `verdict` in `s` (may be NULL). */
static __always_inline void tally(struct enf_scope_stats *s, __u8 verdict)
{
	if (!s)
		return;
	if (verdict == ENF_VERDICT_ALLOW)
		__sync_fetch_and_add(&s->allowed, 1);
	else if (verdict == ENF_VERDICT_DENY)
		__sync_fetch_and_add(&s->denied, 1);
	else if (verdict == ENF_VERDICT_AUDIT)
		__sync_fetch_and_add(&s->audited, 1);
}

static __always_inline void emit(struct file *file, __u8 hook, __u8 verdict, __u8 reason,
				 __u64 cgroup_id, __u64 scope_cgroup_id,
				 const struct enf_scope *scope, __s32 hash_ret,
				 const __u8 *digest)
{
	struct enf_scope_stats *stats = scope_stats(scope_cgroup_id);
	struct task_struct *task;
	struct enf_event *ev;
	__u64 seq = 0;

	/* Numbered before the reservation, so a dropped event leaves a gap in
	 * the scope's numbers that the reader sees. */
	tally(stats, verdict);
	if (stats)
		seq = __sync_fetch_and_add(&stats->seq, 1);
	ev = bpf_ringbuf_reserve(&enf_events, sizeof(*ev), 0);
	if (!ev) {
		__u32 slot = ENF_STAT_EVENTS_DROPPED;
		__u64 *dropped = bpf_map_lookup_elem(&enf_stats, &slot);

		if (dropped)
			__sync_fetch_and_add(dropped, 1);
		if (stats)
			__sync_fetch_and_add(&stats->dropped, 1);
		return;
	}
	ev->scope_seq = seq;
	ev->scope_allowed = stats ? stats->allowed : 0;
	ev->scope_denied = stats ? stats->denied : 0;
	ev->scope_audited = stats ? stats->audited : 0;
	ev->scope_dropped = stats ? stats->dropped : 0;
	task = bpf_get_current_task_btf();
	ev->time_ns = bpf_ktime_get_boot_ns();
	ev->cgroup_id = cgroup_id;
	ev->scope_cgroup_id = scope_cgroup_id;
	ev->host_tgid = bpf_get_current_pid_tgid() >> 32;
	task_pid_ns(&ev->ns_tgid, &ev->pid_ns);
	ev->mnt_ns = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	ev->scope_id = scope->scope_id;
	ev->hook = hook;
	ev->verdict = verdict;
	ev->mode = scope->mode;
	ev->reason = reason;
	ev->hash_ret = hash_ret;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	__builtin_memcpy(ev->digest, digest, ENF_SHA256_LEN);
	if (file) {
		/* f_path is const in newer kernels; bpf_d_path only reads it. */
		ev->path_len = bpf_d_path((struct path *)&file->f_path, ev->path,
					  sizeof(ev->path));
		if (ev->path_len < 0)
			ev->path[0] = 0;
	} else {
		/* Non-sleepable hooks may not call bpf_d_path. */
		ev->path_len = -EOPNOTSUPP;
		ev->path[0] = 0;
	}
	bpf_ringbuf_submit(ev, 0);
}

#endif /* IMGSIGN_ENF_EVENTS_H */
