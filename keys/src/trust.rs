//! The trust store: a directory that says which public keys may sign, which are revoked, how many
//! distinct keys must sign, and the highest manifest version seen per image name (so an old
//! manifest cannot be replayed).
//!
//! Layout of a trust store directory `DIR`:
//!
//! ```text
//! DIR/keys/<keyid>.pub   trusted Ed25519 public keys, SPKI "PUBLIC KEY" PEM. Every *.pub and *.pem
//!                        file here is loaded (dot files are ignored); a file that does not parse is
//!                        an error naming it, and a file named after a key id must hold that key.
//! DIR/revoked            revoked key ids, one per line; '#' starts a comment. Optional.
//! DIR/policy.json        {"threshold": N}, N >= 1 distinct non-revoked keys must sign. Optional
//!                        (threshold 1).
//! DIR/state.json         {"versions": {"<image name>": <u64>}}: rollback state, only ever raised,
//!                        replaced atomically. Optional (no versions seen).
//! DIR/.lock              advisory lock taken while any of the above is rewritten.
//! ```
//!
//! [`TrustStore::trusted_keys`] returns every loaded key, revoked ones included; callers check
//! [`TrustStore::is_revoked`] (or use [`TrustStore::active_keys`]). Key ids are the SHA-256 of the
//! key's SPKI DER ([`KeyId`]). Writes go through a temporary file and a rename (or a hard link for
//! new key files), under the lock, re-reading the file first so concurrent writers do not lose
//! each other's updates. Errors are [`TrustError`]s and name the file at fault.

use crate::key::{KeyError, KeyId, PublicKey};
use atomic_file::{replace_file, write_new_file, AtomicFileError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Errors from reading or changing a trust store. Messages name the file at fault; the underlying
/// cause (I/O, a key that does not parse, JSON) is in the `#[source]` chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A file or directory of the store could not be read, listed, created or locked.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The directory has no `keys/` subdirectory.
    #[error("{} is not a trust store (no keys/ directory); create one with `imgsign trust init`", path.display())]
    NotATrustStore { path: PathBuf },
    /// `init` found a store (or part of one) already there.
    #[error("{} already holds a trust store", path.display())]
    AlreadyInitialized { path: PathBuf },
    /// A file in `keys/` (or one being added) does not hold an Ed25519 public key.
    #[error("invalid trusted key file {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// A file in `keys/` is named for one key id and holds another key.
    #[error("trusted key file {} is named for key id {named} but holds key {actual}", path.display())]
    KeyIdMismatch { path: PathBuf, named: String, actual: KeyId },
    /// A line of `revoked` is not a key id.
    #[error("{}:{line}: not a key id", path.display())]
    RevokedLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: KeyError,
    },
    /// `policy.json` is not valid JSON of the expected shape.
    #[error("invalid policy file {}", path.display())]
    Policy {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `policy.json` asks for a threshold of 0.
    #[error("invalid policy file {}: threshold must be at least 1", path.display())]
    PolicyThreshold { path: PathBuf },
    /// `state.json` is not valid JSON of the expected shape.
    #[error("invalid rollback state file {}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A threshold of 0 was asked for.
    #[error("threshold must be at least 1 (got {0})")]
    InvalidThreshold(usize),
    /// A version was recorded for an empty image name.
    #[error("image name must not be empty")]
    EmptyImageName,
    /// A version lower than the one recorded was offered: a replayed older manifest.
    #[error("refusing to lower the recorded version of {image:?} from {recorded} to {attempted} (rollback)")]
    Rollback { image: String, recorded: u64, attempted: u64 },
    /// The key to be trusted is listed in `revoked`.
    #[error("key {id} is revoked in {}; remove it from there first", path.display())]
    KeyRevoked { id: KeyId, path: PathBuf },
    /// Writing a file of the store failed; the error names the file.
    #[error(transparent)]
    Write(#[from] AtomicFileError),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TrustError {
    let path = path.to_path_buf();
    move |source| TrustError::Io { action, path, source }
}

/// Reads a file that may be absent.
fn read_optional(path: &Path) -> Result<Option<String>, TrustError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot read", path)(e)),
    }
}

fn default_threshold() -> usize {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Policy {
    #[serde(default = "default_threshold")]
    threshold: usize,
    /// Fields this version does not know, kept when the file is rewritten.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { threshold: 1, extra: Default::default() }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    versions: BTreeMap<String, u64>,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

fn read_policy(path: &Path) -> Result<Policy, TrustError> {
    let Some(text) = read_optional(path)? else { return Ok(Policy::default()) };
    let policy: Policy =
        serde_json::from_str(&text).map_err(|source| TrustError::Policy { path: path.to_path_buf(), source })?;
    if policy.threshold == 0 {
        return Err(TrustError::PolicyThreshold { path: path.to_path_buf() });
    }
    Ok(policy)
}

fn read_state(path: &Path) -> Result<State, TrustError> {
    let Some(text) = read_optional(path)? else { return Ok(State::default()) };
    serde_json::from_str(&text).map_err(|source| TrustError::State { path: path.to_path_buf(), source })
}

fn parse_revoked(path: &Path, text: &str) -> Result<BTreeSet<KeyId>, TrustError> {
    let mut ids = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let id = content.parse::<KeyId>().map_err(|source| TrustError::RevokedLine {
            path: path.to_path_buf(),
            line: i + 1,
            source,
        })?;
        ids.insert(id);
    }
    Ok(ids)
}

fn read_revoked(path: &Path) -> Result<(String, BTreeSet<KeyId>), TrustError> {
    let text = read_optional(path)?.unwrap_or_default();
    let ids = parse_revoked(path, &text)?;
    Ok((text, ids))
}

fn to_json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("serializing plain data cannot fail");
    out.push(b'\n');
    out
}

/// Holds the trust store's advisory lock until dropped.
struct Lock(#[allow(dead_code)] File);

/// A trust store directory, loaded into memory. See the [module documentation](self) for the
/// layout.
#[derive(Debug)]
pub struct TrustStore {
    dir: PathBuf,
    keys: Vec<PublicKey>,
    key_files: Vec<PathBuf>,
    revoked: BTreeSet<KeyId>,
    policy: Policy,
    state: State,
}

impl TrustStore {
    /// Loads the trust store in `dir`. `dir/keys/` must exist; the other files are optional.
    pub fn open(dir: &Path) -> Result<Self, TrustError> {
        let keys_dir = dir.join("keys");
        match fs::metadata(&keys_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(TrustError::NotATrustStore { path: dir.to_path_buf() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Err(e) = fs::metadata(dir) {
                    return Err(io_err("cannot open trust store", dir)(e));
                }
                return Err(TrustError::NotATrustStore { path: dir.to_path_buf() });
            }
            Err(e) => return Err(io_err("cannot open", &keys_dir)(e)),
        }

        let mut names = Vec::new();
        for entry in fs::read_dir(&keys_dir).map_err(io_err("cannot list", &keys_dir))? {
            let entry = entry.map_err(io_err("cannot list", &keys_dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !(name.ends_with(".pub") || name.ends_with(".pem")) {
                continue;
            }
            names.push(name.to_string());
        }
        names.sort();

        let mut keys = Vec::new();
        let mut key_files = Vec::new();
        let mut seen = BTreeSet::new();
        for name in names {
            let path = keys_dir.join(&name);
            if !fs::metadata(&path).map_err(io_err("cannot read", &path))?.is_file() {
                continue;
            }
            let pem = fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
            let key = PublicKey::from_pem(&pem).map_err(|source| TrustError::Key { path: path.clone(), source })?;
            let id = key.key_id();
            let stem = &name[..name.len() - 4];
            if stem.parse::<KeyId>().is_ok() && !stem.eq_ignore_ascii_case(id.as_str()) {
                return Err(TrustError::KeyIdMismatch { path, named: stem.to_string(), actual: id });
            }
            // The same key in two files counts once.
            if seen.insert(id) {
                keys.push(key);
                key_files.push(path);
            }
        }

        let (_, revoked) = read_revoked(&dir.join("revoked"))?;
        let policy = read_policy(&dir.join("policy.json"))?;
        let state = read_state(&dir.join("state.json"))?;
        Ok(TrustStore { dir: dir.to_path_buf(), keys, key_files, revoked, policy, state })
    }

    /// Creates a trust store in `dir` (created if missing) with no keys and the given threshold.
    /// Fails if `dir` already holds one (a `keys/` directory or a `policy.json`).
    pub fn init(dir: &Path, threshold: usize) -> Result<Self, TrustError> {
        if threshold == 0 {
            return Err(TrustError::InvalidThreshold(threshold));
        }
        fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        let keys_dir = dir.join("keys");
        let policy_path = dir.join("policy.json");
        if fs::symlink_metadata(&keys_dir).is_ok() || fs::symlink_metadata(&policy_path).is_ok() {
            return Err(TrustError::AlreadyInitialized { path: dir.to_path_buf() });
        }
        let policy = Policy { threshold, extra: Default::default() };
        write_new_file(&policy_path, &to_json_bytes(&policy), 0o644)?;
        let revoked_path = dir.join("revoked");
        if fs::symlink_metadata(&revoked_path).is_err() {
            write_new_file(&revoked_path, b"# Revoked key ids (SHA-256 of the SPKI DER), one per line.\n", 0o644)?;
        }
        let state_path = dir.join("state.json");
        if fs::symlink_metadata(&state_path).is_err() {
            write_new_file(&state_path, &to_json_bytes(&State::default()), 0o644)?;
        }
        // keys/ last: its presence is what makes the directory a trust store.
        fs::create_dir(&keys_dir).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => TrustError::AlreadyInitialized { path: dir.to_path_buf() },
            _ => io_err("cannot create", &keys_dir)(e),
        })?;
        TrustStore::open(dir)
    }

    /// The trust store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every trusted key, revoked ones included (see [`TrustStore::is_revoked`]), each once, in
    /// file name order.
    pub fn trusted_keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The trusted keys that are not revoked.
    pub fn active_keys(&self) -> Vec<&PublicKey> {
        self.keys.iter().filter(|k| !self.revoked.contains(&k.key_id())).collect()
    }

    /// The trusted keys with the file each was loaded from.
    pub fn key_files(&self) -> impl Iterator<Item = (&PublicKey, &Path)> {
        self.keys.iter().zip(self.key_files.iter().map(PathBuf::as_path))
    }

    /// The trusted key with this id, if any (revoked or not).
    pub fn find(&self, id: &KeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|k| &k.key_id() == id)
    }

    pub fn is_revoked(&self, id: &KeyId) -> bool {
        self.revoked.contains(id)
    }

    /// Every revoked id listed, whether or not its key is in `keys/`.
    pub fn revoked_ids(&self) -> impl Iterator<Item = &KeyId> {
        self.revoked.iter()
    }

    /// How many distinct, trusted, non-revoked keys must sign; at least 1.
    pub fn threshold(&self) -> usize {
        self.policy.threshold
    }

    /// The highest manifest version recorded for `image_name`.
    pub fn highest_version(&self, image_name: &str) -> Option<u64> {
        self.state.versions.get(image_name).copied()
    }

    /// Every recorded image name and its highest version.
    pub fn versions(&self) -> &BTreeMap<String, u64> {
        &self.state.versions
    }

    fn lock(&self) -> Result<Lock, TrustError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("cannot open lock file", &path))?;
        file.lock().map_err(io_err("cannot lock", &path))?;
        Ok(Lock(file))
    }

    /// Records that `version` of `image_name` was accepted. The recorded version only rises: an
    /// equal version is a no-op and a lower one is [`TrustError::Rollback`]. The state file is
    /// re-read under the lock (keeping the higher of each version) and replaced atomically.
    pub fn record_version(&mut self, image_name: &str, version: u64) -> Result<(), TrustError> {
        if image_name.is_empty() {
            return Err(TrustError::EmptyImageName);
        }
        let _lock = self.lock()?;
        let path = self.dir.join("state.json");
        let mut state = read_state(&path)?;
        for (name, &v) in &self.state.versions {
            let e = state.versions.entry(name.clone()).or_insert(v);
            *e = (*e).max(v);
        }
        let recorded = state.versions.get(image_name).copied();
        let result = match recorded {
            Some(r) if version < r => {
                Err(TrustError::Rollback { image: image_name.to_string(), recorded: r, attempted: version })
            }
            Some(r) if version == r => Ok(()),
            _ => {
                state.versions.insert(image_name.to_string(), version);
                replace_file(&path, &to_json_bytes(&state), 0o644)?;
                Ok(())
            }
        };
        self.state = state;
        result
    }

    /// Trusts `key` by writing `keys/<keyid>.pub`; returns its id. Adding a key already trusted is
    /// a no-op; adding a revoked key is [`TrustError::KeyRevoked`].
    pub fn add_key(&mut self, key: &PublicKey) -> Result<KeyId, TrustError> {
        let id = key.key_id();
        let revoked_path = self.dir.join("revoked");
        let (_, revoked) = read_revoked(&revoked_path)?;
        self.revoked.extend(revoked);
        if self.revoked.contains(&id) {
            return Err(TrustError::KeyRevoked { id, path: revoked_path });
        }
        if self.find(&id).is_some() {
            return Ok(id);
        }
        let path = self.dir.join("keys").join(format!("{id}.pub"));
        match write_new_file(&path, key.to_pem().as_bytes(), 0o644) {
            Ok(()) => {}
            // Another writer got there first; fine if it holds the same key.
            Err(AtomicFileError::Exists { .. }) => {
                let pem = fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
                let existing =
                    PublicKey::from_pem(&pem).map_err(|source| TrustError::Key { path: path.clone(), source })?;
                if existing != *key {
                    return Err(TrustError::KeyIdMismatch { path, named: id.to_string(), actual: existing.key_id() });
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.keys.push(key.clone());
        self.key_files.push(path);
        Ok(id)
    }

    /// Adds `id` to `revoked` (it need not be a key in this store). Revoking twice is a no-op.
    pub fn revoke(&mut self, id: &KeyId) -> Result<(), TrustError> {
        let _lock = self.lock()?;
        let path = self.dir.join("revoked");
        let (mut text, ids) = read_revoked(&path)?;
        self.revoked.extend(ids.iter().cloned());
        if !ids.contains(id) {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(id.as_str());
            text.push('\n');
            replace_file(&path, text.as_bytes(), 0o644)?;
        }
        self.revoked.insert(id.clone());
        Ok(())
    }

    /// Sets how many distinct non-revoked keys must sign (at least 1), rewriting `policy.json`.
    pub fn set_threshold(&mut self, n: usize) -> Result<(), TrustError> {
        if n == 0 {
            return Err(TrustError::InvalidThreshold(n));
        }
        let _lock = self.lock()?;
        let path = self.dir.join("policy.json");
        let mut policy = read_policy(&path)?;
        policy.threshold = n;
        replace_file(&path, &to_json_bytes(&policy), 0o644)?;
        self.policy = policy;
        Ok(())
    }
}

/// The SHA-256 of every file below a trust store directory (relative names, lengths and
/// contents, in name order): what a cached verdict depends on, so that a key added or revoked,
/// a threshold or a recorded version changed makes every such cache miss.
pub fn files_digest(dir: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest as _;
    fn walk(dir: &Path, rel: &Path, hasher: &mut sha2::Sha256) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), &name, hasher)?;
            } else if kind.is_file() {
                let content = std::fs::read(entry.path())?;
                hasher.update(format!("{}\0{}\0", name.display(), content.len()).as_bytes());
                hasher.update(&content);
            }
        }
        Ok(())
    }
    let mut hasher = sha2::Sha256::new();
    walk(dir, Path::new(""), &mut hasher)?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SigningKey;

    fn new_store() -> (tempfile::TempDir, TrustStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = TrustStore::init(&tmp.path().join("trust"), 1).unwrap();
        (tmp, store)
    }

    #[test]
    fn init_then_open_is_empty_with_threshold() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        let store = TrustStore::init(&dir, 2).unwrap();
        assert_eq!(store.threshold(), 2);
        assert!(store.trusted_keys().is_empty());
        assert!(dir.join("keys").is_dir());
        let store = TrustStore::open(&dir).unwrap();
        assert_eq!(store.threshold(), 2);
        assert_eq!(store.highest_version("x"), None);
        let err = TrustStore::init(&dir, 1).unwrap_err();
        assert!(matches!(err, TrustError::AlreadyInitialized { .. }), "{err:?}");
        assert!(matches!(TrustStore::init(&tmp.path().join("u"), 0), Err(TrustError::InvalidThreshold(0))));
    }

    #[test]
    fn open_missing_or_non_store_dir_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let err = TrustStore::open(&tmp.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = TrustStore::open(tmp.path()).unwrap_err();
        assert!(matches!(err, TrustError::NotATrustStore { .. }), "{err:?}");
    }

    #[test]
    fn minimal_store_has_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("keys")).unwrap();
        let store = TrustStore::open(tmp.path()).unwrap();
        assert_eq!(store.threshold(), 1);
        assert!(store.revoked_ids().next().is_none());
        assert!(store.versions().is_empty());
    }

    #[test]
    fn add_keys_and_reopen() {
        let (_tmp, mut store) = new_store();
        let a = SigningKey::generate().public_key();
        let b = SigningKey::generate().public_key();
        let ida = store.add_key(&a).unwrap();
        assert_eq!(ida, a.key_id());
        assert_eq!(store.add_key(&a).unwrap(), ida, "adding twice is a no-op");
        store.add_key(&b).unwrap();
        assert!(store.dir().join("keys").join(format!("{ida}.pub")).is_file());
        // A hand-placed *.pem copy of a key counts once.
        fs::write(store.dir().join("keys").join("copy-of-a.pem"), a.to_pem()).unwrap();
        // Files with other extensions are ignored.
        fs::write(store.dir().join("keys").join("README"), "not a key").unwrap();
        let store = TrustStore::open(store.dir()).unwrap();
        assert_eq!(store.trusted_keys().len(), 2);
        assert!(store.find(&ida).is_some());
        assert!(store.trusted_keys().contains(&b));
    }

    #[test]
    fn malformed_key_file_is_named() {
        let (_tmp, store) = new_store();
        let bad = store.dir().join("keys").join("broken.pub");
        fs::write(&bad, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(matches!(err, TrustError::Key { .. }), "{err:?}");
        assert!(err.to_string().contains(&bad.display().to_string()), "{err}");
    }

    #[test]
    fn key_file_named_for_another_id_is_rejected() {
        let (_tmp, store) = new_store();
        let a = SigningKey::generate().public_key();
        let b = SigningKey::generate().public_key();
        let path = store.dir().join("keys").join(format!("{}.pub", a.key_id()));
        fs::write(&path, b.to_pem()).unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(matches!(err, TrustError::KeyIdMismatch { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn revoked_list_with_comments() {
        let (_tmp, mut store) = new_store();
        let a = SigningKey::generate().public_key();
        let b = SigningKey::generate().public_key();
        store.add_key(&a).unwrap();
        store.add_key(&b).unwrap();
        store.revoke(&a.key_id()).unwrap();
        store.revoke(&a.key_id()).unwrap();
        assert!(store.is_revoked(&a.key_id()));
        assert!(!store.is_revoked(&b.key_id()));
        assert_eq!(store.active_keys(), vec![&b]);
        assert_eq!(store.trusted_keys().len(), 2, "trusted_keys includes revoked keys");

        // Hand edits: comments, blank lines, trailing comments, upper case.
        let revoked = store.dir().join("revoked");
        let text = fs::read_to_string(&revoked).unwrap();
        assert_eq!(text.matches(a.key_id().as_str()).count(), 1, "revoking twice writes once: {text}");
        let extra = SigningKey::generate().public_key().key_id();
        fs::write(&revoked, format!("{text}\n# retired\n  {}  # laptop stolen\n", extra.as_str().to_uppercase()))
            .unwrap();
        let mut store = TrustStore::open(store.dir()).unwrap();
        assert!(store.is_revoked(&a.key_id()));
        assert!(store.is_revoked(&extra));
        assert_eq!(store.revoked_ids().count(), 2);
        // A revoked key cannot be added back.
        let c = SigningKey::generate().public_key();
        store.revoke(&c.key_id()).unwrap();
        assert!(matches!(store.add_key(&c), Err(TrustError::KeyRevoked { .. })));
        assert!(fs::read_to_string(&revoked).unwrap().contains("# retired"), "comments are kept");

        fs::write(&revoked, "# ok\nnot-a-key-id\n").unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(matches!(err, TrustError::RevokedLine { line: 2, .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("{}:2", revoked.display())), "{err}");
    }

    #[test]
    fn threshold_set_and_validated() {
        let (_tmp, mut store) = new_store();
        store.set_threshold(3).unwrap();
        assert_eq!(store.threshold(), 3);
        assert!(matches!(store.set_threshold(0), Err(TrustError::InvalidThreshold(0))));
        let store = TrustStore::open(store.dir()).unwrap();
        assert_eq!(store.threshold(), 3);

        let policy = store.dir().join("policy.json");
        // Unknown fields survive a rewrite.
        fs::write(&policy, r#"{"threshold": 2, "future": true}"#).unwrap();
        let mut store = TrustStore::open(store.dir()).unwrap();
        store.set_threshold(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&policy).unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"threshold": 1, "future": true}));

        fs::write(&policy, r#"{"threshold": 0}"#).unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(matches!(err, TrustError::PolicyThreshold { .. }), "{err:?}");
        fs::write(&policy, "{not json").unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(err.to_string().contains(&policy.display().to_string()), "{err}");
        fs::remove_file(&policy).unwrap();
        assert_eq!(TrustStore::open(store.dir()).unwrap().threshold(), 1);
    }

    #[test]
    fn rollback_state_only_rises_and_survives_reopen() {
        let (_tmp, mut store) = new_store();
        store.record_version("registry.example/app", 5).unwrap();
        assert_eq!(store.highest_version("registry.example/app"), Some(5));
        store.record_version("registry.example/app", 5).unwrap();
        let err = store.record_version("registry.example/app", 4).unwrap_err();
        assert!(matches!(err, TrustError::Rollback { recorded: 5, attempted: 4, .. }), "{err:?}");
        assert_eq!(store.highest_version("registry.example/app"), Some(5));
        store.record_version("registry.example/app", 7).unwrap();
        store.record_version("other", 1).unwrap();
        assert!(matches!(store.record_version("", 1), Err(TrustError::EmptyImageName)));

        let mut reopened = TrustStore::open(store.dir()).unwrap();
        assert_eq!(reopened.highest_version("registry.example/app"), Some(7));
        assert_eq!(reopened.highest_version("other"), Some(1));
        assert_eq!(reopened.highest_version("unknown"), None);

        // Two handles: a stale one never lowers what the other recorded.
        reopened.record_version("registry.example/app", 9).unwrap();
        store.record_version("other", 2).unwrap();
        assert!(matches!(
            store.record_version("registry.example/app", 8),
            Err(TrustError::Rollback { recorded: 9, .. })
        ));
        let fresh = TrustStore::open(store.dir()).unwrap();
        assert_eq!(fresh.highest_version("registry.example/app"), Some(9));
        assert_eq!(fresh.highest_version("other"), Some(2));

        // No temporary files are left behind.
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");

        let state = store.dir().join("state.json");
        fs::write(&state, r#"{"versions": {"x": -1}}"#).unwrap();
        let err = TrustStore::open(store.dir()).unwrap_err();
        assert!(matches!(err, TrustError::State { .. }), "{err:?}");
        assert!(err.to_string().contains(&state.display().to_string()), "{err}");
    }
}
