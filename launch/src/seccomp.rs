//! The seccomp profile of a container: an allowlist, modelled on Docker/Moby's default profile
//! for x86_64, a pure function of the container's capabilities.
//!
//! - [`ALLOWED_SYSCALLS`] are allowed whatever the arguments; `socket` (not `AF_VSOCK`),
//!   `personality` (the values Docker allows: none that turns on `READ_IMPLIES_EXEC` or
//!   `ADDR_NO_RANDOMIZE`), `clone` and `unshare` (without `CLONE_NEWUSER`) are allowed for some
//!   arguments only.
//! - [`CAPABILITY_SYSCALLS`]: allowed only when the container holds the capability (Docker's
//!   capability-dependent extras, minus everything in [`REFUSED_SYSCALLS`]).
//! - [`REFUSED_SYSCALLS`], the cap-gated syscalls without their capability, and `clone` /
//!   `unshare` with `CLONE_NEWUSER` fail with EPERM: the profile knows them and says no, whatever
//!   capabilities were added (`--cap-add SYS_ADMIN` still cannot mount).
//! - Everything else fails with ENOSYS (the default action). This is runc's answer to syscalls
//!   newer than its profile, applied to every syscall this profile does not name: libc and
//!   language runtimes probe new syscalls (`clone3`, `faccessat2`, `fchmodat2`, `openat2`, ...)
//!   and fall back to the older one only on ENOSYS (glibc 2.33's `faccessat2` under Docker's
//!   EPERM default broke images until runc returned ENOSYS). A fallback goes through an older
//!   syscall this filter judges in turn, so ENOSYS never opens what the allowlist keeps shut.
//!   `clone3`, whose flags sit behind a pointer seccomp cannot read, gets it on purpose: glibc
//!   falls back to `clone`, where `CLONE_NEWUSER` is seen.
//!
//! Only the native architecture is listed: libseccomp kills a thread that makes a syscall
//! through another ABI (`int 0x80`, i386 numbers), so 32-bit binaries do not run, and the
//! argument filters cannot be bypassed through another syscall table.
//!
//! Argument filters and libcontainer 0.7: for `SCMP_CMP_MASKED_EQ` it reads the mask from
//! `valueTwo` and the datum from `value` (runc and Docker's profile read them the other way
//! round), and libseccomp masks the datum, so a mask and datum read swapped turn "the
//! `CLONE_NEWUSER` bit is clear" into "always". [`allowed_without_newuser`] writes them for
//! libcontainer; the privileged tests prove `clone(CLONE_NEWUSER)` is refused and a fork works.

use oci_spec::runtime::{
    Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

#[derive(Debug, thiserror::Error)]
#[error("cannot build the seccomp profile")]
pub struct SeccompError(#[from] oci_spec::OciSpecError);

/// `CLONE_NEWUSER` (include/uapi/linux/sched.h).
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
/// `AF_VSOCK` (include/linux/socket.h): Docker refuses sockets of this family.
pub const AF_VSOCK: u64 = 40;
/// `ENOSYS`: the default action's errno (syscalls the profile does not name).
pub const ENOSYS: u32 = 38;
/// `EPERM`: the errno of the syscalls the profile names and refuses.
pub const EPERM: u32 = 1;

/// Refused with EPERM whatever the capabilities: no capability-dependent rule may allow these
/// (a unit test holds [`CAPABILITY_SYSCALLS`] to it).
pub const REFUSED_SYSCALLS: &[&str] = &[
    // Mounts, old and new API, and changing the root.
    "mount",
    "umount2",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "pivot_root",
    // Another process's memory: code patching is the enforcer's threat (B).
    "ptrace",
    "process_vm_writev",
    // The kernel itself.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    // The kernel keyring is not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    // Large attack surfaces that ordinary programs do without.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    // Joining namespaces; handles that reach around the root (the "shocker" escape).
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    "swapon",
    "swapoff",
    // Memory the kernel cannot read: the enforcer could not hash code mapped from it.
    "memfd_secret",
];

/// Allowed whatever the arguments and capabilities: Docker's default list for x86_64, without
/// the 32-bit and `*time64` names (native architecture only), without io_uring,
/// `name_to_handle_at` and `memfd_secret` ([`REFUSED_SYSCALLS`]), without `modify_ldt` (16-bit
/// segments: Wine and DOS emulators, a history of kernel bugs) and without the dead
/// `epoll_*_old`.
pub const ALLOWED_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "arch_prctl",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "fcntl",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstatfs",
    "fsync",
    "ftruncate",
    "futex",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "geteuid",
    "getgid",
    "getgroups",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresuid",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "madvise",
    "membarrier",
    "memfd_create",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "sendfile",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsuid",
    "setgid",
    "setgroups",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "socketpair",
    "splice",
    "stat",
    "statfs",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
    "times",
    "tkill",
    "truncate",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "write",
    "writev",
];

/// Allowed only with the capability (Docker's `includes.caps`), minus [`REFUSED_SYSCALLS`]:
/// `SYS_ADMIN` brings no mount, bpf, perf_event_open, setns, nor an unfiltered clone, clone3 or
/// unshare; `SYS_PTRACE` no ptrace nor process_vm_writev; `SYS_MODULE`, `BPF`, `PERFMON` and
/// `DAC_READ_SEARCH` (open_by_handle_at) nothing.
pub const CAPABILITY_SYSCALLS: &[(Capability, &[&str])] = &[
    (
        Capability::SysAdmin,
        &["fanotify_init", "lookup_dcookie", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "syslog"],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv"]),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "clock_settime"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
];

/// Not named by any rule, so they get the default ENOSYS: listed to say it is on purpose.
pub const ENOSYS_SYSCALLS: &[&str] = &["clone3"];

/// `personality` values Docker allows: PER_LINUX, UNAME26 and PER_LINUX32 combinations, and the
/// query 0xffffffff. Not `READ_IMPLIES_EXEC` (every readable mapping executable) nor
/// `ADDR_NO_RANDOMIZE`.
pub const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> Result<LinuxSyscall, SeccompError> {
    let mut b = LinuxSyscallBuilder::default().names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    b = b.action(action);
    if let Some(errno) = errno {
        b = b.errno_ret(errno);
    }
    Ok(b.build()?)
}

fn with_arg(mut syscall: LinuxSyscall, arg: LinuxSeccompArg) -> LinuxSyscall {
    syscall.set_args(Some(vec![arg]));
    syscall
}

/// `(arg0 & CLONE_NEWUSER) == CLONE_NEWUSER`: mask and datum equal, so it reads the same
/// whichever field a runtime takes for the mask.
fn newuser_set() -> Result<LinuxSeccompArg, SeccompError> {
    Ok(LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NEWUSER)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()?)
}

/// `(arg0 & CLONE_NEWUSER) == 0`, written for libcontainer 0.7: mask in `valueTwo`, datum in
/// `value` (see the module docs; a runtime reading them the other way round would allow every
/// flag, which the privileged tests would catch).
pub fn allowed_without_newuser() -> Result<LinuxSeccompArg, SeccompError> {
    Ok(LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(0u64)
        .value_two(CLONE_NEWUSER)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()?)
}

/// The names allowed for a container holding `caps` on top of [`ALLOWED_SYSCALLS`].
pub fn capability_syscalls(caps: &[Capability]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = CAPABILITY_SYSCALLS
        .iter()
        .filter(|(cap, _)| caps.contains(cap))
        .flat_map(|(_, names)| names.iter().copied())
        .filter(|name| !REFUSED_SYSCALLS.contains(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The profile for a container whose capability set is `caps`.
pub fn profile(caps: &[Capability]) -> Result<LinuxSeccomp, SeccompError> {
    let extra = capability_syscalls(caps);
    // The cap-gated names this container does not get: known to the profile, so EPERM.
    let mut withheld: Vec<&str> = CAPABILITY_SYSCALLS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .filter(|name| !extra.contains(name) && !REFUSED_SYSCALLS.contains(name))
        .collect();
    withheld.sort_unstable();
    withheld.dedup();

    let allow = LinuxSeccompAction::ScmpActAllow;
    let errno = LinuxSeccompAction::ScmpActErrno;
    let mut syscalls = vec![rule(ALLOWED_SYSCALLS, allow, None)?];
    if !extra.is_empty() {
        syscalls.push(rule(&extra, allow, None)?);
    }
    syscalls.push(rule(REFUSED_SYSCALLS, errno, Some(EPERM))?);
    if !withheld.is_empty() {
        syscalls.push(rule(&withheld, errno, Some(EPERM))?);
    }
    // x86-64 clone(flags, ...) and unshare(flags): flags is argument 0.
    for name in ["clone", "unshare"] {
        syscalls.push(with_arg(rule(&[name], allow, None)?, allowed_without_newuser()?));
        syscalls.push(with_arg(rule(&[name], errno, Some(EPERM))?, newuser_set()?));
    }
    let not_vsock =
        LinuxSeccompArgBuilder::default().index(0usize).value(AF_VSOCK).op(LinuxSeccompOperator::ScmpCmpNe).build()?;
    syscalls.push(with_arg(rule(&["socket"], allow, None)?, not_vsock));
    // One rule per value: libseccomp ORs rules, ANDs the conditions of one rule.
    for persona in PERSONALITIES {
        let eq = LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(persona)
            .op(LinuxSeccompOperator::ScmpCmpEq)
            .build()?;
        syscalls.push(with_arg(rule(&["personality"], allow, None)?, eq));
    }
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(ENOSYS)
        .syscalls(syscalls)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use libseccomp::ScmpSyscall;
    use std::collections::BTreeSet;

    /// The rules naming `name`, with their action and errno.
    fn rules_for<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls().as_ref().unwrap().iter().filter(|s| s.names().iter().any(|n| n == name)).collect()
    }

    fn unconditionally_allowed(p: &LinuxSeccomp, name: &str) -> bool {
        rules_for(p, name).iter().any(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
    }

    fn refused_eperm(p: &LinuxSeccomp, name: &str) -> bool {
        let rules = rules_for(p, name);
        !rules.is_empty()
            && rules.iter().all(|s| s.action() == LinuxSeccompAction::ScmpActErrno && s.errno_ret() == Some(EPERM))
    }

    #[test]
    fn an_allowlist_with_enosys_by_default() {
        let p = profile(&[]).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(ENOSYS));
        // Native architecture only: libseccomp kills on any other ABI.
        assert!(p.architectures().is_none());
        for name in ["read", "write", "execve", "openat", "mmap", "wait4", "exit_group", "rseq", "getrandom"] {
            assert!(unconditionally_allowed(&p, name), "{name} not allowed");
        }
        // Not named anywhere: the default ENOSYS.
        for name in ["clone3", "ustat", "sysfs", "uselib", "modify_ldt", "epoll_wait_old"] {
            assert!(rules_for(&p, name).is_empty(), "{name} is named by a rule");
        }
    }

    #[test]
    fn the_issue_list_is_refused_with_eperm_whatever_the_capabilities() {
        let all_caps: Vec<Capability> = CAPABILITY_SYSCALLS.iter().map(|(c, _)| *c).collect();
        for caps in [vec![], vec![Capability::SysAdmin], all_caps] {
            let p = profile(&caps).unwrap();
            for name in [
                "mount",
                "umount2",
                "ptrace",
                "kexec_load",
                "init_module",
                "finit_module",
                "bpf",
                "keyctl",
                "add_key",
                "perf_event_open",
                "io_uring_setup",
                "userfaultfd",
                "setns",
                "open_by_handle_at",
                "fsopen",
                "move_mount",
            ] {
                assert!(refused_eperm(&p, name), "{name} not refused with {caps:?}");
            }
            assert!(rules_for(&p, "clone3").is_empty(), "clone3 must get the default ENOSYS");
        }
    }

    #[test]
    fn clone_and_unshare_allowed_only_without_clone_newuser() {
        let p = profile(&[Capability::SysAdmin]).unwrap();
        for name in ["clone", "unshare"] {
            let rules = rules_for(&p, name);
            assert_eq!(rules.len(), 2, "{name}: {rules:?}");
            for r in rules {
                let args = r.args().as_ref().expect("no unconditional rule: it would override the filter");
                assert_eq!(args.len(), 1);
                let a = &args[0];
                assert_eq!((a.index(), a.op()), (0, LinuxSeccompOperator::ScmpCmpMaskedEq));
                match r.action() {
                    // libcontainer 0.7: mask in valueTwo, datum in value.
                    LinuxSeccompAction::ScmpActAllow => {
                        assert_eq!((a.value(), a.value_two()), (0, Some(CLONE_NEWUSER)))
                    }
                    LinuxSeccompAction::ScmpActErrno => {
                        assert_eq!(
                            (a.value(), a.value_two(), r.errno_ret()),
                            (CLONE_NEWUSER, Some(CLONE_NEWUSER), Some(EPERM))
                        )
                    }
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn capability_extras_follow_the_capabilities_and_never_reach_the_refused() {
        let p = profile(&[]).unwrap();
        for name in ["kcmp", "reboot", "chroot", "acct", "sethostname", "syslog", "settimeofday"] {
            assert!(refused_eperm(&p, name), "{name} without its capability");
        }
        let p = profile(&[Capability::SysPtrace, Capability::SysChroot]).unwrap();
        assert!(unconditionally_allowed(&p, "kcmp") && unconditionally_allowed(&p, "chroot"));
        assert!(refused_eperm(&p, "ptrace") && refused_eperm(&p, "process_vm_writev"));
        assert!(refused_eperm(&p, "reboot"));
        // syslog comes with SYSLOG or SYS_ADMIN: granted once, not also withheld.
        let p = profile(&[Capability::Syslog]).unwrap();
        assert!(unconditionally_allowed(&p, "syslog") && !refused_eperm(&p, "syslog"));
        for (_, names) in CAPABILITY_SYSCALLS {
            for name in names.iter() {
                assert!(!REFUSED_SYSCALLS.contains(name), "{name} is both refused and cap-gated");
            }
        }
        let everything: Vec<Capability> = CAPABILITY_SYSCALLS.iter().map(|(c, _)| *c).collect();
        let p = profile(&everything).unwrap();
        for name in REFUSED_SYSCALLS {
            assert!(!unconditionally_allowed(&p, name), "{name} allowed with every capability");
        }
    }

    #[test]
    fn lists_are_disjoint_and_every_name_is_a_syscall_of_this_architecture() {
        // libcontainer skips a name libseccomp cannot resolve (a typo would be silently dropped).
        let mut seen = BTreeSet::new();
        let cap_names: Vec<&str> = CAPABILITY_SYSCALLS.iter().flat_map(|(_, n)| n.iter().copied()).collect();
        let cap_set: BTreeSet<&str> = cap_names.iter().copied().collect();
        for name in ALLOWED_SYSCALLS.iter().chain(REFUSED_SYSCALLS).chain(ENOSYS_SYSCALLS) {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(!cap_set.contains(name), "{name} both listed and cap-gated");
        }
        for name in seen.iter().chain(&cap_set).chain(["clone", "unshare", "socket", "personality"].iter()) {
            let nr = ScmpSyscall::from_name(name).unwrap_or_else(|e| panic!("{name}: {e}")).as_raw_syscall();
            assert!(nr >= 0, "{name} is not a syscall of this architecture ({nr})");
        }
        for name in ["clone", "unshare", "socket", "personality"] {
            assert!(!seen.contains(name), "{name} must only be allowed through its argument filter");
        }
    }

    #[test]
    fn socket_and_personality_are_filtered_by_argument() {
        let p = profile(&[]).unwrap();
        let socket = rules_for(&p, "socket");
        assert_eq!(socket.len(), 1);
        let a = &socket[0].args().as_ref().unwrap()[0];
        assert_eq!((a.op(), a.value()), (LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK));
        let persona: Vec<u64> =
            rules_for(&p, "personality").iter().map(|r| r.args().as_ref().unwrap()[0].value()).collect();
        assert_eq!(persona, PERSONALITIES);
        assert!(!persona.iter().any(|v| v & 0x0040_0000 != 0 && *v != 0xffff_ffff), "READ_IMPLIES_EXEC");
    }
}
