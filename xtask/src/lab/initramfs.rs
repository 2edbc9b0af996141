//! The lab's initramfs: busybox, the test binaries with their shared
//! libraries, the kernel's modules, and an `/init` script that runs the plan.
//!
//! `/init` speaks a line protocol on the console that [`super::vm`] parses:
//! `LAB-BOOT ...` once the filesystems are mounted, `LAB-TEST-START <name>`
//! and `LAB-TEST <name> PASS|FAIL` around each test (whose own output is
//! indented, so it can never forge a marker), and `LAB-RESULT PASS|FAIL` last.
//! It then powers off; should that fail, init exits and the kernel panics,
//! which QEMU's `-no-reboot` turns into an exit.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::kernels::Kernel;
use super::testbins::Suite;

/// Kernel modules the lab loads when the kernel has them as modules:
/// overlayfs, FUSE, and the virtio disk that holds the scratch file system.
const MODULES: &[&str] = &["overlay", "fuse", "virtio_pci", "virtio_blk"];
const BUSYBOX: &str = "/bin/busybox";

/// Pseudo-tests `/init` runs itself before the suites.
pub const MODULES_TEST: &str = "lab_modules_loaded";
pub const BPF_LSM_TEST: &str = "lab_bpf_lsm_active";
pub const INJECTED_TEST: &str = "lab_injected_failure";

/// What the VM should run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub suites: Vec<Suite>,
    pub inject_failure: bool,
    pub inject_panic: bool,
    pub inject_hang: bool,
    /// Extra executables copied into `/lab/bin` under their own file names,
    /// with their shared libraries (e.g. the release `imgsign` for the demo).
    pub binaries: Vec<PathBuf>,
    /// Shell scripts run as tests after the suites (`sh /lab/<name>.sh`).
    pub scripts: Vec<Script>,
}

/// A shell script `/init` runs as one test named `name`.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub text: String,
}

impl Plan {
    /// Every test name the VM must report, in order.
    pub fn test_names(&self) -> Vec<String> {
        let mut names = vec![MODULES_TEST.to_string(), BPF_LSM_TEST.to_string()];
        names.extend(self.suites.iter().flat_map(|s| s.tests.iter().cloned()));
        names.extend(self.scripts.iter().map(|s| s.name.clone()));
        if self.inject_failure {
            names.push(INJECTED_TEST.to_string());
        }
        names
    }
}

/// Builds `initramfs-<label>.cpio.gz` in `work` and returns its path.
pub fn build(kernel: &Kernel, plan: &Plan, work: &Path) -> Result<PathBuf> {
    let label = kernel.spec.label;
    let tree = work.join(format!("tree-{label}"));
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("remove {}", tree.display()))?;
    }
    for dir in
        ["bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp", "run", "root", "lab/bin", "lab/modules"]
    {
        fs::create_dir_all(tree.join(dir))?;
    }
    // Best effort: the kernel's built-in initramfs already has /dev/console;
    // a node here only helps a kernel built without one.
    let _ = Command::new("mknod").arg(tree.join("dev/console")).args(["c", "5", "1"]).status();

    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} missing: apt-get install busybox-static");
    }
    fs::copy(BUSYBOX, tree.join("bin/busybox")).context("copy busybox")?;

    let mut libs = Vec::new();
    for suite in &plan.suites {
        let dst = tree.join("lab/bin").join(&suite.target);
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&dst)
            .arg(&suite.executable)
            .status()
            .context("run strip (binutils)")?;
        if !status.success() {
            bail!("strip {} failed", suite.executable.display());
        }
        libs.extend(shared_libraries(&suite.executable)?);
    }
    for exe in &plan.binaries {
        let name = exe.file_name().context("binary without a file name")?;
        let dst = tree.join("lab/bin").join(name);
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&dst)
            .arg(exe)
            .status()
            .context("run strip (binutils)")?;
        if !status.success() {
            bail!("strip {} failed", exe.display());
        }
        libs.extend(shared_libraries(exe)?);
    }
    for script in &plan.scripts {
        let dst = tree.join(format!("lab/{}.sh", script.name));
        fs::write(&dst, &script.text)?;
        set_executable(&dst)?;
    }
    libs.sort();
    libs.dedup();
    for lib in libs {
        let dst = tree.join(lib.strip_prefix("/").unwrap_or(&lib));
        fs::create_dir_all(dst.parent().unwrap())?;
        fs::copy(&lib, &dst).with_context(|| format!("copy {}", lib.display()))?;
    }

    let modules = stage_modules(kernel, &tree.join("lab/modules"))?;
    fs::write(tree.join("init"), init_script(plan, &modules))?;
    set_executable(&tree.join("init"))?;

    let image = work.join(format!("initramfs-{label}.cpio.gz"));
    let script = format!(
        "set -eo pipefail; cd '{}' && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet | gzip -1 > '{}'",
        tree.display(),
        image.display()
    );
    let status = Command::new("bash").args(["-c", &script]).status().context("run cpio")?;
    if !status.success() {
        bail!("packing the initramfs failed (needs cpio, gzip)");
    }
    Ok(image)
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Shared libraries and the dynamic loader of `exe`, from `ldd`.
fn shared_libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(exe).output().context("run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static executable: nothing to copy.
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// Copies [`MODULES`] and their dependencies, decompressed, into `dst` as
/// `NN-name.ko` in load order. Returns the file names in that order.
///
/// Debian's packages ship no `modules.dep` (depmod runs at install), so the
/// dependencies come from each module's own `.modinfo` (`depends=`).
fn stage_modules(kernel: &Kernel, dst: &Path) -> Result<Vec<String>> {
    let mut index = Vec::new();
    walk_modules(&kernel.modules.join("kernel"), &mut index)?;
    let builtin = fs::read_to_string(kernel.modules.join("modules.builtin")).unwrap_or_default();

    let mut order: Vec<(String, Vec<u8>)> = Vec::new();
    for name in MODULES {
        visit(&normalize(name), &index, &builtin, &mut order, kernel)?;
    }
    let mut staged = Vec::new();
    for (i, (name, bytes)) in order.iter().enumerate() {
        let file = format!("{i:02}-{name}.ko");
        fs::write(dst.join(&file), bytes)?;
        staged.push(file);
    }
    Ok(staged)
}

fn walk_modules(dir: &Path, index: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk_modules(&path, index)?;
        } else if path.to_string_lossy().contains(".ko") {
            index.push((module_name(&path.to_string_lossy()), path));
        }
    }
    Ok(())
}

/// Depth-first: dependencies before the module. Built-in modules are skipped.
fn visit(
    name: &str,
    index: &[(String, PathBuf)],
    builtin: &str,
    order: &mut Vec<(String, Vec<u8>)>,
    kernel: &Kernel,
) -> Result<()> {
    if order.iter().any(|(n, _)| n == name) {
        return Ok(());
    }
    let Some((_, path)) = index.iter().find(|(n, _)| n == name) else {
        if builtin.lines().any(|p| module_name(p) == name) {
            return Ok(());
        }
        bail!("kernel {} has no module {name}", kernel.package);
    };
    let bytes = decompress(path)?;
    for dep in modinfo_depends(&bytes) {
        visit(&normalize(&dep), index, builtin, order, kernel)?;
    }
    order.push((name.to_string(), bytes));
    Ok(())
}

/// The `depends=` list of a module's `.modinfo`.
fn modinfo_depends(module: &[u8]) -> Vec<String> {
    let needle = b"\0depends=";
    module
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| {
            let rest = &module[at + needle.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).split(',').filter(|d| !d.is_empty()).map(str::to_string).collect()
        })
        .unwrap_or_default()
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/fs/overlayfs/overlay.ko.xz` -> `overlay`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    normalize(base.split(".ko").next().unwrap_or(base))
}

/// A module's bytes, decompressed (busybox insmod wants plain ELF).
fn decompress(src: &Path) -> Result<Vec<u8>> {
    let name = src.to_string_lossy();
    let tool = [(".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")]
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, tool)| *tool);
    let Some(tool) = tool else {
        return fs::read(src).with_context(|| format!("read {}", src.display()));
    };
    let out = Command::new(tool).arg("-dc").arg(src).output().with_context(|| format!("run {tool}"))?;
    if !out.status.success() {
        bail!("{tool} -dc {} failed", src.display());
    }
    Ok(out.stdout)
}

/// The `/init` shell script for `plan`.
fn init_script(plan: &Plan, modules: &[String]) -> String {
    let mut s = String::from(INIT_PRELUDE);
    // The benchmarks' sizes, as the host's environment says (a number, or nothing).
    for name in FORWARDED {
        if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        {
            let _ = writeln!(s, "export {name}={value}");
        }
    }
    s.push_str("modfail=0\n");
    for module in modules {
        let _ = writeln!(s, "insmod /lab/modules/{module} || {{ echo \"insmod {module} failed\"; modfail=1; }}");
    }
    // The scratch disk (see `vm`): the tests' files go on ext4, not tmpfs.
    s.push_str(SCRATCH_MOUNT);
    let _ = writeln!(s, "lab_test {MODULES_TEST} sh -c \"exit $modfail\"");
    let _ = writeln!(
        s,
        "lab_test {BPF_LSM_TEST} sh -c 'cat /sys/kernel/security/lsm; echo; grep -qw bpf /sys/kernel/security/lsm'"
    );
    if plan.inject_panic {
        s.push_str("echo 'LAB-INJECT panic: crashing the kernel via sysrq'\necho 1 > /proc/sys/kernel/sysrq\necho c > /proc/sysrq-trigger\n");
    }
    if plan.inject_hang {
        s.push_str("echo 'LAB-INJECT hang: sleeping forever'\nwhile :; do sleep 3600; done\n");
    }
    for suite in &plan.suites {
        for test in &suite.tests {
            let _ = writeln!(
                s,
                "lab_test {test} /lab/bin/{} --ignored --exact {test} --test-threads=1 --nocapture",
                suite.target
            );
        }
    }
    for script in &plan.scripts {
        let _ = writeln!(s, "lab_test {0} sh /lab/{0}.sh", script.name);
    }
    if plan.inject_failure {
        let _ = writeln!(s, "lab_test {INJECTED_TEST} sh -c 'echo deliberately failing test; exit 1'");
    }
    s.push_str(INIT_EPILOGUE);
    s
}

/// Numeric settings of the in-VM benchmarks passed from the host's environment.
const FORWARDED: &[&str] = &["IMGSIGN_ENGINES_BENCH_N"];

const INIT_PRELUDE: &str = r#"#!/bin/busybox sh
# imgsign kernel lab /init (generated by `cargo xtask lab`).
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root TMPDIR=/tmp RUST_BACKTRACE=1
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
up() { cut -d' ' -f1 /proc/uptime; }
echo "LAB-BOOT uptime=$(up) kernel=$(uname -r)"
fail=0
lab_test() {
    name=$1; shift
    echo "LAB-TEST-START $name uptime=$(up)"
    { "$@" 2>&1; echo $? > /tmp/.lab-rc; } | while IFS= read -r line; do echo "    $line"; done
    rc=$(cat /tmp/.lab-rc 2>/dev/null || echo missing)
    if [ "$rc" = 0 ]; then
        echo "LAB-TEST $name PASS uptime=$(up)"
    else
        echo "LAB-TEST $name FAIL rc=$rc uptime=$(up)"
        fail=1
    fi
    rm -f /tmp/.lab-rc
}
"#;

const SCRATCH_MOUNT: &str = r#"for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
if mount -t ext4 /dev/vda /tmp; then echo "scratch disk: ext4 on /tmp"; else echo "cannot mount the scratch disk /dev/vda on /tmp"; modfail=1; fi
"#;

const INIT_EPILOGUE: &str = r#"if [ "$fail" = 0 ]; then echo "LAB-RESULT PASS"; else echo "LAB-RESULT FAIL"; fi
sync
poweroff -f
"#;
