//! Sigstore bundles v0.3 holding a DSSE envelope, verified with a public key (no certificate,
//! no transparency log): the form `@sigstore/verify` accepts with a public-key trust root.
//!
//! [`CheckedBundle`] is the only way a bundle is read: its media type, payload type, signatures
//! (at least one, each valid base64) and key hint are checked once, when it is read, so nothing
//! later re-checks them. The payload (tens of megabytes for a large image) is never held in
//! memory: a small scanner follows the JSON, base64-decodes `dsseEnvelope.payload` into a
//! temporary file ([`Payload`]) and keeps the rest (the "skeleton", with an empty payload), which
//! is then parsed strictly: unknown fields and duplicate keys are refused. Writing goes the other
//! way, encoding the payload in chunks into the same pretty JSON `serde_json` writes.

use crate::dsse::IN_TOTO_PAYLOAD_TYPE;
use crate::payload::{Base64Decoder, Payload, PayloadError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The older spelling of the v0.3 media type, also accepted.
pub const BUNDLE_MEDIA_TYPE_PARAM: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// Largest bundle read (a manifest of 200k files is around 60 MB of base64).
pub const MAX_BUNDLE_BYTES: usize = 256 << 20;
/// Largest bundle without its payload (key hint, signatures, optional transparency data).
pub const MAX_SKELETON_BYTES: usize = 1 << 20;
/// Longest object key read.
const MAX_KEY_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file could not be opened or read.
    #[error("cannot read bundle {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("not JSON: {0}")]
    Syntax(&'static str),
    #[error("not a Sigstore bundle: {0}")]
    NotBundle(String),
    /// The strict parse failed: an unknown field, a field twice, a value of the wrong type.
    #[error("not a Sigstore bundle of the expected shape")]
    Shape(#[source] serde_json::Error),
    #[error("unsupported bundle media type {0:?} (expected {BUNDLE_MEDIA_TYPE:?})")]
    MediaType(String),
    #[error("bundle has no DSSE envelope (imgsign bundles sign an in-toto statement)")]
    NoEnvelope,
    #[error("bundle payload type is {0:?}, expected {IN_TOTO_PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error("bundle envelope has no signatures")]
    NoSignatures,
    #[error("bundle envelope has more than one payload")]
    DuplicatePayload,
    #[error("bundle payload is not a plain base64 string")]
    PayloadString,
    #[error("bundle payload")]
    Payload(#[source] PayloadError),
    #[error("signature {index} is not valid base64")]
    Signature {
        index: usize,
        #[source]
        source: base64::DecodeError,
    },
    #[error("bundle is {0} bytes, more than the {MAX_BUNDLE_BYTES} accepted")]
    TooLarge(u64),
    #[error("bundle without its payload is more than the {MAX_SKELETON_BYTES} bytes accepted")]
    SkeletonTooLarge,
    #[error("writing bundle {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: atomic_file::AtomicFileError,
    },
}

/// One DSSE signature, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSignature {
    pub sig: Vec<u8>,
    /// The signer's key id as written: only a hint, every trusted key is tried.
    pub keyid: String,
}

/// A bundle that was read and checked: a v0.3 media type, an in-toto DSSE payload, at least one
/// signature. Bundles of one statement share their payload.
#[derive(Debug, Clone)]
pub struct CheckedBundle {
    media_type: String,
    key_hint: String,
    tlog_entries: Vec<Value>,
    timestamp_verification_data: Option<Value>,
    payload: Arc<Payload>,
    signatures: Vec<BundleSignature>,
}

impl PartialEq for CheckedBundle {
    fn eq(&self, other: &Self) -> bool {
        self.media_type == other.media_type
            && self.key_hint == other.key_hint
            && self.tlog_entries == other.tlog_entries
            && self.timestamp_verification_data == other.timestamp_verification_data
            && self.payload.digest() == other.payload.digest()
            && self.payload.len() == other.payload.len()
            && self.signatures == other.signatures
    }
}

// The wire form of everything but the payload, as serde writes and strictly reads it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Skeleton {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: SkeletonEnvelope,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VerificationMaterial {
    public_key: PublicKeyHint,
    #[serde(default)]
    tlog_entries: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp_verification_data: Option<Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyHint {
    hint: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SkeletonEnvelope {
    /// Empty: the payload itself is streamed.
    payload: String,
    payload_type: String,
    signatures: Vec<WireSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSignature {
    sig: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
}

impl CheckedBundle {
    /// A new bundle of `payload` (an in-toto statement) with one signature per entry.
    pub fn new(payload: Arc<Payload>, key_hint: String, signatures: Vec<BundleSignature>) -> Self {
        CheckedBundle {
            media_type: BUNDLE_MEDIA_TYPE.into(),
            key_hint,
            tlog_entries: Vec::new(),
            timestamp_verification_data: None,
            payload,
            signatures,
        }
    }

    /// Reads and checks the bundle file at `path`: the one reader of bundle files.
    pub fn read(path: &Path) -> Result<Self, BundleError> {
        let read_err = |source| BundleError::Read { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let len = file.metadata().map_err(read_err)?.len();
        if len > MAX_BUNDLE_BYTES as u64 {
            return Err(BundleError::TooLarge(len));
        }
        Self::from_reader(file).map_err(|e| match e {
            BundleError::Read { source, .. } => read_err(source),
            other => other,
        })
    }

    /// Reads and checks a bundle from `reader` (at most [`MAX_BUNDLE_BYTES`]).
    pub fn from_reader(reader: impl Read) -> Result<Self, BundleError> {
        let mut limited = CountingReader { inner: reader.take(MAX_BUNDLE_BYTES as u64 + 1), count: 0 };
        let (skeleton, payload) = split(&mut BufReader::with_capacity(64 << 10, &mut limited))?;
        if limited.count > MAX_BUNDLE_BYTES as u64 {
            return Err(BundleError::TooLarge(limited.count));
        }
        Self::check(&skeleton, payload)
    }

    /// Parses a bundle held in memory (tests, fuzzing).
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        Self::from_reader(bytes)
    }

    fn check(skeleton: &[u8], payload: Option<Payload>) -> Result<Self, BundleError> {
        // Loose checks first, so a file that is not a bundle at all is named as such.
        let value: Value = serde_json::from_slice(skeleton).map_err(BundleError::Json)?;
        let object =
            value.as_object().ok_or_else(|| BundleError::NotBundle("top level is not a JSON object".into()))?;
        let media_type = object
            .get("mediaType")
            .and_then(Value::as_str)
            .ok_or_else(|| BundleError::NotBundle("no mediaType".into()))?;
        if media_type != BUNDLE_MEDIA_TYPE && media_type != BUNDLE_MEDIA_TYPE_PARAM {
            return Err(BundleError::MediaType(media_type.into()));
        }
        if !object.contains_key("dsseEnvelope") {
            return Err(BundleError::NoEnvelope);
        }
        if !object.get("verificationMaterial").and_then(|m| m.get("publicKey")).is_some_and(Value::is_object) {
            return Err(BundleError::NotBundle("verificationMaterial has no publicKey".into()));
        }
        // Then the strict parse: the exact shape, no unknown field, no key twice.
        let wire: Skeleton = serde_json::from_slice(skeleton).map_err(BundleError::Shape)?;
        let envelope = wire.dsse_envelope;
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(BundleError::PayloadType(envelope.payload_type));
        }
        if envelope.signatures.is_empty() {
            return Err(BundleError::NoSignatures);
        }
        let payload = match payload {
            Some(p) => p,
            // An empty string was left in the skeleton as is (nothing to stream).
            None if envelope.payload.is_empty() => Payload::from_bytes(&[]).map_err(BundleError::Payload)?,
            None => return Err(BundleError::PayloadString),
        };
        let signatures = envelope
            .signatures
            .into_iter()
            .enumerate()
            .map(|(index, s)| {
                let sig = B64.decode(&s.sig).map_err(|source| BundleError::Signature { index, source })?;
                Ok(BundleSignature { sig, keyid: s.keyid })
            })
            .collect::<Result<Vec<_>, BundleError>>()?;
        Ok(CheckedBundle {
            media_type: wire.media_type,
            key_hint: wire.verification_material.public_key.hint,
            tlog_entries: wire.verification_material.tlog_entries,
            timestamp_verification_data: wire.verification_material.timestamp_verification_data,
            payload: Arc::new(payload),
            signatures,
        })
    }

    /// The decoded DSSE payload (an in-toto statement, not yet verified).
    pub fn payload(&self) -> &Arc<Payload> {
        &self.payload
    }

    pub fn payload_type(&self) -> &'static str {
        IN_TOTO_PAYLOAD_TYPE
    }

    pub fn signatures(&self) -> &[BundleSignature] {
        &self.signatures
    }

    pub fn key_hint(&self) -> &str {
        &self.key_hint
    }

    /// Writes the bundle as pretty JSON with a trailing newline: byte for byte what
    /// `serde_json::to_vec_pretty` gives for the same bundle, the payload encoded in chunks.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let skeleton = Skeleton {
            media_type: self.media_type.clone(),
            verification_material: VerificationMaterial {
                public_key: PublicKeyHint { hint: self.key_hint.clone() },
                tlog_entries: self.tlog_entries.clone(),
                timestamp_verification_data: self.timestamp_verification_data.clone(),
            },
            dsse_envelope: SkeletonEnvelope {
                payload: String::new(),
                payload_type: IN_TOTO_PAYLOAD_TYPE.into(),
                signatures: self
                    .signatures
                    .iter()
                    .map(|s| WireSignature { sig: B64.encode(&s.sig), keyid: s.keyid.clone() })
                    .collect(),
            },
        };
        let text = serde_json::to_vec_pretty(&skeleton).map_err(io::Error::other)?;
        // The envelope is the only object at depth 1 with a "payload" key, and everything before it
        // (media type, verification material) is indented differently, so this line is unique.
        const PAYLOAD_LINE: &[u8] = b"\n    \"payload\": \"";
        let at = text
            .windows(PAYLOAD_LINE.len())
            .position(|w| w == PAYLOAD_LINE)
            .map(|i| i + PAYLOAD_LINE.len())
            .ok_or_else(|| io::Error::other("serialised bundle has no payload line"))?;
        out.write_all(&text[..at])?;
        self.payload.write_base64(out)?;
        out.write_all(&text[at..])?;
        out.write_all(b"\n")
    }

    /// Writes the bundle to `path`, replacing it atomically (mode 0644).
    pub fn write_file(&self, path: &Path) -> Result<(), BundleError> {
        let write_err = |source| BundleError::Write { path: path.to_path_buf(), source };
        let io_err = |source| {
            write_err(atomic_file::AtomicFileError::Io { action: "cannot write", path: path.to_path_buf(), source })
        };
        let file = atomic_file::AtomicFile::create(path, 0o644).map_err(write_err)?;
        let mut out = BufWriter::with_capacity(64 << 10, file);
        self.write_to(&mut out).map_err(io_err)?;
        let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.commit().map_err(write_err)
    }

    /// The bundle in memory (tests, fuzzing).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to memory");
        out
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Where the scanner is inside the JSON.
enum Frame {
    /// An object and the last key read in it; `want_key` until a key is read after `{` or `,`.
    Object {
        key: Option<String>,
        want_key: bool,
    },
    Array,
}

/// Splits a bundle into its skeleton (everything but the payload's characters, which become an
/// empty string) and its decoded payload. The scanner only follows structure (strings, nesting,
/// keys); the skeleton's JSON is checked by serde afterwards.
fn split(input: &mut impl BufRead) -> Result<(Vec<u8>, Option<Payload>), BundleError> {
    let mut skeleton = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut payload = None;
    let io = |source| BundleError::Read { path: PathBuf::new(), source };
    loop {
        let buf = input.fill_buf().map_err(io)?;
        let Some(&byte) = buf.first() else { break };
        input.consume(1);
        match byte {
            b'"' => {
                let is_key = matches!(stack.last(), Some(Frame::Object { want_key: true, .. }));
                if is_key {
                    let raw = read_string(input, &mut skeleton, Some(MAX_KEY_BYTES))?;
                    let key = decode_key(&raw)?;
                    if let Some(Frame::Object { key: k, want_key }) = stack.last_mut() {
                        *k = Some(key);
                        *want_key = false;
                    }
                } else if at_payload(&stack) {
                    if payload.is_some() {
                        return Err(BundleError::DuplicatePayload);
                    }
                    skeleton.extend_from_slice(b"\"\"");
                    payload = Some(stream_payload(input)?);
                } else {
                    read_string(input, &mut skeleton, None)?;
                }
            }
            b'{' => {
                skeleton.push(byte);
                stack.push(Frame::Object { key: None, want_key: true });
            }
            b'[' => {
                skeleton.push(byte);
                stack.push(Frame::Array);
            }
            b'}' | b']' => {
                skeleton.push(byte);
                if stack.pop().is_none() {
                    return Err(BundleError::Syntax("unbalanced brackets"));
                }
            }
            b',' => {
                skeleton.push(byte);
                if let Some(Frame::Object { want_key, .. }) = stack.last_mut() {
                    *want_key = true;
                }
            }
            _ => skeleton.push(byte),
        }
        if skeleton.len() > MAX_SKELETON_BYTES {
            return Err(BundleError::SkeletonTooLarge);
        }
    }
    Ok((skeleton, payload))
}

/// Whether a string value here is `dsseEnvelope.payload` of the top-level object.
fn at_payload(stack: &[Frame]) -> bool {
    matches!(
        stack,
        [Frame::Object { key: Some(outer), want_key: false }, Frame::Object { key: Some(inner), want_key: false }]
            if outer == "dsseEnvelope" && inner == "payload"
    )
}

/// Copies a JSON string's raw characters (after its opening quote, through its closing quote)
/// into `skeleton`; returns them without the quotes when `limit` is given (keys).
fn read_string(input: &mut impl BufRead, skeleton: &mut Vec<u8>, limit: Option<usize>) -> Result<Vec<u8>, BundleError> {
    let io = |source| BundleError::Read { path: PathBuf::new(), source };
    skeleton.push(b'"');
    let mut raw = Vec::new();
    let mut escaped = false;
    loop {
        let buf = input.fill_buf().map_err(io)?;
        if buf.is_empty() {
            return Err(BundleError::Syntax("unterminated string"));
        }
        let mut end = None;
        for (i, &b) in buf.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                end = Some(i);
                break;
            }
        }
        let take = end.map_or(buf.len(), |i| i + 1);
        skeleton.extend_from_slice(&buf[..take]);
        if let Some(limit) = limit {
            raw.extend_from_slice(&buf[..end.unwrap_or(buf.len())]);
            if raw.len() > limit {
                return Err(BundleError::NotBundle("an object key is too long".into()));
            }
        }
        input.consume(take);
        if end.is_some() {
            return Ok(raw);
        }
        if skeleton.len() > MAX_SKELETON_BYTES {
            return Err(BundleError::SkeletonTooLarge);
        }
    }
}

/// A key as serde will read it (escapes decoded), so `"p\u0061yload"` is `payload` here too.
fn decode_key(raw: &[u8]) -> Result<String, BundleError> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).map_err(BundleError::Json)
}

/// Decodes the payload string's base64 (after its opening quote, through its closing quote).
/// The payload is plain base64: an escape or any other character is refused.
fn stream_payload(input: &mut impl BufRead) -> Result<Payload, BundleError> {
    let io = |source| BundleError::Read { path: PathBuf::new(), source };
    let mut decoder = Base64Decoder::new().map_err(BundleError::Payload)?;
    loop {
        let buf = input.fill_buf().map_err(io)?;
        if buf.is_empty() {
            return Err(BundleError::Syntax("unterminated string"));
        }
        let end = buf.iter().position(|&b| b == b'"');
        let text = &buf[..end.unwrap_or(buf.len())];
        if text.iter().any(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')) {
            return Err(BundleError::PayloadString);
        }
        decoder.push(text).map_err(BundleError::Payload)?;
        let take = end.map_or(buf.len(), |i| i + 1);
        input.consume(take);
        if end.is_some() {
            return decoder.finish().map_err(BundleError::Payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_json(payload: &str, extra_envelope: &str) -> String {
        format!(
            r#"{{"mediaType":"{BUNDLE_MEDIA_TYPE}","verificationMaterial":{{"publicKey":{{"hint":"k"}},"tlogEntries":[]}},"dsseEnvelope":{{"payload":"{payload}","payloadType":"{IN_TOTO_PAYLOAD_TYPE}","signatures":[{{"sig":"AAAA","keyid":"k"}}]{extra_envelope}}}}}"#
        )
    }

    #[test]
    fn reads_a_bundle_and_streams_its_payload() {
        let text = bundle_json(&B64.encode(b"{\"x\":1}"), "");
        let bundle = CheckedBundle::parse(text.as_bytes()).unwrap();
        assert_eq!(bundle.payload().to_vec().unwrap(), b"{\"x\":1}");
        assert_eq!(bundle.signatures(), &[BundleSignature { sig: vec![0, 0, 0], keyid: "k".into() }]);
        assert_eq!(bundle.key_hint(), "k");
        let again = CheckedBundle::parse(&bundle.to_json()).unwrap();
        assert_eq!(again, bundle);
    }

    #[test]
    fn refuses_a_second_payload_even_under_an_escaped_key() {
        let p = B64.encode(b"{}");
        for extra in [format!(r#","payload":"{p}""#), format!(r#","p\u0061yload":"{p}""#)] {
            let text = bundle_json(&p, &extra);
            assert!(matches!(CheckedBundle::parse(text.as_bytes()), Err(BundleError::DuplicatePayload)), "{extra}");
        }
    }

    #[test]
    fn refuses_unknown_fields_and_duplicate_keys() {
        let p = B64.encode(b"{}");
        for extra in [r#","evil":1"#, r#","payloadType":"x""#, r#","signatures":[]"#] {
            let text = bundle_json(&p, extra);
            assert!(matches!(CheckedBundle::parse(text.as_bytes()), Err(BundleError::Shape(_))), "{extra}");
        }
        let top = bundle_json(&p, "").replacen('{', r#"{"extra":true,"#, 1);
        assert!(CheckedBundle::parse(top.as_bytes()).is_err());
    }

    #[test]
    fn refuses_escapes_and_bad_base64_in_the_payload() {
        for payload in [r"e30\u003d", "e30", "e3 0=", "e30=e30="] {
            let text = bundle_json(payload, "");
            assert!(CheckedBundle::parse(text.as_bytes()).is_err(), "{payload}");
        }
    }

    #[test]
    fn refuses_a_payload_that_is_not_a_string_and_trailing_data() {
        let text = bundle_json("", "").replace(r#""payload":"""#, r#""payload":5"#);
        assert!(CheckedBundle::parse(text.as_bytes()).is_err());
        let text = bundle_json(&B64.encode(b"{}"), "") + "{}";
        assert!(CheckedBundle::parse(text.as_bytes()).is_err());
    }

    #[test]
    fn refuses_a_large_skeleton() {
        let hint = "x".repeat(MAX_SKELETON_BYTES + 1);
        let text = bundle_json(&B64.encode(b"{}"), "").replace(r#""hint":"k""#, &format!(r#""hint":"{hint}""#));
        assert!(matches!(CheckedBundle::parse(text.as_bytes()), Err(BundleError::SkeletonTooLarge)));
    }
}
