//! Ed25519 keys and their encodings, in memory. A [`PublicKey`] is read and written as an SPKI
//! `PUBLIC KEY` PEM and is named by its [`KeyId`], the lowercase hex SHA-256 of its SPKI DER. A
//! [`SigningKey`] is written only as an `ENCRYPTED PRIVATE KEY` PKCS#8 PEM (PBES2 with scrypt or
//! PBKDF2-SHA256, and AES-256-CBC), the format OpenSSL reads and writes; unencrypted `PRIVATE KEY`
//! PEMs are accepted on input. Secret material is zeroized on drop. Files holding keys are
//! [`crate::key_file`]'s concern; this module does no I/O, and [`KeyError`] says only what is wrong
//! with key material.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::Signature;
use pkcs8::der::pem::LineEnding;
use pkcs8::pkcs5::pbes2;
use pkcs8::{EncodePrivateKey, EncryptedPrivateKeyInfo};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use zeroize::{Zeroize, Zeroizing};

/// What is wrong with a key, a key id or a private key's encryption. Carries no path: the caller
/// that read the key from a file wraps it ([`crate::KeyFileError::Key`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not an Ed25519 SPKI public key.
    #[error("not an Ed25519 public key (expected a PEM \"PUBLIC KEY\" block holding an Ed25519 SubjectPublicKeyInfo)")]
    InvalidPublicKey {
        #[source]
        source: pkcs8::spki::Error,
    },
    /// Not PEM, or a PEM block of the wrong kind.
    #[error("not a PEM private key (expected an \"ENCRYPTED PRIVATE KEY\" or \"PRIVATE KEY\" block)")]
    NotPrivateKeyPem {
        #[source]
        source: Option<pkcs8::der::Error>,
    },
    /// The PEM held a private key that is not a valid Ed25519 PKCS#8 key.
    #[error("not an Ed25519 PKCS#8 private key")]
    InvalidPrivateKey {
        #[source]
        source: pkcs8::Error,
    },
    /// The private key is encrypted and no passphrase was given.
    #[error("the private key is encrypted; a passphrase is needed")]
    PassphraseRequired,
    /// Decryption failed: the passphrase is wrong (or the encrypted key is corrupt).
    #[error("wrong passphrase for the encrypted private key (or the key file is corrupt)")]
    WrongPassphrase {
        #[source]
        source: pkcs8::Error,
    },
    /// The encrypted key uses a scheme this crate does not implement (PBES1, a legacy cipher).
    #[error("unsupported private key encryption (use PBES2 with scrypt or PBKDF2 and AES-CBC)")]
    UnsupportedEncryption {
        #[source]
        source: pkcs8::Error,
    },
    /// The encrypted key asks for a key derivation too costly to run (a hostile or broken file).
    #[error("the encrypted private key's key derivation is too expensive ({0}); refusing to run it")]
    KdfTooExpensive(String),
    /// Encrypting with an empty passphrase was asked for; private keys are always encrypted.
    #[error("the passphrase is empty; private keys are always encrypted")]
    EmptyPassphrase,
    /// Encoding or encrypting a private key failed.
    #[error("cannot encode the private key")]
    Encode {
        #[source]
        source: pkcs8::Error,
    },
    /// Bad scrypt/PBKDF2 parameters.
    #[error("invalid key derivation parameters: {0}")]
    InvalidKdf(String),
    /// Not a key id.
    #[error("invalid key id {value:?}: expected 64 hex digits (SHA-256 of the public key's SPKI DER)")]
    InvalidKeyId { value: String },
}

/// The id of a public key: lowercase hex SHA-256 of its SubjectPublicKeyInfo DER encoding.
///
/// Parsing accepts upper or lower case hex and normalizes to lower case. Serializes as a string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id of the public key whose SPKI DER encoding is `spki_der`.
    pub fn from_spki_der(spki_der: &[u8]) -> KeyId {
        KeyId(hex::encode(Sha256::digest(spki_der)))
    }

    /// The 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(KeyId(s.to_ascii_lowercase()))
        } else {
            Err(KeyError::InvalidKeyId { value: s.to_string() })
        }
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// Parses an SPKI `PUBLIC KEY` PEM holding an Ed25519 key.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|source| KeyError::InvalidPublicKey { source })?;
        Ok(PublicKey { key })
    }

    /// Parses an SPKI DER encoding of an Ed25519 key.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_der(der)
            .map_err(|source| KeyError::InvalidPublicKey { source })?;
        Ok(PublicKey { key })
    }

    /// The raw 32-byte key (RFC 8032 encoding); rejects a point that does not decode.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidPublicKey { source: pkcs8::spki::Error::KeyMalformed })?;
        Ok(PublicKey { key })
    }

    /// The SPKI `PUBLIC KEY` PEM, LF line endings, ending in a newline.
    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).expect("encoding an Ed25519 SubjectPublicKeyInfo cannot fail")
    }

    /// The SPKI DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        self.key.to_public_key_der().expect("encoding an Ed25519 SubjectPublicKeyInfo cannot fail").into_vec()
    }

    /// The raw 32-byte key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// SHA-256 of the SPKI DER, lowercase hex.
    pub fn key_id(&self) -> KeyId {
        KeyId::from_spki_der(&self.to_der())
    }

    /// Checks a 64-byte Ed25519 signature with strict verification (`verify_strict`: rejects
    /// non-canonical encodings and small-order keys and points). Anything malformed is `false`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match Signature::from_slice(signature) {
            Ok(sig) => self.key.verify_strict(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

impl PublicKey {
    /// Starts checking a signature over a message fed in pieces ([`StreamingVerifier::update`]),
    /// as strictly as [`PublicKey::verify`]: `None` for a malformed signature, a small-order `R`
    /// or a weak key, which can never verify.
    pub fn verify_streaming(&self, signature: &[u8]) -> Option<StreamingVerifier> {
        let sig = Signature::from_slice(signature).ok()?;
        let r = curve25519_dalek::edwards::CompressedEdwardsY(sig.r_bytes().to_owned()).decompress()?;
        if r.is_small_order() || self.key.is_weak() {
            return None;
        }
        self.key.verify_stream(&sig).ok().map(|inner| StreamingVerifier { inner })
    }
}

/// A signature check over a message read in pieces; see [`PublicKey::verify_streaming`].
pub struct StreamingVerifier {
    inner: ed25519_dalek::StreamVerifier,
}

impl StreamingVerifier {
    pub fn update(&mut self, chunk: &[u8]) {
        self.inner.update(chunk);
    }

    /// True if the message fed so far is exactly the one signed.
    pub fn finish(self) -> bool {
        self.inner.finalize_and_verify().is_ok()
    }
}

/// Key derivation for encrypted private keys (PBES2). Every choice uses AES-256-CBC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kdf {
    /// scrypt with cost 2^`log_n`, block size `r`, parallelism `p`.
    Scrypt { log_n: u8, r: u32, p: u32 },
    /// PBKDF2 with HMAC-SHA256.
    Pbkdf2Sha256 { iterations: u32 },
}

impl Kdf {
    /// Cheap parameters for tests only: never use them for a real key.
    pub const INSECURE_FOR_TESTS: Kdf = Kdf::Scrypt { log_n: 4, r: 8, p: 1 };
}

impl Default for Kdf {
    /// scrypt N=2^14, r=8, p=1 (16 MiB). N=2^15 would exceed OpenSSL's default scrypt memory limit
    /// (32 MiB), making the key unreadable by `openssl pkey`.
    fn default() -> Self {
        Kdf::Scrypt { log_n: 14, r: 8, p: 1 }
    }
}

/// An Ed25519 private key. The secret is zeroized when this is dropped; `Debug` shows only the key
/// id.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public_key().key_id())
    }
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        SigningKey { key: ed25519_dalek::SigningKey::generate(&mut OsRng) }
    }

    /// A key from its 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey { key: ed25519_dalek::SigningKey::from_bytes(seed) }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { key: self.key.verifying_key() }
    }

    /// The 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer;
        self.key.sign(message).to_bytes().to_vec()
    }

    /// The Ed25519 signature of a message too large to hold in memory (pure Ed25519, the same
    /// signature [`SigningKey::sign`] gives for the same bytes). Ed25519 hashes the message twice, so
    /// `feed` is called exactly twice and must write the same bytes into the sink each time (a file
    /// read from the start twice); an error from `feed` is returned as is.
    pub fn sign_streaming<F>(&self, feed: F) -> std::io::Result<[u8; 64]>
    where
        F: FnMut(&mut dyn FnMut(&[u8])) -> std::io::Result<()>,
    {
        use ed25519_dalek::hazmat::{raw_sign_byupdate, ExpandedSecretKey};
        use sha2::Sha512;
        let feed = std::cell::RefCell::new(feed);
        let failure: std::cell::RefCell<Option<std::io::Error>> = std::cell::RefCell::new(None);
        let expanded = ExpandedSecretKey::from(&self.key.to_bytes());
        let signed = raw_sign_byupdate::<Sha512, _>(
            &expanded,
            |hasher| {
                let mut sink = |chunk: &[u8]| hasher.update(chunk);
                (feed.borrow_mut())(&mut sink).map_err(|e| {
                    *failure.borrow_mut() = Some(e);
                    ed25519_dalek::SignatureError::new()
                })
            },
            &self.key.verifying_key(),
        );
        match (signed, failure.into_inner()) {
            (_, Some(err)) => Err(err),
            (Ok(signature), None) => Ok(signature.to_bytes()),
            (Err(err), None) => Err(std::io::Error::other(err)),
        }
    }

    /// PKCS#8 v1 DER (no embedded public key: the widest-read form).
    fn pkcs8_der(&self) -> Result<pkcs8::SecretDocument, KeyError> {
        let mut kp = KeypairBytes { secret_key: self.key.to_bytes(), public_key: None };
        let doc = kp.to_pkcs8_der().map_err(|source| KeyError::Encode { source });
        kp.secret_key.zeroize();
        doc
    }

    /// An `ENCRYPTED PRIVATE KEY` PEM (PKCS#8, PBES2 scrypt N=2^14 r=8 p=1, AES-256-CBC), readable
    /// by `openssl pkey`.
    pub fn to_encrypted_pem(&self, passphrase: &[u8]) -> Result<String, KeyError> {
        self.to_encrypted_pem_with(passphrase, Kdf::default())
    }

    /// Like [`SigningKey::to_encrypted_pem`] with a chosen key derivation.
    pub fn to_encrypted_pem_with(&self, passphrase: &[u8], kdf: Kdf) -> Result<String, KeyError> {
        if passphrase.is_empty() {
            return Err(KeyError::EmptyPassphrase);
        }
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut iv);
        let params = match kdf {
            Kdf::Scrypt { log_n, r, p } => {
                let sp = pkcs8::pkcs5::scrypt::Params::new(log_n, r, p, 32)
                    .map_err(|e| KeyError::InvalidKdf(format!("scrypt: {e}")))?;
                pbes2::Parameters::scrypt_aes256cbc(sp, &salt, &iv)
            }
            Kdf::Pbkdf2Sha256 { iterations } => {
                if iterations == 0 {
                    return Err(KeyError::InvalidKdf("PBKDF2 iterations must be at least 1".into()));
                }
                pbes2::Parameters::pbkdf2_sha256_aes256cbc(iterations, &salt, &iv)
            }
        }
        .map_err(|e| KeyError::InvalidKdf(e.to_string()))?;
        let der = self.pkcs8_der()?;
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_bytes()).map_err(|source| KeyError::Encode { source })?;
        let encrypted = info.encrypt_with_params(params, passphrase).map_err(|source| KeyError::Encode { source })?;
        let pem = encrypted
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(|e| KeyError::Encode { source: e.into() })?;
        Ok(pem.to_string())
    }

    /// An unencrypted `PRIVATE KEY` PEM, for tests and hand-off to tools that need one. Keys on
    /// disk should be written with [`SigningKey::to_encrypted_pem`].
    pub fn to_unencrypted_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.pkcs8_der()?;
        der.to_pem("PRIVATE KEY", LineEnding::LF).map_err(|e| KeyError::Encode { source: e.into() })
    }

    /// Parses an `ENCRYPTED PRIVATE KEY` (needs `passphrase`) or `PRIVATE KEY` PKCS#8 PEM holding
    /// an Ed25519 key. A wrong passphrase gives [`KeyError::WrongPassphrase`].
    pub fn from_pem(pem: &str, passphrase: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, der) = pkcs8::der::pem::decode_vec(pem.trim().as_bytes())
            .map_err(|e| KeyError::NotPrivateKeyPem { source: Some(e.into()) })?;
        let der = Zeroizing::new(der);
        match label {
            "ENCRYPTED PRIVATE KEY" => {
                let passphrase = passphrase.ok_or(KeyError::PassphraseRequired)?;
                let info = EncryptedPrivateKeyInfo::try_from(der.as_slice())
                    .map_err(|source| KeyError::InvalidPrivateKey { source })?;
                check_kdf_cost(&info)?;
                let plain = info.decrypt(passphrase).map_err(|source| match source {
                    // pkcs5 0.7 reports a bad CBC padding as `EncryptFailed` on decryption; a
                    // plaintext that is not DER (valid padding by chance) is an `Asn1` error.
                    pkcs8::Error::EncryptedPrivateKey(
                        pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
                    )
                    | pkcs8::Error::Asn1(_) => KeyError::WrongPassphrase { source },
                    source => KeyError::UnsupportedEncryption { source },
                })?;
                // A wrong passphrase passes the CBC padding check about once in 256 tries; the
                // plaintext is then garbage, so a parse failure here means the same thing.
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(plain.as_bytes())
                    .map_err(|source| KeyError::WrongPassphrase { source })?;
                Ok(SigningKey { key })
            }
            "PRIVATE KEY" => {
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der)
                    .map_err(|source| KeyError::InvalidPrivateKey { source })?;
                Ok(SigningKey { key })
            }
            _ => Err(KeyError::NotPrivateKeyPem { source: None }),
        }
    }

    /// Whether `pem` is an `ENCRYPTED PRIVATE KEY` block (so a passphrase will be needed).
    pub fn pem_is_encrypted(pem: &str) -> bool {
        pem.trim_start().starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    }
}

/// Most memory scrypt may use when decrypting a key (OpenSSL's default limit is 32 MiB).
const MAX_SCRYPT_BYTES: u64 = 1 << 30;
/// Most PBKDF2 iterations run when decrypting a key.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Refuses key derivation parameters that would take minutes or gigabytes before the passphrase
/// could even be checked.
fn check_kdf_cost(info: &EncryptedPrivateKeyInfo<'_>) -> Result<(), KeyError> {
    let Some(params) = info.encryption_algorithm.pbes2() else { return Ok(()) };
    if let Some(sc) = params.kdf.scrypt() {
        let bytes = 128u64
            .saturating_mul(u64::from(sc.block_size))
            .saturating_mul(sc.cost_parameter.saturating_add(u64::from(sc.parallelization)));
        if bytes > MAX_SCRYPT_BYTES || sc.parallelization > 16 {
            return Err(KeyError::KdfTooExpensive(format!(
                "scrypt N={} r={} p={}",
                sc.cost_parameter, sc.block_size, sc.parallelization
            )));
        }
    }
    if let Some(pb) = params.kdf.pbkdf2() {
        if pb.iteration_count > MAX_PBKDF2_ITERATIONS {
            return Err(KeyError::KdfTooExpensive(format!("PBKDF2 with {} iterations", pb.iteration_count)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_sign_and_verify_agree_with_the_one_shot_forms() {
        let key = SigningKey::from_seed(&[7; 32]);
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let streamed = key
            .sign_streaming(|sink| {
                message.chunks(4096).for_each(&mut *sink);
                Ok(())
            })
            .unwrap();
        assert_eq!(streamed.to_vec(), key.sign(&message));
        let public = key.public_key();
        let mut verifier = public.verify_streaming(&streamed).unwrap();
        message.chunks(777).for_each(|c| verifier.update(c));
        assert!(verifier.finish());
        let mut tampered = public.verify_streaming(&streamed).unwrap();
        tampered.update(&message[1..]);
        assert!(!tampered.finish());
        assert!(public.verify_streaming(&[0; 64]).is_none(), "small-order R (identity) is refused up front");
        assert!(public.verify_streaming(&streamed[..63]).is_none());
        let err = key.sign_streaming(|_| Err(std::io::Error::other("disk gone"))).unwrap_err();
        assert_eq!(err.to_string(), "disk gone");
    }
    const PASS: &[u8] = b"correct horse battery staple";

    #[test]
    fn encrypted_pem_round_trip_default_kdf() {
        let key = SigningKey::generate();
        let pem = key.to_encrypted_pem(PASS).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"), "{pem}");
        assert!(SigningKey::pem_is_encrypted(&pem));
        let back = SigningKey::from_pem(&pem, Some(PASS)).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let sig = back.sign(b"msg");
        assert_eq!(sig.len(), 64);
        assert!(key.public_key().verify(b"msg", &sig));
    }

    #[test]
    fn encrypted_pem_round_trip_pbkdf2() {
        let key = SigningKey::generate();
        let pem = key.to_encrypted_pem_with(PASS, Kdf::Pbkdf2Sha256 { iterations: 1000 }).unwrap();
        let back = SigningKey::from_pem(&pem, Some(PASS)).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn wrong_passphrase_rejected() {
        let key = SigningKey::generate();
        let pem = key.to_encrypted_pem_with(PASS, Kdf::INSECURE_FOR_TESTS).unwrap();
        // Many wrong passphrases, so the ~1/256 chance of valid CBC padding is exercised too.
        for i in 0..1000 {
            let wrong = format!("wrong-{i}");
            let err = SigningKey::from_pem(&pem, Some(wrong.as_bytes())).unwrap_err();
            assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{wrong}: {err:?}");
        }
        let err = SigningKey::from_pem(&pem, None).unwrap_err();
        assert!(matches!(err, KeyError::PassphraseRequired), "{err:?}");
        assert!(SigningKey::from_pem(&pem, Some(PASS)).is_ok());
    }

    #[test]
    fn empty_passphrase_refused_for_encryption() {
        let key = SigningKey::generate();
        assert!(matches!(key.to_encrypted_pem(b""), Err(KeyError::EmptyPassphrase)));
    }

    /// An `ENCRYPTED PRIVATE KEY` PEM with the given KDF and junk ciphertext.
    fn encrypted_pem_with_kdf(kdf: pbes2::Kdf<'_>) -> String {
        use pkcs8::der::Encode;
        let iv = [7u8; 16];
        let params = pbes2::Parameters { kdf, encryption: pbes2::EncryptionScheme::Aes256Cbc { iv: &iv } };
        let info = EncryptedPrivateKeyInfo { encryption_algorithm: params.into(), encrypted_data: &[0u8; 48] };
        let der = info.to_der().unwrap();
        pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", LineEnding::LF, &der).unwrap()
    }

    #[test]
    fn absurd_kdf_cost_refused_before_running() {
        let salt = [1u8; 16];
        let scrypt = |n: u64, r: u16, p: u16| {
            encrypted_pem_with_kdf(
                pbes2::ScryptParams {
                    salt: &salt,
                    cost_parameter: n,
                    block_size: r,
                    parallelization: p,
                    key_length: None,
                }
                .into(),
            )
        };
        // 2^24 * 8 * 128 bytes = 16 GiB: refused at once instead of allocating.
        let started = std::time::Instant::now();
        let err = SigningKey::from_pem(&scrypt(1 << 24, 8, 1), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::KdfTooExpensive(_)), "{err:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let err = SigningKey::from_pem(&scrypt(u64::MAX, u16::MAX, 1), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::KdfTooExpensive(_)), "{err:?}");
        let err = SigningKey::from_pem(&scrypt(16, 8, 1000), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::KdfTooExpensive(_)), "{err:?}");
        // Cheap parameters get as far as decryption (and fail on the junk ciphertext).
        let err = SigningKey::from_pem(&scrypt(16, 8, 1), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err:?}");

        let pbkdf2 = |iterations: u32| {
            let mut params = pbes2::Pbkdf2Params::hmac_with_sha256(1, &salt).unwrap();
            params.iteration_count = iterations;
            encrypted_pem_with_kdf(params.into())
        };
        let err = SigningKey::from_pem(&pbkdf2(u32::MAX), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::KdfTooExpensive(_)), "{err:?}");
        let err = SigningKey::from_pem(&pbkdf2(10), Some(PASS)).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err:?}");
    }

    #[test]
    fn unencrypted_pem_accepted() {
        let key = SigningKey::generate();
        let pem = key.to_unencrypted_pem().unwrap();
        assert!(!SigningKey::pem_is_encrypted(&pem));
        let back = SigningKey::from_pem(&pem, None).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        // A passphrase given for an unencrypted key is ignored.
        assert!(SigningKey::from_pem(&pem, Some(b"x")).is_ok());
    }

    #[test]
    fn garbage_private_key_rejected() {
        assert!(matches!(SigningKey::from_pem("hello", None), Err(KeyError::NotPrivateKeyPem { .. })));
        let pubpem = SigningKey::generate().public_key().to_pem();
        assert!(matches!(SigningKey::from_pem(&pubpem, None), Err(KeyError::NotPrivateKeyPem { .. })));
    }

    #[test]
    fn key_id_is_sha256_of_spki_der_and_stable() {
        // RFC 8032 test vector 1.
        let seed: [u8; 32] = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_seed(&seed);
        let public = key.public_key();
        assert_eq!(hex::encode(public.to_bytes()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let der = public.to_der();
        // SPKI for Ed25519 is a fixed 12-byte prefix then the raw key.
        assert_eq!(hex::encode(&der[..12]), "302a300506032b6570032100");
        assert_eq!(&der[12..], &public.to_bytes());
        let id = public.key_id();
        assert_eq!(id.as_str(), hex::encode(Sha256::digest(&der)));
        // Stable across encodings and reloads.
        assert_eq!(PublicKey::from_pem(&public.to_pem()).unwrap().key_id(), id);
        assert_eq!(PublicKey::from_der(&der).unwrap().key_id(), id);
        assert_eq!(id.to_string().len(), 64);
        // Signature from RFC 8032 test vector 1 (empty message), strict verification.
        let sig = key.sign(b"");
        assert_eq!(
            hex::encode(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(public.verify(b"", &sig));
        assert!(!public.verify(b"x", &sig));
        assert!(!public.verify(b"", &sig[..63]));
    }

    #[test]
    fn key_id_parse_and_serde() {
        let id = SigningKey::generate().public_key().key_id();
        let upper = id.as_str().to_ascii_uppercase();
        assert_eq!(upper.parse::<KeyId>().unwrap(), id);
        assert!("abc".parse::<KeyId>().is_err());
        assert!("g".repeat(64).parse::<KeyId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<KeyId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<KeyId>("\"nothex\"").is_err());
    }
}
