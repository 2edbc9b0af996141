//! `imgsign keygen` and `imgsign trust ...`, run as the built binary.

use keys::{KeyId, PublicKey, SigningKey, TrustStore};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const PASS: &str = "test passphrase, not secret";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let p = std::env::temp_dir().join(format!(
            "imgsign-keygen-trust-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The binary with a clean environment for passphrases and no terminal on stdin.
fn imgsign() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imgsign"));
    c.env_remove("IMGSIGN_PASSPHRASE").env("IMGSIGN_TEST_PASS", PASS).stdin(Stdio::null());
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run imgsign")
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Exit 2 (usage or input error); returns stderr.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2\nstdout: {}\nstderr: {stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, KeyId) {
    let prefix = dir.join(name);
    let stdout = ok(imgsign().args(["keygen", "--passphrase-env", "IMGSIGN_TEST_PASS", "--out"]).arg(&prefix));
    let id: KeyId = stdout.trim().parse().expect("keygen prints the key id");
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")), id)
}

#[test]
fn keygen_writes_encrypted_key_mode_0600_and_public_key_0644() {
    let tmp = TempDir::new();
    let (key, public, id) = keygen(tmp.path(), "signer");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&public), 0o644);
    let pem = fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{pem}");
    let signing = SigningKey::load(&key, Some(PASS.as_bytes())).unwrap();
    assert!(SigningKey::load(&key, Some(b"wrong")).is_err());
    let public = PublicKey::load(&public).unwrap();
    assert_eq!(signing.public_key(), public);
    assert_eq!(public.key_id(), id);
}

#[test]
fn keygen_json_output() {
    let tmp = TempDir::new();
    let prefix = tmp.path().join("k");
    let stdout =
        ok(imgsign().args(["keygen", "--json", "--passphrase-env", "IMGSIGN_TEST_PASS", "--out"]).arg(&prefix));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let public = PublicKey::load(&tmp.path().join("k.pub")).unwrap();
    assert_eq!(v["key_id"], public.key_id().to_string());
    assert_eq!(v["private_key"], tmp.path().join("k.key").display().to_string());
    assert_eq!(v["public_key"], tmp.path().join("k.pub").display().to_string());
}

#[test]
fn keygen_refuses_to_overwrite_either_file() {
    let tmp = TempDir::new();
    let (key, _public, _) = keygen(tmp.path(), "a");
    let before = fs::read(&key).unwrap();
    let err =
        fails(imgsign().args(["keygen", "--passphrase-env", "IMGSIGN_TEST_PASS", "--out"]).arg(tmp.path().join("a")));
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert_eq!(fs::read(&key).unwrap(), before, "existing key untouched");

    // Only PREFIX.pub exists: nothing is written, and the .pub is untouched.
    let lone_pub = tmp.path().join("b.pub");
    fs::write(&lone_pub, "keep me").unwrap();
    let err =
        fails(imgsign().args(["keygen", "--passphrase-env", "IMGSIGN_TEST_PASS", "--out"]).arg(tmp.path().join("b")));
    assert!(err.contains(&lone_pub.display().to_string()), "{err}");
    assert!(!tmp.path().join("b.key").exists());
    assert_eq!(fs::read_to_string(&lone_pub).unwrap(), "keep me");
    let mut names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["a.key", "a.pub", "b.pub"], "no temporary files left");
}

#[test]
fn keygen_refuses_without_passphrase_source_and_no_tty() {
    let tmp = TempDir::new();
    let err = fails(imgsign().args(["keygen", "--out"]).arg(tmp.path().join("k")));
    assert!(err.contains("passphrase"), "{err}");
    assert!(fs::read_dir(tmp.path()).unwrap().next().is_none(), "nothing written");
}

#[test]
fn keygen_passphrase_sources() {
    let tmp = TempDir::new();
    // $IMGSIGN_PASSPHRASE is the default source.
    let prefix = tmp.path().join("env");
    ok(imgsign().env("IMGSIGN_PASSPHRASE", "from default env").args(["keygen", "--out"]).arg(&prefix));
    assert!(SigningKey::load(&tmp.path().join("env.key"), Some(b"from default env")).is_ok());

    // A file's one trailing newline is dropped.
    let pass_file = tmp.path().join("pass.txt");
    fs::write(&pass_file, "from file\n").unwrap();
    ok(imgsign().args(["keygen", "--passphrase-file"]).arg(&pass_file).arg("--out").arg(tmp.path().join("file")));
    assert!(SigningKey::load(&tmp.path().join("file.key"), Some(b"from file")).is_ok());

    // An unset variable is named.
    let err = fails(
        imgsign().args(["keygen", "--passphrase-env", "IMGSIGN_TEST_UNSET_VAR", "--out"]).arg(tmp.path().join("u")),
    );
    assert!(err.contains("IMGSIGN_TEST_UNSET_VAR"), "{err}");
    // Empty passphrases are refused.
    let err = fails(
        imgsign()
            .env("EMPTY_PASS", "")
            .args(["keygen", "--passphrase-env", "EMPTY_PASS", "--out"])
            .arg(tmp.path().join("e")),
    );
    assert!(err.contains("empty"), "{err}");
    // A missing passphrase file is named.
    let missing = tmp.path().join("missing.txt");
    let err =
        fails(imgsign().args(["keygen", "--passphrase-file"]).arg(&missing).arg("--out").arg(tmp.path().join("m")));
    assert!(err.contains(&missing.display().to_string()), "{err}");
    // Two sources conflict (clap usage error).
    fails(
        imgsign()
            .args(["keygen", "--passphrase-env", "X", "--passphrase-file"])
            .arg(&pass_file)
            .arg("--out")
            .arg(tmp.path().join("c")),
    );
    for name in ["u", "e", "m", "c"] {
        assert!(!tmp.path().join(format!("{name}.key")).exists(), "{name}.key written after an error");
    }
}

#[test]
fn trust_init_add_revoke_threshold_show() {
    let tmp = TempDir::new();
    let (_, pub_a, id_a) = keygen(tmp.path(), "a");
    let (_, pub_b, id_b) = keygen(tmp.path(), "b");
    let store = tmp.path().join("trust");

    ok(imgsign().args(["trust", "init"]).arg(&store).args(["--threshold", "1"]));
    fails(imgsign().args(["trust", "init"]).arg(&store));

    let out = ok(imgsign().args(["trust", "add"]).arg(&store).arg(&pub_a).arg(&pub_b));
    assert!(out.contains(&id_a.to_string()) && out.contains(&id_b.to_string()), "{out}");
    assert!(store.join("keys").join(format!("{id_a}.pub")).is_file());
    let out = ok(imgsign().args(["trust", "add"]).arg(&store).arg(&pub_a));
    assert!(out.contains("already trusted"), "{out}");

    ok(imgsign().args(["trust", "threshold"]).arg(&store).arg("2"));
    fails(imgsign().args(["trust", "threshold"]).arg(&store).arg("0"));

    // Revoke by public key file, then show.
    ok(imgsign().args(["trust", "revoke"]).arg(&store).arg(&pub_a));
    let json = ok(imgsign().args(["trust", "show", "--json"]).arg(&store));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["threshold"], 2);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        let revoked = k["key_id"] == id_a.to_string();
        assert_eq!(k["revoked"], revoked, "{k}");
    }
    assert_eq!(v["revoked"], serde_json::json!([id_a.to_string()]));

    // Revoke by key id; a text show marks it.
    ok(imgsign().args(["trust", "revoke"]).arg(&store).arg(id_b.to_string()));
    let text = ok(imgsign().args(["trust", "show"]).arg(&store));
    assert_eq!(text.matches("REVOKED").count(), 2, "{text}");

    // The library sees the same store.
    let opened = TrustStore::open(&store).unwrap();
    assert_eq!(opened.threshold(), 2);
    assert!(opened.is_revoked(&id_a) && opened.is_revoked(&id_b));
    assert!(opened.active_keys().is_empty());

    // A revoked key cannot be added back.
    let err = fails(imgsign().args(["trust", "add"]).arg(&store).arg(&pub_a));
    assert!(err.contains("revoked"), "{err}");
    // Neither a key id nor a file.
    fails(imgsign().args(["trust", "revoke"]).arg(&store).arg("not-a-key"));
}

#[test]
fn trust_add_bad_key_file_is_named_and_adds_nothing() {
    let tmp = TempDir::new();
    let (_, good, _) = keygen(tmp.path(), "good");
    let bad = tmp.path().join("bad.pub");
    fs::write(&bad, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").unwrap();
    let store = tmp.path().join("trust");
    ok(imgsign().args(["trust", "init"]).arg(&store));
    let err = fails(imgsign().args(["trust", "add"]).arg(&store).arg(&good).arg(&bad));
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert_eq!(fs::read_dir(store.join("keys")).unwrap().count(), 0, "nothing added");

    // A malformed file placed in keys/ by hand is named when the store is opened.
    let planted = store.join("keys").join("planted.pem");
    fs::write(&planted, "garbage").unwrap();
    let err = fails(imgsign().args(["trust", "show"]).arg(&store));
    assert!(err.contains(&planted.display().to_string()), "{err}");
}

#[test]
fn trust_commands_on_a_missing_store_fail() {
    let tmp = TempDir::new();
    let err = fails(imgsign().args(["trust", "show"]).arg(tmp.path().join("nope")));
    assert!(err.contains("nope"), "{err}");
    let err = fails(imgsign().args(["trust", "show"]).arg(tmp.path()));
    assert!(err.contains("not a trust store"), "{err}");
}
