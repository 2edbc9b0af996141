//! Keys for imgsign: Ed25519 key pairs, PEM encodings (encrypted PKCS#8 for private keys, SPKI for
//! public keys), key ids, and the trust store that decides which keys count.
