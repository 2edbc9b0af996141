/* SPDX-License-Identifier: GPL-2.0 */
/*
 * No code patching from inside a scope, and the strict profile.
 *
 * A decision at exec or mapping time judges a file's bytes; these programs
 * keep other bytes from becoming code afterwards, in a process's memory,
 * without any file changing. For a task in a scope (enforce: -EPERM; audit:
 * allowed and reported; an event either way):
 *   - enf_patch_file_open: an open of /proc/PID/mem or /proc/PID/task/TID/mem
 *     for write (reason PATCH). Writes there use FOLL_FORCE and go through
 *     read-only private mappings, code included. A task opening its own
 *     /proc/self/mem never reaches the ptrace hook (same thread group), so
 *     this is what stops DDexec (`sh` + `dd of=/proc/$$/mem`).
 *   - enf_patch_ptrace_access: any ptrace_may_access() with
 *     PTRACE_MODE_ATTACH by a scoped task: PTRACE_ATTACH/SEIZE, and also
 *     process_vm_writev/readv, pidfd_getfd, and reads of another task's
 *     /proc/PID/mem, /proc/PID/stack, /proc/PID/syscall (reason PATCH).
 *     PTRACE_MODE_READ checks (ps, /proc/PID/status, stat, maps, environ)
 *     are untouched.
 *   - enf_patch_ptrace_traceme: PTRACE_TRACEME by a scoped task (PATCH).
 *   - enf_patch_anon_inode: the creation of a userfaultfd, by userfaultfd(2)
 *     or /dev/userfaultfd (both make a "[userfaultfd]" anonymous inode
 *     through inode_init_security_anon; reason PATCH); under the strict
 *     profile also of an io_uring instance ("[io_uring]", reason STRICT).
 *   - enf_patch_mmap_file: a file mapping asking PROT_WRITE and PROT_EXEC
 *     at once, shared or private (reason WRITE_EXEC); under the strict
 *     profile any anonymous mapping with PROT_EXEC (STRICT).
 *   - enf_patch_file_mprotect: mprotect(2) of a file mapping to a
 *     protection with PROT_WRITE when it asks PROT_EXEC too or the mapping
 *     is executable (WRITE_EXEC); under the strict profile making anonymous
 *     memory (heap, stack, anonymous mappings) executable, or writable and
 *     executable (STRICT). enf_file_mprotect (enforcer.bpf.c) separately
 *     refuses making a non-executable file mapping executable.
 * `prot` in both mapping hooks is what will be applied (READ_IMPLIES_EXEC
 * included), so personality(2) does not get around them.
 *
 *   - enf_patch_exec_stack (fexit, not LSM): under the strict profile, an
 *     exec whose new stack is executable (PT_GNU_STACK asking RWX, or
 *     READ_IMPLIES_EXEC) is killed with SIGKILL once setup_arg_pages() made
 *     that stack, before the new program runs an instruction (reason
 *     STRICT, hook BPRM_CHECK). The ELF loader makes the stack without any
 *     LSM hook, and setup_arg_pages() is past the point of no return: the
 *     exec cannot fail with EPERM any more, only the process can die.
 * Code already executable in a task that joins a scope stays executable.
 *
 * None of these programs hashes or sleeps; they run on every open, mapping
 * and mprotect, so each tests the cheap conditions before looking up the
 * scope.
 * Part of enforcer.bpf.c (one translation unit): include it from there only.
 */
#ifndef IMGSIGN_ENF_PATCH_H
#define IMGSIGN_ENF_PATCH_H

#define PROC_SUPER_MAGIC 0x9fa0
#define PROT_WRITE 0x2
#define PTRACE_MODE_ATTACH 0x02
#define MAP_ANONYMOUS 0x20

/* The verdict on a refused action of the current task, if it is in a scope
 * (and, with `need_flags`, only if its scope has all of them): 0 or -EPERM,
 * and an event. `file` (may be NULL) names the event's path; only hooks that
 * allow bpf_d_path may pass one. */
static __always_inline int patch_refuse(struct file *file, __u8 hook, __u8 reason, __u8 need_flags)
{
	__u8 digest[ENF_SHA256_LEN] = {};
	struct enf_scope scope = {};
	__u64 scope_cgroup_id = 0;
	__u8 verdict;

	if (!find_scope(&scope, &scope_cgroup_id))
		return 0;
	if ((scope.flags & need_flags) != need_flags)
		return 0;
	verdict = scope.mode == ENF_MODE_AUDIT ? ENF_VERDICT_AUDIT : ENF_VERDICT_DENY;
	emit(file, hook, verdict, reason, bpf_get_current_cgroup_id(), scope_cgroup_id, &scope,
	     -EOPNOTSUPP, digest);
	return verdict == ENF_VERDICT_DENY ? -EPERM : 0;
}

/* Whether `file` is a /proc/PID/mem or /proc/PID/task/TID/mem: on procfs
 * (any instance), named "mem", and a per-process entry (its proc_inode
 * carries a struct pid; /proc/sys, /proc/net and the other procfs entries
 * have none). */
static __always_inline int is_proc_mem(struct file *file)
{
	struct inode *inode = file->f_inode;
	struct dentry *dentry = file->f_path.dentry;
	struct proc_inode *ei;
	char name[4] = {};

	if (BPF_CORE_READ(inode, i_sb, s_magic) != PROC_SUPER_MAGIC)
		return 0;
	if (BPF_CORE_READ(dentry, d_name.len) != 3)
		return 0;
	if (bpf_probe_read_kernel(name, sizeof(name), BPF_CORE_READ(dentry, d_name.name)))
		return 0;
	if (name[0] != 'm' || name[1] != 'e' || name[2] != 'm' || name[3] != 0)
		return 0;
	ei = (void *)inode - bpf_core_field_offset(struct proc_inode, vfs_inode);
	return BPF_CORE_READ(ei, pid) != NULL;
}

SEC("lsm/file_open")
int BPF_PROG(enf_patch_file_open, struct file *file, int ret)
{
	if (ret != 0)
		return ret;
	if (!(file->f_mode & FMODE_WRITE) || !is_proc_mem(file))
		return 0;
	return patch_refuse(file, ENF_HOOK_FILE_OPEN, ENF_REASON_PATCH, 0);
}

/* Runs in the tracer (current). PTRACE_MODE_READ is left alone. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(enf_patch_ptrace_access, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret != 0)
		return ret;
	if (!(mode & PTRACE_MODE_ATTACH))
		return 0;
	return patch_refuse(NULL, ENF_HOOK_PTRACE, ENF_REASON_PATCH, 0);
}

/* Runs in the tracee (current), which offers itself to its parent. */
SEC("lsm/ptrace_traceme")
int BPF_PROG(enf_patch_ptrace_traceme, struct task_struct *parent, int ret)
{
	if (ret != 0)
		return ret;
	return patch_refuse(NULL, ENF_HOOK_PTRACE, ENF_REASON_PATCH, 0);
}

/* Whether the NUL-terminated `got` (16 bytes) is `want` (len bytes, NUL
 * excluded). */
static __always_inline int anon_name_is(const char *got, const char *want, int len)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (i > len)
			break;
		if (got[i] != (i == len ? 0 : want[i]))
			return 0;
	}
	return 1;
}

SEC("lsm/inode_init_security_anon")
int BPF_PROG(enf_patch_anon_inode, struct inode *inode, const struct qstr *name,
	     const struct inode *context_inode, int ret)
{
	char got[16] = {};

	if (ret != 0)
		return ret;
	if (bpf_probe_read_kernel_str(got, sizeof(got), BPF_CORE_READ(name, name)) < 0)
		return 0;
	if (anon_name_is(got, "[userfaultfd]", 13))
		return patch_refuse(NULL, ENF_HOOK_ANON_INODE, ENF_REASON_PATCH, 0);
	if (anon_name_is(got, "[io_uring]", 10))
		return patch_refuse(NULL, ENF_HOOK_ANON_INODE, ENF_REASON_STRICT, ENF_FLAG_STRICT);
	return 0;
}

SEC("lsm/mmap_file")
int BPF_PROG(enf_patch_mmap_file, struct file *file, unsigned long reqprot, unsigned long prot,
	     unsigned long flags, int ret)
{
	if (ret != 0)
		return ret;
	if (!(prot & PROT_EXEC))
		return 0;
	/* Anonymous memory (private or shared) with PROT_EXEC. Told by
	 * MAP_ANONYMOUS, not by `file == NULL`: the verifier may take a
	 * hook's pointer argument for non-NULL and drop that test. mmap(2)
	 * passes a file exactly when MAP_ANONYMOUS is not set; the one other
	 * NULL-file caller, the ELF loader's MMAP_PAGE_ZERO page, maps zeros
	 * PROT_READ | PROT_EXEC, without PROT_WRITE, and stops below. */
	if (flags & MAP_ANONYMOUS)
		return patch_refuse(NULL, ENF_HOOK_MMAP_FILE, ENF_REASON_STRICT, ENF_FLAG_STRICT);
	if (!(prot & PROT_WRITE))
		return 0;
	return patch_refuse(file, ENF_HOOK_MMAP_FILE, ENF_REASON_WRITE_EXEC, 0);
}

SEC("lsm/file_mprotect")
int BPF_PROG(enf_patch_file_mprotect, struct vm_area_struct *vma, unsigned long reqprot,
	     unsigned long prot, int ret)
{
	unsigned long vm_flags;

	if (ret != 0)
		return ret;
	vm_flags = BPF_CORE_READ(vma, vm_flags);
	if (BPF_CORE_READ(vma, vm_file)) {
		/* Write to code: W+X asked, or write added to an executable
		 * mapping (what would come back as code is private copies). */
		if (!(prot & PROT_WRITE))
			return 0;
		if (!(prot & PROT_EXEC) && !(vm_flags & VM_EXEC))
			return 0;
		return patch_refuse(NULL, ENF_HOOK_FILE_MPROTECT, ENF_REASON_WRITE_EXEC, 0);
	}
	/* Anonymous memory, the stack included: new exec, or W+X. */
	if (!(prot & PROT_EXEC))
		return 0;
	if ((vm_flags & VM_EXEC) && !(prot & PROT_WRITE))
		return 0;
	return patch_refuse(NULL, ENF_HOOK_FILE_MPROTECT, ENF_REASON_STRICT, ENF_FLAG_STRICT);
}

/* After setup_arg_pages() (fs/exec.c) made the new program's stack: if that
 * stack is executable and the task is in a strict scope, the task gets a
 * SIGKILL, delivered before the exec returns to user space. */
SEC("fexit/setup_arg_pages")
int BPF_PROG(enf_patch_exec_stack, struct linux_binprm *bprm, unsigned long stack_top,
	     int executable_stack, int ret)
{
	struct vm_area_struct *vma;

	if (ret != 0)
		return 0; /* the exec fails anyway */
	vma = BPF_CORE_READ(bprm, vma);
	if (!vma || !(BPF_CORE_READ(vma, vm_flags) & VM_EXEC))
		return 0;
	if (patch_refuse(NULL, ENF_HOOK_BPRM_CHECK, ENF_REASON_STRICT, ENF_FLAG_STRICT))
		bpf_send_signal(9 /* SIGKILL */);
	return 0;
}

#endif /* IMGSIGN_ENF_PATCH_H */
