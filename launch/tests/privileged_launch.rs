//! Privileged tests (root on this host): real containers from a busybox-static root, through
//! libcontainer. Each checks one sandbox default by trying what it forbids.

use launch::{Container, LaunchConfig};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const BUSYBOX: &str = "/bin/busybox";

fn scratch() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("launch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    })
}

/// A read-only lower: /bin/busybox (static) and the directories the spec mounts on.
fn lower() -> &'static Path {
    static LOWER: OnceLock<PathBuf> = OnceLock::new();
    LOWER.get_or_init(|| {
        let lower = scratch().join("lower");
        for d in ["bin", "dev", "proc", "sys", "tmp", "run", "etc", "out"] {
            std::fs::create_dir_all(lower.join(d)).unwrap();
        }
        std::fs::set_permissions(lower.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::copy(BUSYBOX, lower.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", lower.join("bin/sh")).unwrap();
        // A root-owned image file, as the store keeps it (host uid 0).
        std::fs::write(lower.join("etc/motd"), "signed\n").unwrap();
        std::fs::set_permissions(lower.join("etc/motd"), std::fs::Permissions::from_mode(0o644)).unwrap();
        build_probe(&lower.join("bin/probe"));
        build_glibc_program(&lower);
        lower
    })
}

/// A static program trying what busybox has no applet for: ptrace, bpf, io_uring_setup; and,
/// for the allowlist, syscalls the profile does not name (`ustat`: ENOSYS), names only with a
/// capability (`kcmp`, SYS_PTRACE), `clone3` (ENOSYS) and `clone(CLONE_NEWUSER)`. With an
/// argument (on the host), no ptrace; with `int80`, only a getpid through the i386 ABI.
const PROBE_C: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <linux/kcmp.h>
static void say(const char *what, long r) { printf("%s %s\n", what, r < 0 ? strerror(errno) : "ok"); }
int main(int argc, char **argv) {
    char buf[64];
    if (argc > 1 && !strcmp(argv[1], "int80")) {
        /* getpid (20) through the i386 ABI: another architecture for seccomp. */
        long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
        printf("int80 %s\n", r == getpid() ? "ok" : "failed");
        return 0;
    }
    errno = 0; say("bpf", syscall(SYS_bpf, 0, 0, 0));
    errno = 0; say("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
    errno = 0; say("ustat", syscall(SYS_ustat, 0, buf));
    errno = 0; say("kcmp", syscall(SYS_kcmp, getpid(), getpid(), KCMP_VM, 0, 0));
    errno = 0; say("clone3", syscall(SYS_clone3, 0, 0));
    errno = 0; long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0) _exit(0);
    if (r > 0) waitpid(r, 0, 0);
    say("clone_newuser", r);
    /* Last, and not on the host (`probe host`): a traced process stops at its next signal. */
    if (argc < 2) { errno = 0; say("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0)); }
    return 0;
}
"#;

/// Compiles [`PROBE_C`] statically with clang-19 (a build package of this workspace).
fn build_probe(out: &Path) {
    let src = scratch().join("probe.c");
    std::fs::write(&src, PROBE_C).unwrap();
    let status = spawning(|| {
        std::process::Command::new("clang-19").arg("-static").arg("-O1").arg("-o").arg(out).arg(&src).status()
    });
    assert!(status.is_ok_and(|s| s.success()), "clang-19 -static failed (needs clang-19 and libc6-dev)");
}

/// A dynamically linked glibc program doing what ordinary programs do at start and after:
/// threads and posix_spawn (glibc tries `clone3`, and falls back to `clone` only on ENOSYS),
/// fork, statx, faccessat with AT_EACCESS (`faccessat2`), getrandom, memfd_create.
const GLIBC_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
extern char **environ;
static void *thread(void *arg) { return arg; }
static int fail(const char *what, int err) { printf("FAIL %s: %s\n", what, strerror(err)); return 1; }
int main(void) {
    pthread_t t; void *back = 0; int e;
    if ((e = pthread_create(&t, 0, thread, (void *)42))) return fail("pthread_create", e);
    if ((e = pthread_join(t, &back)) || back != (void *)42) return fail("pthread_join", e);
    pid_t pid = fork(); int status;
    if (pid < 0) return fail("fork", errno);
    if (pid == 0) _exit(3);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 3) return fail("wait", errno);
    char *argv[] = {"/bin/busybox", "true", 0};
    if ((e = posix_spawn(&pid, "/bin/busybox", 0, 0, argv, environ))) return fail("posix_spawn", e);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) return fail("spawned", errno);
    struct statx sx;
    if (statx(AT_FDCWD, "/etc/motd", 0, STATX_SIZE, &sx) || sx.stx_size != 7) return fail("statx", errno);
    if (faccessat(AT_FDCWD, "/etc/motd", R_OK, AT_EACCESS)) return fail("faccessat", errno);
    char b[16];
    if (getrandom(b, sizeof b, 0) != sizeof b) return fail("getrandom", errno);
    if (memfd_create("x", MFD_CLOEXEC) < 0) return fail("memfd_create", errno);
    puts("glibc ok");
    return 0;
}
"#;

/// Compiles [`GLIBC_C`] dynamically and copies the host's loader and libc into `lower`.
fn build_glibc_program(lower: &Path) {
    let src = scratch().join("glibc.c");
    std::fs::write(&src, GLIBC_C).unwrap();
    let out = lower.join("bin/glibc");
    let status = spawning(|| {
        std::process::Command::new("clang-19").args(["-O1", "-pthread", "-o"]).arg(&out).arg(&src).status()
    });
    assert!(status.is_ok_and(|s| s.success()), "clang-19 failed (needs clang-19 and libc6-dev)");
    for lib in ["/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"] {
        let dest = lower.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap_or_else(|e| panic!("{lib}: {e}"));
    }
}

/// Runs `spawn` (a process of the test's own) under the launch engine's fork lock: a container
/// started from another test thread at that moment would otherwise fork with std's environment
/// lock held by this spawn, and its init would wait on it for ever (seen once: an init stuck
/// in `futex_wait` beside a defunct probe compiler).
fn spawning<T>(spawn: impl FnOnce() -> T) -> T {
    let _forks = launch::fork::guard();
    spawn()
}

fn config(name: &str, script: &str) -> LaunchConfig {
    let mut c = LaunchConfig::new(name, lower(), vec!["/bin/busybox".into(), "sh".into(), "-c".into(), script.into()]);
    c.state_root = scratch().join("state");
    c
}

/// Runs `script`, capturing stdout through a file in a volume (the engine leaves stdio to the
/// caller; a test binary's stdout is the harness's).
fn run(mut c: LaunchConfig) -> (i32, String) {
    let out = scratch().join(format!("out-{}", c.id));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    c.volumes.push(format!("{}:/out", out.display()).parse().unwrap());
    c.args[3] = format!("exec >/out/log 2>&1; {}", c.args[3]);
    let code = Container::prepare(c).unwrap().run(false).unwrap();
    (code, std::fs::read_to_string(out.join("log")).unwrap_or_default())
}

fn mountinfo_mentions(s: &str) -> bool {
    let mine = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let init = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
    mine.contains(s) || init.contains(s)
}

fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("imgsign").join(id))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn privileged_exit_codes_and_cleanup() {
    let (code, out) = run(config("codes-ok", "echo ok"));
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    let (code, _) = run(config("codes-7", "exit 7"));
    assert_eq!(code, 7);
    for id in ["codes-ok", "codes-7"] {
        assert!(!scratch().join("state").join(id).exists(), "{id}: directory left");
        assert!(cgroup_dirs(id).is_empty(), "{id}: cgroups left: {:?}", cgroup_dirs(id));
        assert!(!mountinfo_mentions(&format!("/{id}/")), "{id}: mount left");
    }
}

#[test]
fn privileged_sandbox_refuses() {
    let script = "busybox mount -t tmpfs none /tmp && echo MOUNTED; \
                  busybox unshare -U true && echo UNSHARED; \
                  busybox grep CapEff /proc/self/status; \
                  busybox id -u; busybox hostname; \
                  busybox ls /dev; \
                  echo done";
    let (code, out) = run(config("sandbox", script));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("MOUNTED"), "mount worked:\n{out}");
    assert!(!out.contains("UNSHARED"), "unshare -U worked:\n{out}");
    // CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, NET_BIND_SERVICE 10.
    let minimal: u64 = [0, 1, 3, 4, 5, 6, 7, 10].iter().map(|b| 1u64 << b).sum();
    assert!(out.contains(&format!("CapEff:\t{minimal:016x}")), "capabilities:\n{out}");
    assert!(out.contains("\nsandbox\n"), "hostname:\n{out}");
    let dev: Vec<&str> = out.lines().skip_while(|l| *l != "sandbox").skip(1).take_while(|l| *l != "done").collect();
    for name in &dev {
        assert!(
            [
                "console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
                "stdout", "tty", "urandom", "zero"
            ]
            .contains(name),
            "/dev holds {name}:\n{out}"
        );
    }
    assert!(out.ends_with("done\n"), "{out}");
}

#[test]
fn privileged_seccomp_refuses_mount_even_with_sys_admin() {
    // CAP_SYS_ADMIN in the container's user namespace would allow a tmpfs mount: seccomp must not.
    let mut c = config(
        "sysadmin",
        "busybox mount -t tmpfs none /tmp && echo MOUNTED; busybox grep -c tmpfs /proc/self/mountinfo; echo end",
    );
    c.cap_add = vec![launch::config::parse_capability("SYS_ADMIN").unwrap()];
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("MOUNTED"), "mount worked:\n{out}");
    assert!(out.contains("Operation not permitted") || out.contains("permission denied"), "{out}");
}

#[test]
fn privileged_seccomp_refuses_ptrace_bpf_io_uring() {
    let (code, out) = run(config("probe", "/bin/probe"));
    assert_eq!(code, 0, "{out}");
    // On the host these give "ok", "Invalid argument" and "Bad address": EPERM is seccomp's.
    for line in [
        "ptrace Operation not permitted",
        "bpf Operation not permitted",
        "io_uring_setup Operation not permitted",
        "clone_newuser Operation not permitted",
    ] {
        assert!(out.contains(line), "want {line:?}:\n{out}");
    }
}

#[test]
fn privileged_seccomp_is_an_allowlist() {
    // On the host, unfiltered: each call reaches the kernel (none answers ENOSYS or EPERM).
    let host = spawning(|| std::process::Command::new(lower().join("bin/probe")).arg("host").output()).unwrap();
    let host = String::from_utf8_lossy(&host.stdout);
    for line in ["ustat Invalid argument", "kcmp ok", "clone3 Invalid argument", "clone_newuser ok"] {
        assert!(host.contains(line), "on the host, want {line:?}:\n{host}");
    }
    // In the container: what the profile does not name is ENOSYS (clone3 too, so libc falls
    // back to clone); what it names only with a capability is EPERM without it.
    let (code, out) = run(config("allowlist", "/bin/probe"));
    assert_eq!(code, 0, "{out}");
    for line in ["ustat Function not implemented", "kcmp Operation not permitted", "clone3 Function not implemented"] {
        assert!(out.contains(line), "want {line:?}:\n{out}");
    }
    // With the capability, its syscalls come back (Docker's capability-dependent extras); ptrace
    // does not.
    let mut c = config("allowlist-ptrace", "/bin/probe");
    c.cap_add = vec![launch::config::parse_capability("SYS_PTRACE").unwrap()];
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("kcmp ok") && out.contains("ptrace Operation not permitted"), "{out}");
}

#[test]
fn privileged_seccomp_kills_a_syscall_through_another_abi() {
    // The profile lists x86_64 only: the i386 table (`int $0x80`), whose numbers no rule and no
    // argument filter was written for, kills the thread (SIGSYS, 31) instead of being judged.
    let host = spawning(|| std::process::Command::new(lower().join("bin/probe")).arg("int80").output()).unwrap();
    assert_eq!(String::from_utf8_lossy(&host.stdout), "int80 ok\n", "the host has no i386 ABI: the test shows nothing");
    let (code, out) = run(config("int80", "/bin/probe int80; echo status $?"));
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("status 159\n") && !out.contains("int80 ok"), "{out}");
}

#[test]
fn privileged_seccomp_lets_a_dynamic_glibc_program_work() {
    let (code, out) = run(config("glibc", "/bin/glibc"));
    assert_eq!((code, out.as_str()), (0, "glibc ok\n"));
}

#[test]
fn privileged_root_inside_is_not_root_outside() {
    let mut c = config("owner", "echo x > /tmp/made-inside; echo y > /out/made-inside");
    c.volumes.clear();
    let out = scratch().join("out-owner");
    let (code, log) = run(c);
    assert_eq!(code, 0, "{log}");
    let meta = std::fs::metadata(out.join("made-inside")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000));
}

#[test]
fn privileged_image_files_owned_as_in_the_image() {
    // The lower is seen through a mount idmapped with the container's mapping: a file owned by
    // host 0 in the store is owned by container root, which can modify it (copy-up).
    let out = scratch().join("out-idmap");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = config(
        "idmap",
        "exec >/out/log 2>&1; busybox stat -c 'owner %u:%g' /etc/motd; \
         echo x >> /etc/motd && echo APPENDED; busybox cat /etc/motd; echo v > /out/from-volume",
    );
    c.volumes.push(format!("{}:/out", out.display()).parse().unwrap());
    let motd = lower().join("etc/motd");
    let before = std::fs::metadata(&motd).unwrap();
    let mut container = Container::prepare(c).unwrap();
    container.start().unwrap();
    let code = container.wait().unwrap();
    let log = std::fs::read_to_string(out.join("log")).unwrap_or_default();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("owner 0:0"), "{log}");
    assert!(log.contains("APPENDED") && log.contains("signed\nx\n"), "{log}");
    // The copy-up in the upper is owned by host 100000 (container root).
    let copied = container.layout().upper.join("etc/motd");
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (100_000, 100_000));
    assert_eq!(std::fs::read_to_string(&copied).unwrap(), "signed\nx\n");
    container.cleanup().unwrap();
    // The store's object is unchanged: content, owner, mode.
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "signed\n");
    let after = std::fs::metadata(&motd).unwrap();
    assert_eq!((after.uid(), after.gid(), after.mode()), (before.uid(), before.gid(), before.mode()));
    assert_eq!((after.uid(), after.gid()), (0, 0));
    // A volume is not idmapped: a file made there is owned by host 100000.
    let made = std::fs::metadata(out.join("from-volume")).unwrap();
    assert_eq!((made.uid(), made.gid()), (100_000, 100_000));
    assert!(!mountinfo_mentions("/idmap/lower"), "idmapped mount left");
}

#[test]
fn privileged_no_userns_keeps_host_owners() {
    let mut c = config("no-userns", "busybox stat -c 'owner %u' /etc/motd; echo x >> /etc/motd && echo APPENDED");
    c.userns = None;
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("owner 0") && out.contains("APPENDED"), "{out}");
}

#[test]
fn privileged_mknod_of_a_disk_then_read_fails_by_device_cgroup() {
    // Without a user namespace and with CAP_MKNOD, mknod itself works: the device cgroup must
    // still refuse the open.
    let mut c = config(
        "mknod",
        "busybox mknod /tmp/disk b 7 0 && echo NODE; busybox head -c 1 /tmp/disk >/dev/null && echo READ; true",
    );
    c.userns = None;
    c.cap_add = vec![launch::config::parse_capability("MKNOD").unwrap()];
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NODE"), "mknod failed, the test shows nothing:\n{out}");
    assert!(!out.contains("READ"), "the device was read:\n{out}");
    // With the default user namespace, mknod is refused outright.
    let (_, out) = run(config("mknod-userns", "busybox mknod /tmp/disk b 7 0 && echo NODE; true"));
    assert!(!out.contains("NODE"), "{out}");
}

#[test]
fn privileged_secret_on_private_tmpfs() {
    let src = scratch().join("secret-src");
    std::fs::write(&src, "hunter2").unwrap();
    let mut c = config("secret", "busybox cat /run/secrets/token; echo; busybox grep -c secrets /proc/self/mountinfo; echo changed > /run/secrets/token && echo WROTE; true");
    c.secrets = vec![format!("token={}", src.display()).parse().unwrap()];
    let out_dir = scratch().join("out-secret");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    c.volumes.push(format!("{}:/out", out_dir.display()).parse().unwrap());
    c.args[3] = format!("exec >/out/log 2>&1; {}", c.args[3]);
    let mut container = Container::prepare(c).unwrap();
    let dir = container.layout().dir.clone();
    container.start().unwrap();
    // While it runs: the host's mount tables do not show the secrets tmpfs or the overlay.
    assert!(!mountinfo_mentions(&dir.join("secrets").display().to_string()));
    assert!(!mountinfo_mentions(&dir.join("merged").display().to_string()));
    let code = container.wait().unwrap();
    // Nothing of it in the upper layer.
    let upper_has_secret = walk(&dir.join("upper")).iter().any(|p| std::fs::read(p).is_ok_and(|b| b == b"hunter2"));
    assert!(!upper_has_secret);
    container.cleanup().unwrap();
    let out = std::fs::read_to_string(out_dir.join("log")).unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("hunter2\n"), "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    assert!(!dir.exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn privileged_read_only_root() {
    let mut c = config("readonly", "echo x > /made && echo WROTE; busybox stat -c 'owner %u' /etc/motd; echo end");
    c.read_only = true;
    let (code, out) = run(c);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("WROTE"), "{out}");
    // The read-only root is idmapped too: image root's files are container root's.
    assert!(out.contains("owner 0\n"), "{out}");
    assert!(!lower().join("made").exists());
}

#[test]
fn privileged_network_is_loopback_only_unless_host() {
    let script = "busybox cat /proc/net/dev | busybox tail -n +3 | busybox cut -d: -f1 | busybox tr -d ' '";
    let (code, out) = run(config("net-none", script));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "lo\n", "interfaces in the default sandbox");
    let mut host = config("net-host", script);
    host.net = launch::Net::Host;
    let (code, out) = run(host);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().count() > 1, "--net host shows the host's interfaces: {out}");
}

fn not_enforced() -> launch::snapshot::Events {
    launch::snapshot::Events::Unavailable("not enforced".into())
}

#[test]
fn privileged_snapshot_of_a_running_container() {
    let mut c = config("snap", "echo evidence > /tmp/written; exec busybox sleep 1000");
    c.volumes.clear();
    let state_root = c.state_root.clone();
    let mut container = Container::prepare(c).unwrap();
    let host_pid = container.start().unwrap();
    let written = container.layout().upper.join("tmp/written");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Until the file is written and the shell has become the sleep.
    while !(written.exists()
        && std::fs::read_to_string(format!("/proc/{host_pid}/cmdline")).is_ok_and(|c| c.contains("sleep")))
    {
        assert!(std::time::Instant::now() < deadline, "container did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dest = scratch().join("snapshot-snap");
    let summary = launch::snapshot::snapshot(&state_root, "snap", &dest, &not_enforced()).unwrap();
    assert_eq!(summary.processes, 1, "{summary:?}");
    // The upper layer's file, with its owner (host 100000, container root).
    let listing = spawning(|| {
        std::process::Command::new("tar")
            .args(["--list", "--verbose", "--numeric-owner", "--file"])
            .arg(dest.join("upper.tar"))
            .output()
    })
    .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let line = listing.lines().find(|l| l.ends_with("./tmp/written")).unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains("100000/100000"), "{line}");
    // The process list names the sleep, with the digest of busybox.
    let procs: Vec<launch::snapshot::ProcessInfo> =
        serde_json::from_slice(&std::fs::read(dest.join("processes.json")).unwrap()).unwrap();
    let sleep = procs.iter().find(|p| p.cmdline.iter().any(|a| a == "sleep")).unwrap_or_else(|| panic!("{procs:?}"));
    assert_eq!(sleep.host_pid, host_pid);
    assert_eq!(sleep.pid, Some(1));
    assert_eq!(sleep.exe.as_deref(), Some("/bin/busybox"));
    let busybox = spawning(|| std::process::Command::new("sha256sum").arg(BUSYBOX).output()).unwrap();
    let want = String::from_utf8_lossy(&busybox.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(sleep.exe_sha256.as_deref(), Some(want.as_str()));
    assert!(dest.join("imgsign.json").is_file() && dest.join("events.json").is_file());
    // A frozen container too (its record says so); thawed afterwards.
    launch::control::freeze(&state_root, "snap").unwrap();
    let frozen =
        launch::snapshot::snapshot(&state_root, "snap", &scratch().join("snapshot-snap-frozen"), &not_enforced());
    launch::control::thaw(&state_root, "snap").unwrap();
    let frozen = frozen.unwrap();
    assert_eq!((frozen.status.as_str(), frozen.processes), ("frozen", 1), "{frozen:?}");
    assert!(frozen.upper_warning.is_none(), "{frozen:?}");
    // An existing DEST is refused; the container keeps running.
    assert!(matches!(
        launch::snapshot::snapshot(&state_root, "snap", &dest, &not_enforced()),
        Err(launch::snapshot::SnapshotError::Exists(_))
    ));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let state = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    assert!(!state.contains("State:\tZ"), "{state}");
    container.signal(launch::Signal::SIGKILL).unwrap();
    assert_eq!(container.wait().unwrap(), 128 + 9);
    container.cleanup().unwrap();
}
