//! The in-toto Statement v1 that imgsign signs: its subject is the image (manifest digest for OCI
//! images, config digest for docker archives, manifest digest of the file list for `dir:` trees)
//! and its predicate is the per-file manifest with the name, version and expiry that trust
//! policy checks.
//!
//! Two predicate types are read ([`ManifestFormat`]): v1, whose entries carry no code marks, and
//! v2 (what signing writes), whose file and hardlink entries carry `code` when their content is
//! an ELF object or a `#!` script. A v1 statement with a code mark is refused: a reader could not
//! tell a mark-less v2 entry from a v1 one, and older verifiers refuse the field anyway.

use crate::digest::Sha256Digest;
use crate::manifest::{FieldDifference, FileEntry};
use crate::source::{ImageIdentity, LayerDigests, SourceKind};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::time::SystemTime;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type signing writes (v2: entries carry code marks).
pub const PREDICATE_TYPE: &str = "https://imgsign.dev/file-manifest/v2";
/// The predicate type of manifests signed before code marks; still read.
pub const PREDICATE_TYPE_V1: &str = "https://imgsign.dev/file-manifest/v1";

/// Which file-manifest predicate a statement carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestFormat {
    /// No code marks: what can run is unknown, every file's digest counts.
    V1,
    /// File and hardlink entries carry `code` when their content is code.
    #[default]
    V2,
}

impl ManifestFormat {
    pub fn from_predicate_type(predicate_type: &str) -> Option<Self> {
        match predicate_type {
            PREDICATE_TYPE => Some(ManifestFormat::V2),
            PREDICATE_TYPE_V1 => Some(ManifestFormat::V1),
            _ => None,
        }
    }

    pub fn predicate_type(self) -> &'static str {
        match self {
            ManifestFormat::V1 => PREDICATE_TYPE_V1,
            ManifestFormat::V2 => PREDICATE_TYPE,
        }
    }

    /// Whether entries of this format are signed with code marks (so an entry without one is
    /// signed as not code).
    pub fn has_code_marks(self) -> bool {
        self == ManifestFormat::V2
    }

    /// How the image entry `actual` differs from the signed `expected` under this format: a v1
    /// manifest signed no code marks, so the one computed from the image is not compared.
    pub fn field_differences(self, expected: &FileEntry, actual: &FileEntry) -> Vec<FieldDifference> {
        let mut fields = expected.field_differences(actual);
        if !self.has_code_marks() {
            fields.retain(|f| f.field != "code");
        }
        fields
    }

    /// `files` as a manifest of this format lists them (v1: without code marks).
    pub fn strip<'a>(self, files: &'a [FileEntry]) -> std::borrow::Cow<'a, [FileEntry]> {
        if self.has_code_marks() || files.iter().all(|f| f.code.is_none()) {
            return std::borrow::Cow::Borrowed(files);
        }
        std::borrow::Cow::Owned(files.iter().map(|f| FileEntry { code: None, ..f.clone() }).collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatementError {
    #[error("statement is not valid JSON of the expected shape")]
    Json(#[source] serde_json::Error),
    #[error("statement _type is {0:?}, expected {STATEMENT_TYPE:?}")]
    Type(String),
    #[error("predicateType is {0:?}, expected {PREDICATE_TYPE:?} or {PREDICATE_TYPE_V1:?}")]
    PredicateType(String),
    /// Code marks exist only from predicate v2 on.
    #[error("entry {path:?} has a code mark, which a {PREDICATE_TYPE_V1:?} manifest cannot carry")]
    CodeMarkInV1 { path: String },
    #[error("statement has no subject with a valid sha256 digest")]
    Subject,
    #[error("expiry {0:?} is not an RFC 3339 UTC time")]
    Expiry(String),
    #[error("file list is not sorted by path bytes or has duplicate paths")]
    FileOrder,
    #[error("reading the statement")]
    Io(#[source] std::io::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: FileManifestPredicate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    pub name: String,
    pub digest: SubjectDigest,
}

/// The in-toto digest set of a subject: imgsign names images by SHA-256 alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectDigest {
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileManifestPredicate {
    /// The image name that rollback protection is keyed on.
    pub name: String,
    /// Monotonic version of this image's signed manifest.
    pub version: u64,
    /// RFC 3339 UTC time after which the signature is no longer accepted.
    pub expires: String,
    pub source: SourceRecord,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceRecord {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<Sha256Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<Sha256Digest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerRecord {
    pub digest: Sha256Digest,
    pub diff_id: Sha256Digest,
}

impl From<&LayerDigests> for LayerRecord {
    fn from(l: &LayerDigests) -> Self {
        Self { digest: l.digest, diff_id: l.diff_id }
    }
}

/// The digest a `dir:` tree is named by: SHA-256 of its canonical file list (hashed as it is
/// serialised, never held whole).
pub fn file_list_digest(files: &[FileEntry]) -> Sha256Digest {
    // Buffered: serde writes many small pieces, and the hasher is fastest on whole blocks.
    let mut hasher = std::io::BufWriter::with_capacity(64 << 10, HashWriter(Sha256::new()));
    serde_json::to_writer(&mut hasher, files).expect("file entries serialise");
    let hasher = hasher.into_inner().unwrap_or_else(|_| unreachable!("hashing never fails"));
    Sha256Digest(hasher.0.finalize().into())
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Statement {
    /// Builds the statement for a scanned image.
    pub fn new(
        identity: &ImageIdentity,
        files: Vec<FileEntry>,
        name: String,
        version: u64,
        expires: SystemTime,
    ) -> Self {
        let subject_digest =
            identity.manifest_digest.or(identity.config_digest).unwrap_or_else(|| file_list_digest(&files));
        let kind = match identity.kind {
            SourceKind::Oci => "oci",
            SourceKind::DockerArchive => "docker-archive",
            SourceKind::Dir => "dir",
            SourceKind::Registry => "registry",
        };
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![Subject { name: name.clone(), digest: SubjectDigest { sha256: subject_digest } }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: FileManifestPredicate {
                name,
                version,
                expires: humantime::format_rfc3339_seconds(expires).to_string(),
                source: SourceRecord {
                    kind: kind.into(),
                    manifest_digest: identity.manifest_digest,
                    config_digest: identity.config_digest,
                    layers: identity.layers.iter().map(LayerRecord::from).collect(),
                },
                files,
            },
        }
    }

    /// Canonical bytes: compact JSON, fields in declaration order, maps sorted.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("statement serialises")
    }

    /// Writes the canonical bytes (the same as [`Statement::to_bytes`]) entry by entry.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(out, self).map_err(std::io::Error::other)
    }

    /// Parses and checks the shape of a statement held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, StatementError> {
        let mut files = Vec::new();
        let header = StatementHeader::read(bytes, &mut |entry| files.push(entry))?;
        Ok(Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: header.subject,
            predicate_type: header.format.predicate_type().into(),
            predicate: FileManifestPredicate {
                name: header.name,
                version: header.version,
                expires: header.expires,
                source: header.source,
                files,
            },
        })
    }

    /// Every sha256 subject digest.
    pub fn subject_digests(&self) -> impl Iterator<Item = Sha256Digest> + '_ {
        self.subject.iter().map(|s| s.digest.sha256)
    }

    /// The predicate's format (a statement that parsed has a known one).
    pub fn format(&self) -> ManifestFormat {
        ManifestFormat::from_predicate_type(&self.predicate_type).unwrap_or_default()
    }

    pub fn expires_at(&self) -> Result<SystemTime, StatementError> {
        parse_expiry(&self.predicate.expires)
    }
}

fn parse_expiry(text: &str) -> Result<SystemTime, StatementError> {
    if !text.ends_with('Z') {
        return Err(StatementError::Expiry(text.to_string()));
    }
    humantime::parse_rfc3339(text).map_err(|_| StatementError::Expiry(text.to_string()))
}

/// A statement without its file list (which is streamed, never held): what the policy checks
/// and reports need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementHeader {
    pub subject: Vec<Subject>,
    /// Which predicate the statement carries (whether its entries have code marks).
    pub format: ManifestFormat,
    /// The image name that rollback protection is keyed on.
    pub name: String,
    pub version: u64,
    /// RFC 3339 UTC, as signed.
    pub expires: String,
    pub expires_at: SystemTime,
    pub source: SourceRecord,
    /// How many entries the file list has.
    pub files: usize,
}

impl StatementHeader {
    /// Parses a statement from `reader`, handing each file entry to `on_file` in order, and checks
    /// its shape: types, a subject, an RFC 3339 UTC expiry, entries strictly sorted by path bytes,
    /// no unknown field, no field twice.
    pub fn read(reader: impl Read, on_file: &mut dyn FnMut(FileEntry)) -> Result<Self, StatementError> {
        let mut order_broken = false;
        // The first entry with a code mark: refused below if the predicate turns out to be v1
        // (the predicate type may come after the file list).
        let mut first_code_mark = None;
        let mut noting_marks = |entry: FileEntry| {
            if entry.code.is_some() && first_code_mark.is_none() {
                first_code_mark = Some(entry.path.clone());
            }
            on_file(entry)
        };
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 << 10, reader));
        let seed = StatementSeed { on_file: &mut noting_marks, order_broken: &mut order_broken };
        let parsed = seed.deserialize(&mut de).and_then(|raw| de.end().map(|()| raw));
        let raw = match parsed {
            Ok(raw) => raw,
            Err(_) if order_broken => return Err(StatementError::FileOrder),
            Err(e) if e.is_io() => return Err(StatementError::Io(e.into())),
            Err(e) => return Err(StatementError::Json(e)),
        };
        if raw.statement_type != STATEMENT_TYPE {
            return Err(StatementError::Type(raw.statement_type));
        }
        let Some(format) = ManifestFormat::from_predicate_type(&raw.predicate_type) else {
            return Err(StatementError::PredicateType(raw.predicate_type));
        };
        if let (false, Some(path)) = (format.has_code_marks(), first_code_mark) {
            return Err(StatementError::CodeMarkInV1 { path });
        }
        if raw.subject.is_empty() {
            return Err(StatementError::Subject);
        }
        let expires_at = parse_expiry(&raw.predicate.expires)?;
        Ok(StatementHeader {
            subject: raw.subject,
            format,
            name: raw.predicate.name,
            version: raw.predicate.version,
            expires: raw.predicate.expires,
            expires_at,
            source: raw.predicate.source,
            files: raw.predicate.files,
        })
    }

    /// Every sha256 subject digest.
    pub fn subject_digests(&self) -> impl Iterator<Item = Sha256Digest> + '_ {
        self.subject.iter().map(|s| s.digest.sha256)
    }
}

/// What the streaming parse keeps.
struct RawStatement {
    statement_type: String,
    subject: Vec<Subject>,
    predicate_type: String,
    predicate: RawPredicate,
}

struct RawPredicate {
    name: String,
    version: u64,
    expires: String,
    source: SourceRecord,
    files: usize,
}

struct StatementSeed<'a> {
    on_file: &'a mut dyn FnMut(FileEntry),
    order_broken: &'a mut bool,
}

/// Reads the next value of a field, refusing a field given twice.
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    name: &'static str,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for StatementSeed<'_> {
    type Value = RawStatement;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawStatement, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StatementSeed<'_> {
    type Value = RawStatement;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an in-toto statement")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawStatement, A::Error> {
        const FIELDS: &[&str] = &["_type", "subject", "predicateType", "predicate"];
        let (mut statement_type, mut subject, mut predicate_type, mut predicate) = (None, None, None, None);
        let StatementSeed { on_file, order_broken } = self;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "_type" => once(&mut map, &mut statement_type, "_type")?,
                "subject" => once(&mut map, &mut subject, "subject")?,
                "predicateType" => once(&mut map, &mut predicate_type, "predicateType")?,
                "predicate" => {
                    if predicate.is_some() {
                        return Err(de::Error::duplicate_field("predicate"));
                    }
                    predicate =
                        Some(map.next_value_seed(PredicateSeed {
                            on_file: &mut *on_file,
                            order_broken: &mut *order_broken,
                        })?);
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(RawStatement {
            statement_type: statement_type.ok_or_else(|| de::Error::missing_field("_type"))?,
            subject: subject.ok_or_else(|| de::Error::missing_field("subject"))?,
            predicate_type: predicate_type.ok_or_else(|| de::Error::missing_field("predicateType"))?,
            predicate: predicate.ok_or_else(|| de::Error::missing_field("predicate"))?,
        })
    }
}

struct PredicateSeed<'a> {
    on_file: &'a mut dyn FnMut(FileEntry),
    order_broken: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for PredicateSeed<'_> {
    type Value = RawPredicate;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawPredicate, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PredicateSeed<'_> {
    type Value = RawPredicate;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a file manifest predicate")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPredicate, A::Error> {
        const FIELDS: &[&str] = &["name", "version", "expires", "source", "files"];
        let (mut name, mut version, mut expires, mut source, mut files) = (None, None, None, None, None);
        let PredicateSeed { on_file, order_broken } = self;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "name" => once(&mut map, &mut name, "name")?,
                "version" => once(&mut map, &mut version, "version")?,
                "expires" => once(&mut map, &mut expires, "expires")?,
                "source" => once(&mut map, &mut source, "source")?,
                "files" => {
                    if files.is_some() {
                        return Err(de::Error::duplicate_field("files"));
                    }
                    files = Some(
                        map.next_value_seed(FilesSeed { on_file: &mut *on_file, order_broken: &mut *order_broken })?,
                    );
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(RawPredicate {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            version: version.ok_or_else(|| de::Error::missing_field("version"))?,
            expires: expires.ok_or_else(|| de::Error::missing_field("expires"))?,
            source: source.ok_or_else(|| de::Error::missing_field("source"))?,
            files: files.ok_or_else(|| de::Error::missing_field("files"))?,
        })
    }
}

/// The file list, entry by entry, each checked to sort strictly after the one before.
struct FilesSeed<'a> {
    on_file: &'a mut dyn FnMut(FileEntry),
    order_broken: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of file entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut previous: Option<String> = None;
        let mut count = 0;
        while let Some(entry) = seq.next_element::<FileEntry>()? {
            if previous.as_ref().is_some_and(|p| p.as_bytes() >= entry.path.as_bytes()) {
                *self.order_broken = true;
                return Err(de::Error::custom("file list is not sorted by path bytes"));
            }
            previous = Some(entry.path.to_string());
            (self.on_file)(entry);
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement_with(files: &str, extra_predicate: &str) -> String {
        statement_of(PREDICATE_TYPE, files, extra_predicate)
    }

    fn statement_of(predicate_type: &str, files: &str, extra_predicate: &str) -> String {
        let digest = "00".repeat(32);
        format!(
            r#"{{"_type":"{STATEMENT_TYPE}","subject":[{{"name":"n","digest":{{"sha256":"{digest}"}}}}],"predicateType":"{predicate_type}","predicate":{{"name":"n","version":1,"expires":"2030-01-01T00:00:00Z","source":{{"kind":"dir"}},"files":[{files}]{extra_predicate}}}}}"#
        )
    }

    fn file(path: &str, code: Option<&str>) -> String {
        let code = code.map_or(String::new(), |c| format!(r#","code":"{c}""#));
        format!(
            r#"{{"path":"{path}","type":"file","mode":"0644","uid":0,"gid":0,"size":0,"sha256":"{}"{code}}}"#,
            "11".repeat(32)
        )
    }

    #[test]
    fn reads_v1_and_v2_and_keeps_each_as_it_was() {
        let v2 = statement_with(&[file("/a", Some("elf")), file("/b", None), file("/c", Some("script"))].join(","), "");
        let parsed = Statement::parse(v2.as_bytes()).unwrap();
        assert_eq!(parsed.format(), ManifestFormat::V2);
        assert_eq!(parsed.predicate.files[0].code, Some(crate::code::CodeKind::Elf));
        assert_eq!(parsed.predicate.files[2].code, Some(crate::code::CodeKind::Script));
        assert_eq!(parsed.to_bytes(), v2.as_bytes(), "v2 round trip");

        let v1 = statement_of(PREDICATE_TYPE_V1, &[file("/a", None), dir("/d")].join(","), "");
        let parsed = Statement::parse(v1.as_bytes()).unwrap();
        assert_eq!(parsed.format(), ManifestFormat::V1);
        assert_eq!(StatementHeader::read(v1.as_bytes(), &mut |_| {}).unwrap().format, ManifestFormat::V1);
        assert_eq!(parsed.to_bytes(), v1.as_bytes(), "v1 round trip stays v1");
    }

    #[test]
    fn refuses_a_code_mark_in_v1_and_unknown_predicates_and_marks() {
        let v1 = statement_of(PREDICATE_TYPE_V1, &[file("/a", None), file("/b", Some("elf"))].join(","), "");
        match Statement::parse(v1.as_bytes()) {
            Err(e @ StatementError::CodeMarkInV1 { .. }) => assert!(e.to_string().contains("\"/b\""), "{e}"),
            other => panic!("{other:?}"),
        }
        // The predicate type after the file list: still refused.
        let late = format!(
            r#"{{"_type":"{STATEMENT_TYPE}","subject":[{{"name":"n","digest":{{"sha256":"{}"}}}}],"predicate":{{"name":"n","version":1,"expires":"2030-01-01T00:00:00Z","source":{{"kind":"dir"}},"files":[{}]}},"predicateType":"{PREDICATE_TYPE_V1}"}}"#,
            "00".repeat(32),
            file("/b", Some("elf"))
        );
        assert!(matches!(Statement::parse(late.as_bytes()), Err(StatementError::CodeMarkInV1 { .. })), "{late}");

        let v3 = statement_of("https://imgsign.dev/file-manifest/v3", &file("/a", None), "");
        assert!(matches!(Statement::parse(v3.as_bytes()), Err(StatementError::PredicateType(_))));
        let bad_mark = statement_with(&file("/a", Some("python")), "");
        assert!(matches!(Statement::parse(bad_mark.as_bytes()), Err(StatementError::Json(_))));
    }

    #[test]
    fn v1_comparison_ignores_the_code_mark_an_image_yields_and_v2_does_not() {
        use crate::code::CodeKind;
        let signed: FileEntry = serde_json::from_str(&file("/bin/sh", None)).unwrap();
        let image = FileEntry { code: Some(CodeKind::Elf), ..signed.clone() };
        assert!(ManifestFormat::V1.field_differences(&signed, &image).is_empty());
        let fields = ManifestFormat::V2.field_differences(&signed, &image);
        assert_eq!(fields.len(), 1);
        assert_eq!((fields[0].field, fields[0].expected.as_str(), fields[0].actual.as_str()), ("code", "-", "elf"));
        let both = [image.clone()];
        assert_eq!(ManifestFormat::V1.strip(&both)[0], signed);
        assert_eq!(ManifestFormat::V2.strip(&both)[0], image);
    }

    fn dir(path: &str) -> String {
        format!(r#"{{"path":"{path}","type":"dir","mode":"0755","uid":0,"gid":0}}"#)
    }

    #[test]
    fn streams_entries_in_order_and_counts_them() {
        let text = statement_with(&[dir("/a"), dir("/a/b"), dir("/b")].join(","), "");
        let mut seen = Vec::new();
        let header = StatementHeader::read(text.as_bytes(), &mut |e| seen.push(e.path.to_string())).unwrap();
        assert_eq!(seen, ["/a", "/a/b", "/b"]);
        assert_eq!(header.files, 3);
        assert_eq!(Statement::parse(text.as_bytes()).unwrap().to_bytes(), text.as_bytes());
    }

    #[test]
    fn refuses_unsorted_or_repeated_paths() {
        for files in [[dir("/b"), dir("/a")], [dir("/a"), dir("/a")]] {
            let text = statement_with(&files.join(","), "");
            assert!(matches!(Statement::parse(text.as_bytes()), Err(StatementError::FileOrder)), "{text}");
        }
    }

    #[test]
    fn refuses_unknown_and_repeated_fields() {
        for extra in [r#","evil":1"#, r#","files":[]"#, r#","name":"other""#] {
            let text = statement_with(&dir("/a"), extra);
            assert!(matches!(Statement::parse(text.as_bytes()), Err(StatementError::Json(_))), "{extra}");
        }
        let text = statement_with(&dir("/a"), "").replacen('{', r#"{"_type":"x","#, 1);
        assert!(Statement::parse(text.as_bytes()).is_err());
    }
}
