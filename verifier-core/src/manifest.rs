//! The per-file manifest: one entry per path of the flattened image, sorted by path bytes, with
//! everything that decides what a file can do once it runs (content digest, full mode including
//! setuid/setgid/sticky, owner, link targets, device numbers, `security.capability`).
//!
//! Regular files (and hardlinks) whose content is code carry a `code` mark (see
//! [`crate::code`]); it is signed and verified like every other field, and only manifests of
//! predicate v2 carry it ([`crate::statement::ManifestFormat`]).
//!
//! The same tree always serialises to the same bytes: entries are sorted, optional fields are
//! omitted when absent, and maps are ordered.

pub use crate::code::CodeKind;
use crate::digest::Sha256Digest;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The extended attributes that change privilege and are therefore signed.
pub const SIGNED_XATTRS: &[&str] = &["security.capability"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    File,
    Hardlink,
    Symlink,
    Dir,
    Char,
    Block,
    Fifo,
}

/// One path of the image as a runtime would see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileEntry {
    /// Absolute path inside the image, e.g. `/usr/bin/env`.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: FileType,
    /// Permission bits as four octal digits, setuid/setgid/sticky included (`"4755"`).
    #[serde(with = "octal_mode")]
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Content size, for files and hardlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the content, for files and hardlinks (written as bare lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "crate::digest::bare_hex_opt")]
    pub sha256: Option<Sha256Digest>,
    /// For files and hardlinks whose content is an ELF object or a `#!` script: which one
    /// (predicate v2 only). What the enforcer loads depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeKind>,
    /// Target of a symlink (as stored) or of a hardlink (an absolute image path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_major: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_minor: Option<u32>,
    /// Privilege xattrs (see [`SIGNED_XATTRS`]), values base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

impl FileEntry {
    /// Keeps only the xattrs that are signed and encodes their values.
    pub fn signed_xattrs(raw: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
        raw.iter()
            .filter(|(k, _)| SIGNED_XATTRS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), base64::engine::general_purpose::STANDARD.encode(v)))
            .collect()
    }

    /// The raw bytes of the signed xattr `name` (the manifest holds them base64, as
    /// [`FileEntry::signed_xattrs`] wrote them); `None` when the entry has none.
    pub fn xattr_bytes(&self, name: &str) -> Option<Result<Vec<u8>, base64::DecodeError>> {
        self.xattrs.get(name).map(|b64| base64::engine::general_purpose::STANDARD.decode(b64))
    }

    /// Pairs of (field, expected, actual) for every field that differs.
    pub fn field_differences(&self, actual: &FileEntry) -> Vec<FieldDifference> {
        let mut out = Vec::new();
        let mut cmp = |field: &'static str, a: String, b: String| {
            if a != b {
                out.push(FieldDifference { field, expected: a, actual: b });
            }
        };
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let optn = |v: Option<u64>| v.map_or("-".into(), |n| n.to_string());
        cmp("type", format!("{:?}", self.kind).to_lowercase(), format!("{:?}", actual.kind).to_lowercase());
        cmp("mode", format!("{:04o}", self.mode), format!("{:04o}", actual.mode));
        cmp("uid", self.uid.to_string(), actual.uid.to_string());
        cmp("gid", self.gid.to_string(), actual.gid.to_string());
        cmp("size", optn(self.size), optn(actual.size));
        let digest = |v: &Option<Sha256Digest>| v.map_or("-".into(), |d| d.hex());
        cmp("sha256", digest(&self.sha256), digest(&actual.sha256));
        let code = |v: Option<CodeKind>| v.map_or("-", CodeKind::as_str).to_string();
        cmp("code", code(self.code), code(actual.code));
        cmp("linkTarget", opt(&self.link_target), opt(&actual.link_target));
        cmp("devMajor", optn(self.dev_major.map(u64::from)), optn(actual.dev_major.map(u64::from)));
        cmp("devMinor", optn(self.dev_minor.map(u64::from)), optn(actual.dev_minor.map(u64::from)));
        cmp("xattrs", format!("{:?}", self.xattrs), format!("{:?}", actual.xattrs));
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDifference {
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// How one path differs between the signed manifest and the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Difference {
    /// Signed but not in the image.
    Missing { path: String },
    /// In the image but not signed.
    Extra { path: String },
    /// In both, with different fields.
    Changed { path: String, fields: Vec<FieldDifference> },
}

impl Difference {
    pub fn path(&self) -> &str {
        match self {
            Difference::Missing { path } | Difference::Extra { path } | Difference::Changed { path, .. } => path,
        }
    }
}

/// Compares two manifests sorted by path bytes.
pub fn compare(expected: &[FileEntry], actual: &[FileEntry]) -> Vec<Difference> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        let order = match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) => e.path.as_bytes().cmp(a.path.as_bytes()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                out.push(Difference::Missing { path: expected[i].path.clone() });
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(Difference::Extra { path: actual[j].path.clone() });
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let fields = expected[i].field_differences(&actual[j]);
                if !fields.is_empty() {
                    out.push(Difference::Changed { path: expected[i].path.clone(), fields });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Makes hardlink groups canonical, whatever order the source listed them in: among the entries
/// sharing an inode (`inodes[i]` is entry `i`'s), the first path in byte order is the `file` and
/// the others are `hardlink`s to it; a group of one is a plain `file`. `entries` must be sorted.
pub fn canonicalize_hardlinks<K: Eq + std::hash::Hash + Copy, E: std::borrow::BorrowMut<FileEntry>>(
    entries: &mut [E],
    inodes: &[Option<K>],
) {
    let mut first_path: std::collections::HashMap<K, String> = std::collections::HashMap::new();
    let mut group_size: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    for inode in inodes.iter().flatten() {
        *group_size.entry(*inode).or_default() += 1;
    }
    for (entry, inode) in entries.iter_mut().zip(inodes) {
        let entry: &mut FileEntry = entry.borrow_mut();
        let Some(inode) = inode else { continue };
        if !matches!(entry.kind, FileType::File | FileType::Hardlink) {
            continue;
        }
        match first_path.get(inode) {
            Some(first) => {
                entry.kind = FileType::Hardlink;
                entry.link_target = Some(first.clone());
            }
            None => {
                entry.kind = FileType::File;
                entry.link_target = None;
                if group_size[inode] > 1 {
                    first_path.insert(*inode, entry.path.clone());
                }
            }
        }
    }
}

/// True if entries are strictly increasing by path bytes (sorted, no duplicates).
pub fn is_canonical_order(entries: &[FileEntry]) -> bool {
    entries.windows(2).all(|w| w[0].path.as_bytes() < w[1].path.as_bytes())
}

mod octal_mode {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let text = String::deserialize(d)?;
        match u32::from_str_radix(&text, 8) {
            Ok(v) if v <= 0o7777 && text.len() == 4 => Ok(v),
            _ => Err(D::Error::custom(format!("mode {text:?} is not four octal digits"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: u8) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileType::File,
            mode: 0o4755,
            uid: 0,
            gid: 0,
            size: Some(3),
            sha256: Some(Sha256Digest([sha; 32])),
            code: None,
            link_target: None,
            dev_major: None,
            dev_minor: None,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn serialises_mode_as_octal_and_omits_absent_fields() {
        let json = serde_json::to_string(&file("/a", 0)).unwrap();
        assert_eq!(
            json,
            r#"{"path":"/a","type":"file","mode":"4755","uid":0,"gid":0,"size":3,"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#
        );
        let back: FileEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, file("/a", 0));
    }

    #[test]
    fn a_code_mark_is_serialised_after_the_digest_and_compared() {
        let elf = FileEntry { code: Some(CodeKind::Elf), ..file("/a", 0) };
        let json = serde_json::to_string(&elf).unwrap();
        assert!(
            json.ends_with(
                r#""sha256":"0000000000000000000000000000000000000000000000000000000000000000","code":"elf"}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<FileEntry>(&json).unwrap(), elf);
        let fields = file("/a", 0).field_differences(&elf);
        assert_eq!(fields, vec![FieldDifference { field: "code", expected: "-".into(), actual: "elf".into() }]);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_modes() {
        assert!(serde_json::from_str::<FileEntry>(
            r#"{"path":"/a","type":"dir","mode":"0755","uid":0,"gid":0,"evil":1}"#
        )
        .is_err());
        assert!(serde_json::from_str::<FileEntry>(r#"{"path":"/a","type":"dir","mode":"99","uid":0,"gid":0}"#).is_err());
    }

    #[test]
    fn compare_lists_missing_extra_and_changed() {
        let expected = vec![file("/a", 1), file("/b", 2), file("/c", 3)];
        let actual = vec![file("/b", 2), file("/c", 4), file("/d", 5)];
        let diffs = compare(&expected, &actual);
        assert_eq!(diffs.len(), 3);
        assert_eq!(diffs[0], Difference::Missing { path: "/a".into() });
        assert!(
            matches!(&diffs[1], Difference::Changed { path, fields } if path == "/c" && fields[0].field == "sha256")
        );
        assert_eq!(diffs[2], Difference::Extra { path: "/d".into() });
    }
}
