//! Keys for imgsign: Ed25519 key pairs, PEM encodings (encrypted PKCS#8 for private keys, SPKI for
//! public keys), key ids, and the trust store that decides which keys count.
//!
//! - [`KeyId`]: lowercase hex SHA-256 of a public key's SubjectPublicKeyInfo DER. An id found in a
//!   signature is only a hint; the trust store matches keys by this digest.
//! - [`PublicKey`] / [`SigningKey`]: Ed25519 keys. Public keys travel as SPKI `PUBLIC KEY` PEM;
//!   private keys are written only as `ENCRYPTED PRIVATE KEY` PKCS#8 (PBES2, scrypt + AES-256-CBC by
//!   default), which OpenSSL reads (`openssl pkey -in KEY -passin ...`).
//! - [`PassphraseSource`] / [`read_passphrase`]: where a passphrase comes from (environment variable,
//!   file, or a prompt on the terminal), never from a command-line argument value.
//! - [`write_new_file`]: create a file that must not exist yet, atomically and with a given mode.
//! - [`TrustStore`]: the directory of trusted keys, revoked ids, signature threshold and rollback
//!   state. Its layout is documented in the [`trust`] module.

pub mod key;
pub mod passphrase;
pub mod trust;

pub use atomic_file::{replace_file, write_new_file, AtomicFile, AtomicFileError};
pub use key::{
    check_keypair_absent, keypair_paths, write_keypair, Kdf, KeyError, KeyId, KeyPairFiles, LockedKey, PublicKey,
    SigningKey,
};
pub use passphrase::{read_passphrase, read_passphrase_with_prompt, PassphraseSource, DEFAULT_PASSPHRASE_ENV};
pub use trust::{TrustError, TrustStore};
pub use zeroize::Zeroizing;
