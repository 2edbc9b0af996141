//! Compiles the C BPF programs in `src/bpf/*.bpf.c` with clang into `OUT_DIR`, and generates the
//! enforcer's ABI for both sides from `src/bpf/abi.h` (see [`abi`]): `abi.rs` (Rust constants,
//! `#[repr(C)]` structs and layout asserts) and `abi_layout.h` (the C side's `_Static_assert`s).
//!
//! `vmlinux.h` is generated from the build machine's BTF with bpftool; the
//! objects use CO-RE relocations, so they load on other kernels too.
//! Environment overrides: `CLANG` (compiler), `BPFTOOL`, `IMGSIGN_VMLINUX_BTF`
//! (a BTF file other than `/sys/kernel/btf/vmlinux`).

// A build script talks to cargo on stdout (`cargo:` lines) and to the person building on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

#[path = "build/abi.rs"]
mod abi;

const PACKAGES: &str = "clang-19 libbpf-dev bpftool";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src_dir = Path::new("src/bpf");
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-changed=build");
    for var in ["CLANG", "BPFTOOL", "IMGSIGN_VMLINUX_BTF"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let clang = find_tool("CLANG", &["clang-19", "clang"]);
    let bpftool = find_tool("BPFTOOL", &["bpftool", "/usr/sbin/bpftool"]);
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail("libbpf headers (/usr/include/bpf/bpf_helpers.h) not found");
    }

    let btf = env::var("IMGSIGN_VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    let abi_h = src_dir.join("abi.h");
    let text = fs::read_to_string(&abi_h).unwrap_or_else(|e| fail(&format!("read {}: {e}", abi_h.display())));
    let parsed = abi::parse(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", abi_h.display())));
    let write = |name: &str, text: String| {
        fs::write(out_dir.join(name), text).unwrap_or_else(|e| fail(&format!("write {name}: {e}")))
    };
    write("abi.rs", abi::rust(&parsed));
    write("abi_layout.h", abi::c_layout(&parsed));

    let vmlinux_h = out_dir.join("vmlinux.h");
    let header =
        run_capture(Command::new(&bpftool).args(["btf", "dump", "file", &btf, "format", "c"]), "bpftool btf dump");
    fs::write(&vmlinux_h, header).unwrap_or_else(|e| fail(&format!("write vmlinux.h: {e}")));

    let mut sources: Vec<PathBuf> = fs::read_dir(src_dir)
        .unwrap_or_else(|e| fail(&format!("read {}: {e}", src_dir.display())))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();
    let compile = |source: &Path, object: &Path, defines: &[&str]| {
        run_capture(
            Command::new(&clang)
                .args(["-target", "bpf", "-mcpu=v3", "-O2", "-g", "-D__TARGET_ARCH_x86", "-Wall"])
                .args(defines)
                .arg("-I")
                .arg(&out_dir)
                .arg("-I")
                .arg(src_dir)
                .arg("-c")
                .arg(source)
                .arg("-o")
                .arg(object),
            &format!("clang {}", source.display()),
        );
    };
    for source in sources {
        let stem = source.file_name().unwrap().to_string_lossy().trim_end_matches(".c").to_string();
        compile(&source, &out_dir.join(format!("{stem}.o")), &[]);
    }
    // The upgrade tests' "other build of the same layout": the enforcer with one compile-time
    // constant changed, so its programs differ from the embedded ones (objects::ENFORCER_VARIANT).
    compile(&src_dir.join("enforcer.bpf.c"), &out_dir.join("enforcer_variant.bpf.o"), &["-DENF_SET_ATTEMPTS=2"]);
}

/// The first of `candidates` (or `$var`) that runs with `--version`.
fn find_tool(var: &str, candidates: &[&str]) -> String {
    if let Ok(tool) = env::var(var) {
        return tool;
    }
    for candidate in candidates {
        let arg = if candidate.contains("bpftool") { "version" } else { "--version" };
        if Command::new(candidate).arg(arg).output().is_ok_and(|o| o.status.success()) {
            return candidate.to_string();
        }
    }
    fail(&format!("none of {candidates:?} found (set {var} to override)"))
}

fn run_capture(cmd: &mut Command, what: &str) -> Vec<u8> {
    match cmd.output() {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => fail(&format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => fail(&format!("{what}: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!(
        "error: bpf-lsm build: {msg}\n\
         The BPF programs need clang, libbpf headers and bpftool; on Debian:\n    \
         apt-get install {PACKAGES}"
    );
    exit(1)
}
