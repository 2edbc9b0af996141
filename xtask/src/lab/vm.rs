//! Boots one kernel under QEMU and reads its console.
//!
//! QEMU runs with TCG (`-cpu max`; KVM guests do not boot on the lab's
//! machines), the serial console on stdout, `-no-reboot` and `panic=-1`, so a
//! panic ends QEMU at once. A wall-time limit kills a hung VM. The console
//! is parsed for the protocol of [`super::initramfs`] and saved in full.
//!
//! Each boot gets a fresh, sparse ext4 scratch disk (virtio, `/dev/vda`),
//! which `/init` mounts on `/tmp`: the tests' files then live on a disk
//! filesystem, as a node's images do, not on tmpfs (whose pages can change
//! without a writer, so the enforcer does not cache digests there).
//! `IMGSIGN_LAB_DATA_DISK` adds a read-only second disk (see [`data_disk`]), and the engine
//! tests get the Debian tree as the last disk (see [`rootfs_disk`]).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kernels::Kernel;

/// The LSMs the kernel is booted with; `bpf` is what the lab needs.
pub const LSM: &str = "lockdown,capability,landlock,yama,integrity,apparmor,bpf";
const TAIL_LINES: usize = 40;

/// One boot to run.
#[derive(Debug)]
pub struct Boot {
    pub kernel: Kernel,
    pub initramfs: PathBuf,
    /// Tests the VM must report, in order.
    pub expected: Vec<String>,
    pub timeout: Duration,
    pub console_log: PathBuf,
    pub verbose: bool,
    /// The Debian tree's disk image ([`super::rootfs`]), when a planned test needs it.
    pub rootfs: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The VM never reported the test.
    NotRun,
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    pub verdict: Verdict,
    /// Host-measured duration, from its start marker to its end marker.
    pub duration: Option<Duration>,
}

/// What one boot produced.
#[derive(Debug)]
pub struct Outcome {
    pub label: &'static str,
    pub package: String,
    pub tests: Vec<TestResult>,
    /// `Some(true)` for `LAB-RESULT PASS`.
    pub result_marker: Option<bool>,
    /// Why the boot as a whole failed (panic, hang, early exit), if it did.
    pub failure: Option<String>,
    pub wall: Duration,
    /// QEMU start to the first `vm_` test's start marker.
    pub boot: Option<Duration>,
    /// The last `vm_` test's end marker to QEMU's exit.
    pub shutdown: Option<Duration>,
    pub console_tail: Vec<String>,
    pub console_log: PathBuf,
}

impl Outcome {
    /// Every expected test passed, the VM said so, and nothing went wrong.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
            && self.result_marker == Some(true)
            && !self.tests.is_empty()
            && self.tests.iter().all(|t| t.verdict == Verdict::Pass)
    }

    /// Time the lab itself cost: everything but the `vm_` tests' own work.
    pub fn overhead(&self) -> Option<Duration> {
        Some(self.boot? + self.shutdown?)
    }
}

/// Size of the scratch disk (sparse: only what the tests write takes room).
const SCRATCH_DISK_SIZE: &str = "2G";

/// Makes the empty ext4 file system `/init` mounts on `/tmp`, next to the
/// console log (one per boot, made anew each time), with the `verity` feature
/// (the store seals its objects with fs-verity where it can).
fn scratch_disk(boot: &Boot) -> Result<PathBuf> {
    let disk = boot.console_log.with_extension("scratch.img");
    let _ = std::fs::remove_file(&disk);
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "verity", "-E", "lazy_itable_init=1,lazy_journal_init=1"])
        .arg(&disk)
        .arg(SCRATCH_DISK_SIZE)
        // It says "Creating regular file" even with -q.
        .stdout(Stdio::null())
        .status()
        .context("run mkfs.ext4 (apt-get install e2fsprogs)")?;
    if !status.success() {
        anyhow::bail!("mkfs.ext4 {} failed: {status}", disk.display());
    }
    Ok(disk)
}

/// `IMGSIGN_LAB_DATA_DISK`: a file the VM sees read-only as `/dev/vdb` (the
/// benchmarks read a real image's layer tar from it: `tar -xf /dev/vdb`).
fn data_disk() -> Result<Vec<String>> {
    let Some(path) = std::env::var_os("IMGSIGN_LAB_DATA_DISK") else {
        return Ok(Vec::new());
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        anyhow::bail!("IMGSIGN_LAB_DATA_DISK={} is not a file", path.display());
    }
    Ok(vec!["-drive".into(), format!("file={},if=virtio,format=raw,readonly=on", path.display())])
}

/// The Debian tree as the last virtio disk, in snapshot mode: the VM may write to it, the
/// writes go to a temporary overlay of this boot, and the cached image stays as it was (the
/// concurrent boots share it). The tests find it by its label, whatever its device name.
fn rootfs_disk(boot: &Boot) -> Vec<String> {
    match &boot.rootfs {
        Some(path) => vec!["-drive".into(), format!("file={},if=virtio,format=raw,snapshot=on", path.display())],
        None => Vec::new(),
    }
}

/// Guest memory: container engines in the Debian tree need more than the tests alone.
fn memory(boot: &Boot) -> &'static str {
    if boot.rootfs.is_some() {
        "2G"
    } else {
        "1G"
    }
}

/// Boots `boot.kernel` and collects the outcome; `Err` only when QEMU cannot run.
pub fn run(boot: &Boot) -> Result<Outcome> {
    let label = boot.kernel.spec.label;
    let qemu = std::env::var("IMGSIGN_LAB_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
    let accel = std::env::var("IMGSIGN_LAB_ACCEL").unwrap_or_else(|_| "tcg".into());
    let cpu = if accel == "tcg" { "max" } else { "host" };
    let append = format!("console=ttyS0 lsm={LSM} panic=-1 oops=panic quiet loglevel=4 rdinit=/init");
    let disk = scratch_disk(boot)?;
    let started = Instant::now();
    let mut child = Command::new(&qemu)
        .args(["-accel", &accel, "-cpu", cpu, "-smp", "1", "-m", memory(boot)])
        // Extra QEMU arguments, split on whitespace: e.g. `-icount
        // shift=0,sleep=off` makes guest time count instructions, so timings
        // taken in the guest (benchmarks) do not depend on the host's load.
        .args(std::env::var("IMGSIGN_LAB_QEMU_ARGS").unwrap_or_default().split_whitespace())
        .args(["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot"])
        .arg("-kernel")
        .arg(&boot.kernel.vmlinuz)
        .arg("-initrd")
        .arg(&boot.initramfs)
        .args(["-append", &append])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw,cache=unsafe", disk.display()))
        .args(data_disk()?)
        .args(rootfs_disk(boot))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {qemu} (apt-get install qemu-system-x86)"))?;
    eprintln!("lab {label}: booting {} (time limit {} s)", boot.kernel.package, boot.timeout.as_secs());

    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).map(|n| n > 0).unwrap_or(false) {
            let line = String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_string();
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
    let mut stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let deadline = started + boot.timeout;
    let mut console = Vec::new();
    let mut parser = Parser::new(&boot.expected);
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                if boot.verbose || line.starts_with("LAB-") {
                    eprintln!("lab {label}: {line}");
                }
                parser.line(at, &line);
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().context("wait for qemu")?;
    let exited = Instant::now();
    let _ = reader.join();
    let qemu_stderr = err_reader.join().unwrap_or_default();
    if !qemu_stderr.trim().is_empty() {
        console.push(format!("[qemu stderr] {}", qemu_stderr.trim()));
    }
    let _ = std::fs::write(&boot.console_log, console.join("\n") + "\n");

    let failure = if timed_out {
        Some(format!(
            "no LAB-RESULT within the {} s limit: VM hung, killed{}",
            boot.timeout.as_secs(),
            parser.panic.as_ref().map(|p| format!(" (after: {p})")).unwrap_or_default()
        ))
    } else if let Some(panic) = &parser.panic {
        Some(format!("kernel panicked: {panic}"))
    } else if parser.result.is_none() {
        Some(format!("VM exited ({status}) without the LAB-RESULT marker"))
    } else if !status.success() {
        Some(format!("qemu exited with {status}"))
    } else {
        None
    };

    let tail_from = console.len().saturating_sub(TAIL_LINES);
    Ok(Outcome {
        label,
        package: boot.kernel.package.clone(),
        tests: parser.results(),
        result_marker: parser.result,
        failure,
        wall: exited - started,
        boot: parser.first_vm_start.map(|t| t - started),
        shutdown: parser.last_vm_end.map(|t| exited - t),
        console_tail: console[tail_from..].to_vec(),
        console_log: boot.console_log.clone(),
    })
}

/// Console protocol state.
struct Parser {
    expected: Vec<String>,
    started: Vec<(String, Instant)>,
    ended: Vec<(String, Verdict, Instant)>,
    /// Indented output of the test currently running.
    output: Vec<(String, Vec<String>)>,
    result: Option<bool>,
    panic: Option<String>,
    first_vm_start: Option<Instant>,
    last_vm_end: Option<Instant>,
}

impl Parser {
    fn new(expected: &[String]) -> Self {
        Self {
            expected: expected.to_vec(),
            started: Vec::new(),
            ended: Vec::new(),
            output: Vec::new(),
            result: None,
            panic: None,
            first_vm_start: None,
            last_vm_end: None,
        }
    }

    fn line(&mut self, at: Instant, line: &str) {
        if line.contains("Kernel panic - not syncing") && self.panic.is_none() {
            self.panic = Some(line.trim().to_string());
        }
        if line.starts_with(char::is_whitespace) {
            // Test output is indented by /init: never a marker.
            if let Some((_, out)) = self.output.last_mut() {
                out.push(line.trim().to_string());
            }
            return;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("LAB-TEST-START") => {
                let name = words.next().unwrap_or_default().to_string();
                if name.starts_with("vm_") && self.first_vm_start.is_none() {
                    self.first_vm_start = Some(at);
                }
                self.output.push((name.clone(), Vec::new()));
                self.started.push((name, at));
            }
            Some("LAB-TEST") => {
                let name = words.next().unwrap_or_default().to_string();
                let verdict = match words.next() {
                    Some("PASS") => Verdict::Pass,
                    Some("FAIL") => Verdict::Fail(words.next().unwrap_or("failed").to_string()),
                    other => Verdict::Fail(format!("unknown verdict {other:?}")),
                };
                if name.starts_with("vm_") {
                    self.last_vm_end = Some(at);
                }
                self.ended.push((name, verdict, at));
            }
            Some("LAB-RESULT") => self.result = Some(words.next() == Some("PASS")),
            _ => {}
        }
    }

    /// One result per expected test; a libtest test must also say it ran one test.
    fn results(&self) -> Vec<TestResult> {
        let mut results: Vec<TestResult> = self
            .expected
            .iter()
            .map(|name| {
                let start = self.started.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
                let Some((_, verdict, end)) = self.ended.iter().find(|(n, _, _)| n == name) else {
                    return TestResult { name: name.clone(), verdict: Verdict::NotRun, duration: None };
                };
                let mut verdict = verdict.clone();
                let output = self.output.iter().find(|(n, _)| n == name).map(|(_, o)| o.as_slice()).unwrap_or(&[]);
                if verdict == Verdict::Pass
                    && name.starts_with("vm_")
                    && !output.iter().any(|l| l.starts_with("test result: ok. 1 passed"))
                {
                    verdict = Verdict::Fail("exit 0 but libtest did not report 1 passed test".into());
                }
                TestResult { name: name.clone(), verdict, duration: start.map(|s| *end - s) }
            })
            .collect();
        for (name, _, _) in &self.ended {
            if !self.expected.contains(name) {
                results.push(TestResult {
                    name: name.clone(),
                    verdict: Verdict::Fail("reported but not planned".into()),
                    duration: None,
                });
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(expected: &[&str], console: &str) -> Parser {
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        let mut parser = Parser::new(&expected);
        for line in console.lines() {
            parser.line(Instant::now(), line);
        }
        parser
    }

    #[test]
    fn all_reported_tests_pass() {
        let p = parse(
            &["lab_x", "vm_a"],
            "LAB-TEST-START lab_x\nLAB-TEST lab_x PASS\nLAB-TEST-START vm_a\n    test result: ok. 1 passed; 0 failed\nLAB-TEST vm_a PASS\nLAB-RESULT PASS",
        );
        assert_eq!(p.result, Some(true));
        assert!(p.results().iter().all(|t| t.verdict == Verdict::Pass));
    }

    #[test]
    fn missing_test_is_not_run() {
        let p = parse(
            &["vm_a", "vm_b"],
            "LAB-TEST-START vm_a\n    test result: ok. 1 passed\nLAB-TEST vm_a PASS\nLAB-RESULT PASS",
        );
        assert_eq!(p.results()[1].verdict, Verdict::NotRun);
    }

    #[test]
    fn libtest_running_nothing_fails() {
        let p = parse(&["vm_a"], "LAB-TEST-START vm_a\n    test result: ok. 0 passed\nLAB-TEST vm_a PASS");
        assert!(matches!(p.results()[0].verdict, Verdict::Fail(_)));
    }

    #[test]
    fn indented_output_cannot_forge_markers() {
        let p = parse(&["vm_a"], "LAB-TEST-START vm_a\n    LAB-TEST vm_a PASS\n    LAB-RESULT PASS\n");
        assert_eq!(p.result, None);
        assert_eq!(p.results()[0].verdict, Verdict::NotRun);
    }

    #[test]
    fn panic_is_noticed() {
        let p = parse(&["vm_a"], "[ 2.5] Kernel panic - not syncing: sysrq triggered crash");
        assert!(p.panic.is_some());
    }
}
