//! Only code is loaded (issue 11), in the kernel lab: a scope built from a v2 bundle of a `dir:`
//! tree holds the digests of its code (ELF objects, `#!` scripts) and of its files with an exec
//! bit, not those of its data. A listed dynamically linked ELF runs, its shared libraries (listed
//! 0644, so loaded for their `elf` mark alone) mapped by the loader; the same program in a scope
//! whose otherwise identical manifest lacks the marks cannot map them; the exact bytes of a
//! listed data file, copied with an exec bit, are refused (the digest is signed but not loaded);
//! a listed 0755 file without `#!` is loaded for its exec bit.
//!
//! Run by `cargo xtask lab`; ignored on the host, whose kernel refuses BPF-LSM programs.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use support::lab_cgroup::Cgroup;
use support::node::Node;
use support::*;

/// On the initramfs root file system, where the tree can hardlink `/lab/bin/imgsign` and
/// `/bin/busybox` instead of copying them.
const WORK: &str = "/root/vm-codeonly";
const DATA: &[u8] = b"echo DATA-RAN\n";
const PLAIN: &[u8] = b"echo PLAIN-RAN\n";

/// A cgroup of this file's tests (`/sys/fs/cgroup/vm-codeonly-NAME`).
fn cgroup(name: &str) -> Cgroup {
    Cgroup::new("vm-codeonly", name)
}

/// The imgsign the lab copied into the VM (dynamically linked; its libraries and loader are in
/// the VM's /lib64 and /lib/x86_64-linux-gnu).
fn program() -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_imgsign"));
    if built.exists() { built } else { Path::new("/lab/bin/imgsign") }.to_path_buf()
}

/// The tree: the program and busybox (hardlinks, 0755), every shared library and the loader of
/// the VM as 0644 copies, a 0644 data file and a 0755 file without `#!`.
fn write_tree(tree: &Path) {
    let _ = fs::remove_dir_all(tree);
    for dir in ["bin", "lib", "etc"] {
        fs::create_dir_all(tree.join(dir)).unwrap();
    }
    fs::hard_link(program(), tree.join("bin/imgsign")).unwrap();
    fs::hard_link("/bin/busybox", tree.join("bin/busybox")).unwrap();
    let mut libraries = 0;
    for dir in ["/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"] {
        let Ok(entries) = fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let dest = tree.join("lib").join(&name);
            if !name.contains(".so") || dest.exists() {
                continue;
            }
            let Ok(bytes) = fs::read(entry.path()) else { continue };
            write(&dest, &bytes, 0o644);
            libraries += 1;
        }
    }
    assert!(libraries >= 2, "the loader and libc must be in the VM");
    write(&tree.join("etc/data"), DATA, 0o644);
    write(&tree.join("bin/plain"), PLAIN, 0o755);
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The bundle's statement with every code mark removed, signed again by the first test key
/// (the one the node trusts): a v2 manifest that says none of its files is code.
fn without_marks(bundle: &Path, out: &Path) -> PathBuf {
    use verifier_core::source::{ImageIdentity, SourceKind};
    use verifier_core::statement::Statement;
    let json = statement(bundle);
    let mut parsed = Statement::parse(&serde_json::to_vec(&json).unwrap()).unwrap();
    parsed.predicate.files.iter_mut().for_each(|f| f.code = None);
    let identity = ImageIdentity {
        kind: SourceKind::Dir,
        default_name: "codeonly".into(),
        manifest_digest: None,
        config_digest: None,
        layers: Vec::new(),
    };
    let prepared = verifier_core::sign::Prepared::new(parsed, identity).unwrap();
    let bundle = prepared.sign(&[&testdata::keys::test_key("a")]).unwrap().remove(0);
    bundle.write_file(out).unwrap();
    out.to_path_buf()
}

fn entry<'a>(statement: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    statement["predicate"]["files"].as_array().unwrap().iter().find(|e| e["path"] == path).unwrap()
}

#[test]
#[ignore = "needs root in a BPF-LSM kernel: run by `cargo xtask lab`"]
fn vm_codeonly_a_v2_scope_runs_code_and_refuses_signed_data() {
    let _ = fs::remove_dir_all(WORK);
    fs::create_dir_all(WORK).unwrap();
    let tree = Path::new(WORK).join("tree");
    write_tree(&tree);
    let [a, ..] = keys();
    let bundle = Path::new(WORK).join("codeonly.json");
    sign_ok(&format!("dir:{}", tree.display()), &[a], &bundle, &["--name", "codeonly", "--version", "1"]);
    let signed = statement(&bundle);
    assert_eq!(signed["predicateType"], "https://imgsign.dev/file-manifest/v2");
    let libc = entry(&signed, "/lib/libc.so.6");
    assert_eq!((libc["mode"].as_str(), libc["code"].as_str()), (Some("0644"), Some("elf")), "{libc}");
    assert!(entry(&signed, "/etc/data").get("code").is_none());
    assert!(entry(&signed, "/bin/plain").get("code").is_none());
    let nomarks = without_marks(&bundle, &Path::new(WORK).join("nomarks.json"));

    let code = cgroup("code");
    let bare = cgroup("nomarks");
    let scopes = format!(
        "\n[[scope]]\nname = \"code\"\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{:?}]\n\
         \n[[scope]]\nname = \"nomarks\"\ncgroup = {:?}\nmode = \"enforce\"\nbundles = [{:?}]\n",
        code.0, bundle, bare.0, nomarks
    );
    let node = Node::start(Path::new(WORK), "node", &scopes);

    // A listed dynamically linked ELF runs: the loader and the 0644 libraries are mapped.
    let (rc, out) = code.run(&tree.join("bin/imgsign"), &["--version"]);
    assert_eq!(rc, Some(0), "{out}");
    assert!(out.contains("imgsign"), "{out}");
    assert!(node.verdicts("code", "denied").is_empty(), "{:?}", node.verdicts("code", "denied"));

    // A 0755 file without #! is loaded for its exec bit: exec finds no format, the shell runs it.
    let (rc, out) = code.run(&tree.join("bin/plain"), &[]);
    assert_eq!((rc, out.as_str()), (Some(0), "PLAIN-RAN\n"));

    // The exact bytes of the 0644 data file, copied with an exec bit: signed, never loaded.
    let copy = Path::new(WORK).join("data-x");
    write(&copy, DATA, 0o755);
    let (rc, out) = code.run(&copy, &[]);
    assert_eq!(rc, Some(126), "{out}");
    assert!(!out.contains("DATA-RAN"), "{out}");
    node.wait_for(|| !node.verdicts("code", "denied").is_empty(), "the denial of the data copy");
    let denied = &node.verdicts("code", "denied")[0];
    assert_eq!(denied["path"], copy.display().to_string(), "{denied}");
    assert_eq!(denied["sha256"], testdata::sha256_hex(DATA), "{denied}");

    // The same manifest without its marks: the libraries are not loaded, the program cannot map
    // them.
    let (rc, out) = bare.run(&tree.join("bin/imgsign"), &["--version"]);
    assert_ne!(rc, Some(0), "{out}");
    node.wait_for(|| !node.verdicts("nomarks", "denied").is_empty(), "a denial in the scope without marks");
    let denied = &node.verdicts("nomarks", "denied")[0];
    assert_eq!(denied["hook"], "mmap", "a library mapping is refused: {denied}");
}
