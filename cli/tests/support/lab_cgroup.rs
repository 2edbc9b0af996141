//! A cgroup v2 directory of an in-VM test (the lab mounts cgroup2 on `/sys/fs/cgroup`), and
//! running a program inside it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `/sys/fs/cgroup/<prefix>-<name>`, removed on drop.
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn new(prefix: &str, name: &str) -> Cgroup {
        let path = Path::new("/sys/fs/cgroup").join(format!("{prefix}-{name}"));
        let _ = fs::create_dir(&path);
        Cgroup(path)
    }

    /// Runs `program args` inside the cgroup (a shell moves itself there, then execs): exit code
    /// and output.
    pub fn run(&self, program: &Path, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new("/bin/busybox")
            .args(["sh", "-c", "echo $$ > \"$0/cgroup.procs\" && exec \"$@\""])
            .arg(&self.0)
            .arg(program)
            .args(args)
            .output()
            .unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}
