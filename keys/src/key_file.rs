//! Keys in files: reading public and private key files ([`PublicKey::load`], [`SigningKey::load`],
//! [`LockedKey`], which asks for a passphrase only when the key is encrypted) and writing a new key
//! pair ([`write_keypair`]: `PREFIX.key`, encrypted, mode 0600, and `PREFIX.pub`, mode 0644, never
//! over an existing file, each written whole through [`atomic_file`]). Every [`KeyFileError`] names
//! the file at fault and carries the key, passphrase or write error as its source.

use crate::key::{Kdf, KeyError, KeyId, PublicKey, SigningKey};
use crate::passphrase::{read_passphrase_with_prompt, PassphraseError, PassphraseSource};
use atomic_file::{write_new_file, AtomicFileError};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Errors from reading or writing key files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// A key file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A key file to be written already exists (even as a dangling symlink); it was left untouched.
    #[error("refusing to overwrite existing file {}", path.display())]
    Exists { path: PathBuf },
    /// The key held in this file is unusable: not a key, a wrong passphrase, ...
    #[error("cannot use key file {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// The private key to be written to this file could not be encrypted.
    #[error("cannot encrypt the private key for {}", path.display())]
    Encrypt {
        path: PathBuf,
        #[source]
        source: KeyError,
    },
    /// The passphrase of an encrypted key could not be read; the error names its source.
    #[error(transparent)]
    Passphrase(#[from] PassphraseError),
    /// Writing a key file failed; the error names the file.
    #[error(transparent)]
    Write(AtomicFileError),
}

impl From<AtomicFileError> for KeyFileError {
    /// One error for "already there", whether [`check_keypair_absent`] saw it or the atomic
    /// creation lost a race.
    fn from(err: AtomicFileError) -> Self {
        match err {
            AtomicFileError::Exists { path } => KeyFileError::Exists { path },
            err => KeyFileError::Write(err),
        }
    }
}

fn read_to_string(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| KeyFileError::Read { path: path.to_path_buf(), source })
}

fn in_file(path: &Path) -> impl FnOnce(KeyError) -> KeyFileError + '_ {
    move |source| KeyFileError::Key { path: path.to_path_buf(), source }
}

impl PublicKey {
    /// Reads an SPKI PEM file; errors name the file.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let pem = read_to_string(path)?;
        PublicKey::from_pem(&pem).map_err(in_file(path))
    }
}

impl SigningKey {
    /// Reads a private key file; errors name the file.
    pub fn load(path: &Path, passphrase: Option<&[u8]>) -> Result<Self, KeyFileError> {
        let pem = read_to_string(path)?;
        SigningKey::from_pem(&pem, passphrase).map_err(in_file(path))
    }

    /// Reads a private key file, asking `source` for the passphrase only if the key is encrypted.
    pub fn load_with_source(path: &Path, source: &PassphraseSource) -> Result<Self, KeyFileError> {
        LockedKey::read(path, source)?.unlock()
    }
}

/// A private key file read, with its passphrase if it needs one, but not decrypted yet: the
/// decryption (a deliberately slow KDF) can then run on another thread while other work goes on,
/// and any prompt has already happened on the caller's thread.
pub struct LockedKey {
    path: PathBuf,
    pem: Zeroizing<String>,
    passphrase: Option<Zeroizing<Vec<u8>>>,
}

impl LockedKey {
    /// Reads the key file and, only if it is encrypted, the passphrase from `source`.
    pub fn read(path: &Path, source: &PassphraseSource) -> Result<Self, KeyFileError> {
        let pem = read_to_string(path)?;
        let passphrase = if SigningKey::pem_is_encrypted(&pem) {
            let prompt = format!("Passphrase for {}: ", path.display());
            Some(read_passphrase_with_prompt(source, false, &prompt)?)
        } else {
            None
        };
        Ok(LockedKey { path: path.to_path_buf(), pem, passphrase })
    }

    /// Decrypts the key; errors name the file.
    pub fn unlock(&self) -> Result<SigningKey, KeyFileError> {
        SigningKey::from_pem(&self.pem, self.passphrase.as_ref().map(|p| p.as_slice())).map_err(in_file(&self.path))
    }
}

/// The files written by [`write_keypair`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyPairFiles {
    pub key_id: KeyId,
    /// `PREFIX.key`, mode 0600, encrypted PKCS#8 PEM.
    pub private_key: PathBuf,
    /// `PREFIX.pub`, mode 0644, SPKI PEM.
    pub public_key: PathBuf,
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The paths [`write_keypair`] writes for `prefix`: `(PREFIX.key, PREFIX.pub)`.
pub fn keypair_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    (with_suffix(prefix, ".key"), with_suffix(prefix, ".pub"))
}

/// Fails with [`KeyFileError::Exists`] if `PREFIX.key` or `PREFIX.pub` exists (even as a dangling
/// symlink). [`write_keypair`] checks this itself; call it to fail before asking for a passphrase.
pub fn check_keypair_absent(prefix: &Path) -> Result<(), KeyFileError> {
    let (private_key, public_key) = keypair_paths(prefix);
    for p in [private_key, public_key] {
        if fs::symlink_metadata(&p).is_ok() {
            return Err(KeyFileError::Exists { path: p });
        }
    }
    Ok(())
}

/// Writes `PREFIX.key` (encrypted with `passphrase` and `kdf`, mode 0600) and `PREFIX.pub` (mode
/// 0644). Neither may exist beforehand; both are checked before either is written, and if writing
/// the public key fails the private key just written is removed again.
pub fn write_keypair(
    prefix: &Path,
    key: &SigningKey,
    passphrase: &[u8],
    kdf: Kdf,
) -> Result<KeyPairFiles, KeyFileError> {
    let (private_key, public_key) = keypair_paths(prefix);
    check_keypair_absent(prefix)?;
    let pem = Zeroizing::new(
        key.to_encrypted_pem_with(passphrase, kdf)
            .map_err(|source| KeyFileError::Encrypt { path: private_key.clone(), source })?,
    );
    let public = key.public_key();
    write_new_file(&private_key, pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new_file(&public_key, public.to_pem().as_bytes(), 0o644) {
        let _ = fs::remove_file(&private_key);
        return Err(e.into());
    }
    Ok(KeyPairFiles { key_id: public.key_id(), private_key, public_key })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const PASS: &[u8] = b"correct horse battery staple";

    fn have_openssl() -> bool {
        Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false)
    }

    #[test]
    fn public_key_load_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pub");
        fs::write(&p, "not a key").unwrap();
        let err = PublicKey::load(&p).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        let missing = dir.path().join("missing.pub");
        let err = PublicKey::load(&missing).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn write_keypair_writes_both_and_refuses_existing() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k");
        let key = SigningKey::generate();
        let files = write_keypair(&prefix, &key, PASS, Kdf::INSECURE_FOR_TESTS).unwrap();
        assert_eq!(files.key_id, key.public_key().key_id());
        assert_eq!(PublicKey::load(&files.public_key).unwrap(), key.public_key());
        assert_eq!(SigningKey::load(&files.private_key, Some(PASS)).unwrap().public_key(), key.public_key());
        let before = fs::read(&files.private_key).unwrap();
        let err = write_keypair(&prefix, &SigningKey::generate(), PASS, Kdf::INSECURE_FOR_TESTS).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err:?}");
        assert_eq!(fs::read(&files.private_key).unwrap(), before);

        // Only the .pub exists: nothing is written at all.
        let prefix2 = dir.path().join("j");
        fs::write(dir.path().join("j.pub"), "x").unwrap();
        assert!(write_keypair(&prefix2, &key, PASS, Kdf::INSECURE_FOR_TESTS).is_err());
        assert!(!dir.path().join("j.key").exists());
    }

    #[test]
    fn a_dangling_symlink_counts_as_an_existing_key_file() {
        // A link planted at PREFIX.key must stop keygen before it asks for a passphrase, and must
        // never lead to a key written where it points.
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k");
        let elsewhere = dir.path().join("elsewhere.key");
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("k.key")).unwrap();
        let err = check_keypair_absent(&prefix).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { ref path } if path.ends_with("k.key")), "{err:?}");
        let err = write_keypair(&prefix, &SigningKey::generate(), PASS, Kdf::INSECURE_FOR_TESTS).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err:?}");
        assert!(!elsewhere.exists());
        assert!(!dir.path().join("k.pub").exists());
    }

    #[test]
    fn encrypting_with_an_empty_passphrase_names_the_key_file_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            write_keypair(&dir.path().join("k"), &SigningKey::generate(), b"", Kdf::INSECURE_FOR_TESTS).unwrap_err();
        assert!(matches!(err, KeyFileError::Encrypt { source: KeyError::EmptyPassphrase, .. }), "{err:?}");
        assert!(err.to_string().contains("k.key"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn load_with_source_asks_only_for_encrypted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let plain = dir.path().join("plain.key");
        fs::write(&plain, key.to_unencrypted_pem().unwrap().as_bytes()).unwrap();
        let unset = PassphraseSource::Env("IMGSIGN_KEYS_TEST_NEVER_SET".into());
        // The (unusable) source is not consulted for an unencrypted key.
        assert_eq!(SigningKey::load_with_source(&plain, &unset).unwrap().public_key(), key.public_key());

        let files = write_keypair(&dir.path().join("enc"), &key, PASS, Kdf::INSECURE_FOR_TESTS).unwrap();
        let err = SigningKey::load_with_source(&files.private_key, &unset).unwrap_err();
        assert!(matches!(err, KeyFileError::Passphrase(PassphraseError::EnvUnset { .. })), "{err:?}");
        let pass_file = dir.path().join("pass");
        fs::write(&pass_file, [PASS, b"\n"].concat()).unwrap();
        let source = PassphraseSource::File(pass_file.clone());
        assert_eq!(SigningKey::load_with_source(&files.private_key, &source).unwrap().public_key(), key.public_key());
        fs::write(&pass_file, b"wrong\n").unwrap();
        let err = SigningKey::load_with_source(&files.private_key, &source).unwrap_err();
        assert!(err.to_string().contains(&files.private_key.display().to_string()), "{err}");
    }

    #[test]
    fn openssl_reads_encrypted_key_and_public_key() {
        // scripts/test.sh installs openssl: a missing CLI is a failed test, never a silent skip.
        assert!(have_openssl(), "the openssl CLI is needed for this interop test (apt-get install openssl)");
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        for (name, kdf) in [("scrypt", Kdf::default()), ("pbkdf2", Kdf::Pbkdf2Sha256 { iterations: 10_000 })] {
            let files = write_keypair(&dir.path().join(name), &key, PASS, kdf).unwrap();
            let out = Command::new("openssl")
                .args(["pkey", "-in"])
                .arg(&files.private_key)
                .args(["-passin", "pass:correct horse battery staple", "-pubout"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8(out.stdout).unwrap(), key.public_key().to_pem(), "{name}");
            let out = Command::new("openssl")
                .args(["pkey", "-in"])
                .arg(&files.private_key)
                .args(["-passin", "pass:wrong", "-noout"])
                .output()
                .unwrap();
            assert!(!out.status.success(), "{name}: openssl accepted a wrong passphrase");
            let out = Command::new("openssl")
                .args(["pkey", "-pubin", "-in"])
                .arg(&files.public_key)
                .args(["-text", "-noout"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(text.contains("ED25519 Public-Key"), "{text}");
        }
    }

    #[test]
    fn reads_openssl_generated_keys() {
        // scripts/test.sh installs openssl: a missing CLI is a failed test, never a silent skip.
        assert!(have_openssl(), "the openssl CLI is needed for this interop test (apt-get install openssl)");
        let dir = tempfile::tempdir().unwrap();
        let enc = dir.path().join("enc.pem");
        let out = Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-aes-256-cbc", "-pass", "pass:open sesame", "-out"])
            .arg(&enc)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = SigningKey::load(&enc, Some(b"open sesame")).unwrap();
        let err = SigningKey::load(&enc, Some(b"nope")).unwrap_err();
        assert!(err.to_string().contains("enc.pem"), "{err}");
        assert!(matches!(err, KeyFileError::Key { source: KeyError::WrongPassphrase { .. }, .. }), "{err:?}");
        let pubfile = dir.path().join("enc.pub");
        let out = Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(&enc)
            .args(["-passin", "pass:open sesame", "-pubout", "-out"])
            .arg(&pubfile)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public = PublicKey::load(&pubfile).unwrap();
        assert_eq!(public, key.public_key());
        // The key id matches a digest computed by openssl over the DER.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl pkey -pubin -in '{}' -outform DER | openssl dgst -sha256 -r", pubfile.display()))
            .output()
            .unwrap();
        assert!(out.status.success());
        let digest = String::from_utf8(out.stdout).unwrap();
        assert_eq!(digest.split_whitespace().next().unwrap(), public.key_id().as_str());
    }
}
