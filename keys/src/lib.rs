//! Keys for imgsign: Ed25519 key pairs, PEM encodings (encrypted PKCS#8 for private keys, SPKI for
//! public keys), key ids, and the trust store that decides which keys count. Knows nothing about
//! images.
//!
//! Each module has its own error, and the modules depend on each other one way only
//! (`key_file` -> `key`, `passphrase`; `trust` -> `key`):
//! - [`key`] ([`KeyError`]): [`KeyId`], the lowercase hex SHA-256 of a public key's
//!   SubjectPublicKeyInfo DER (an id found in a signature is only a hint; the trust store matches
//!   keys by this digest); [`PublicKey`] / [`SigningKey`], Ed25519 keys in memory and their PEM
//!   encodings: public keys as SPKI `PUBLIC KEY`, private keys only as `ENCRYPTED PRIVATE KEY`
//!   PKCS#8 (PBES2, scrypt + AES-256-CBC by default), which OpenSSL reads. No I/O.
//! - [`passphrase`] ([`PassphraseError`]): [`PassphraseSource`] / [`read_passphrase`], where a
//!   passphrase comes from (environment variable, file, or a prompt on the terminal), never from a
//!   command-line argument value.
//! - [`key_file`] ([`KeyFileError`]): key files: [`PublicKey::load`], [`SigningKey::load`],
//!   [`LockedKey`] (read now, decrypt later), [`write_keypair`] / [`check_keypair_absent`].
//! - [`trust`] ([`TrustError`]): [`TrustStore`], the directory of trusted keys, revoked ids,
//!   signature threshold and rollback state (the one writer of `state.json`). Its layout is
//!   documented in the module.
//!
//! Files are written whole or not at all through the `atomic-file` crate, re-exported here
//! ([`replace_file`], [`write_new_file`], [`AtomicFile`], [`AtomicFileError`]).

pub mod key;
pub mod key_file;
pub mod passphrase;
pub mod trust;

pub use atomic_file::{replace_file, write_new_file, AtomicFile, AtomicFileError};
pub use key::{Kdf, KeyError, KeyId, PublicKey, SigningKey, StreamingVerifier};
pub use key_file::{check_keypair_absent, keypair_paths, write_keypair, KeyFileError, KeyPairFiles, LockedKey};
pub use passphrase::{
    read_passphrase, read_passphrase_with_prompt, PassphraseError, PassphraseSource, DEFAULT_PASSPHRASE_ENV,
};
pub use trust::{TrustError, TrustStore};
pub use zeroize::Zeroizing;
