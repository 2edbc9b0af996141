//! OCI 1.1 referrers: artifacts attached to a manifest (their `subject`), as the distribution
//! spec 1.1 stores and lists them.
//!
//! Pushing writes the artifact (the empty config `{}`, one layer holding the payload, an image
//! manifest with `artifactType` and `subject`) by digest, then makes it discoverable: a registry
//! with the referrers API (`GET /v2/NAME/referrers/DIGEST` answers) indexes it itself; for one
//! without (Debian's distribution 2.8), the referrers tag schema's index under the tag
//! `sha256-<hex of the subject>` is read, extended and written back, then read again to check the
//! entry survived a concurrent writer (retried a few times).
//!
//! The tag schema has no conditional write: two writers that read the index before either
//! wrote it can still drop each other's entry. So each artifact is also tagged on its own,
//! `sha256-<subject hex>.<first 32 hex of its digest>` (a tag no other writer touches); every
//! push rewrites the index as the union of what it lists and those tags, and listing without
//! the referrers API returns that union too. A lost index entry is thus still discovered, and
//! the next push puts it back in the index for generic OCI clients.
//!
//! Listing asks the referrers API first and falls back to the tag schema on 404; answers are read
//! under the manifest cap, and every referrer is later fetched by digest and checked.

use crate::client::{Registry, RegistryError, MAX_MANIFEST};
use crate::reference::{Digest, Target};
use serde_json::{json, Value};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The empty descriptor's media type and content (`{}`), the config of an artifact.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY: &[u8] = b"{}";
/// How often a tag-schema index is rewritten when a concurrent writer dropped our entry.
const TAG_RETRIES: usize = 5;

/// How a pushed referrer became discoverable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discoverable {
    /// The registry's referrers API lists it.
    ReferrersApi,
    /// The `sha256-<hex>` tag schema index lists it.
    TagSchema,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
}

impl Registry {
    /// Attaches `payload` (one layer of `media_type`) to the manifest `subject` as an artifact of
    /// `artifact_type`, and makes it discoverable. Returns the artifact manifest's digest.
    pub fn push_referrer(
        &self,
        subject: Digest,
        artifact_type: &str,
        media_type: &str,
        payload: &[u8],
    ) -> Result<(Digest, Discoverable), RegistryError> {
        let subject_manifest = self.manifest(&Target::Digest(subject), None)?;
        let subject_type = declared_type(&subject_manifest.bytes)
            .or(subject_manifest.media_type.clone())
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        self.push_blob(EMPTY)?;
        let payload_digest = self.push_blob(payload)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": Digest::of(EMPTY).to_string(), "size": EMPTY.len()},
            "layers": [{"mediaType": media_type, "digest": payload_digest.to_string(), "size": payload.len()}],
            "subject": {"mediaType": subject_type, "digest": subject.to_string(), "size": subject_manifest.bytes.len()},
        });
        let bytes = serde_json::to_vec(&manifest).expect("JSON of a json! value");
        let digest = Digest::of(&bytes);
        self.push_manifest(&Target::Digest(digest), bytes.clone(), OCI_MANIFEST)?;
        if self.referrers_api(subject)?.is_some() {
            return Ok((digest, Discoverable::ReferrersApi));
        }
        self.push_manifest(&Target::Tag(own_tag(subject, digest)), bytes.clone(), OCI_MANIFEST)?;
        let entry = Referrer { digest, size: bytes.len() as u64, artifact_type: Some(artifact_type.to_string()) };
        self.add_to_tag_index(subject, &entry)?;
        Ok((digest, Discoverable::TagSchema))
    }

    /// The referrers of `subject` of `artifact_type`: from the referrers API, else from the tag
    /// schema index; none if there is neither.
    pub fn referrers(&self, subject: Digest, artifact_type: &str) -> Result<Vec<Referrer>, RegistryError> {
        let listed = match self.referrers_api(subject)? {
            Some(index) => entries(&index),
            None => union(entries(&self.tag_index(subject)?.unwrap_or_else(empty_index)), self.tagged(subject)?),
        };
        Ok(listed.into_iter().filter(|r| r.artifact_type.as_deref() == Some(artifact_type)).collect())
    }

    /// The artifacts tagged `sha256-<subject hex>.*` whose manifest names `subject`.
    fn tagged(&self, subject: Digest) -> Result<Vec<Referrer>, RegistryError> {
        let prefix = format!("sha256-{}.", subject.hex());
        let mut found = Vec::new();
        for tag in self.tags()?.into_iter().filter(|t| t.starts_with(&prefix)) {
            let manifest = match self.manifest(&Target::Tag(tag), None) {
                Ok(m) => m,
                // Deleted between the listing and now.
                Err(RegistryError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(parsed) = serde_json::from_slice::<Value>(&manifest.bytes) else { continue };
            if parsed["subject"]["digest"].as_str() != Some(subject.to_string().as_str()) {
                continue;
            }
            found.push(Referrer {
                digest: manifest.digest,
                size: manifest.bytes.len() as u64,
                artifact_type: parsed["artifactType"].as_str().map(str::to_string),
            });
        }
        Ok(found)
    }

    /// The repository's tags (`/v2/NAME/tags/list`, read under the manifest cap).
    fn tags(&self) -> Result<Vec<String>, RegistryError> {
        let what = format!("tags of {}/{}", self.reference().host(), self.reference().repository());
        let body = match self.get_capped("tags/list", &what, &["application/json"], MAX_MANIFEST) {
            Ok(body) => body,
            // A repository without tags, or a registry without the listing: no tagged artifacts.
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let list: Value = serde_json::from_slice(&body.bytes)
            .map_err(|_| RegistryError::Invalid { what: what.clone(), reason: "not JSON".into() })?;
        Ok(list["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect())
    }

    /// The payload of a referrer: its manifest fetched by digest and size (checked), then its one
    /// layer of `media_type`, read under `limit` and checked against its digest and size.
    pub fn referrer_payload(
        &self,
        referrer: &Referrer,
        media_type: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let manifest = self.manifest(&Target::Digest(referrer.digest), Some(referrer.size))?;
        let what = format!("referrer {}", referrer.digest);
        let parsed: Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|_| RegistryError::Invalid { what: what.clone(), reason: "not JSON".into() })?;
        let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
        let [layer] = layers.as_slice() else {
            return Err(RegistryError::Invalid { what, reason: format!("{} layers, expected one", layers.len()) });
        };
        if layer["mediaType"].as_str() != Some(media_type) {
            return Err(RegistryError::Invalid { what, reason: format!("its layer is not {media_type}") });
        }
        let (Some(digest), Some(size)) = (layer["digest"].as_str().and_then(Digest::parse), layer["size"].as_u64())
        else {
            return Err(RegistryError::Invalid { what, reason: "its layer has no sha256 digest or size".into() });
        };
        self.small_blob(digest, size, limit)
    }

    /// `Some(index)` when the registry has the referrers API, `None` when it answers 404.
    fn referrers_api(&self, subject: Digest) -> Result<Option<Value>, RegistryError> {
        let path = format!("referrers/{subject}");
        match self.get_capped(&path, &format!("referrers of {subject}"), &[OCI_INDEX], MAX_MANIFEST) {
            Ok(body) => Ok(Some(parse_index(&body.bytes, &format!("referrers of {subject}"))?)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tag schema index of `subject`, if the tag exists.
    fn tag_index(&self, subject: Digest) -> Result<Option<Value>, RegistryError> {
        let tag = Target::Tag(format!("sha256-{}", subject.hex()));
        match self.manifest(&tag, None) {
            Ok(m) => Ok(Some(parse_index(&m.bytes, &format!("referrers tag sha256-{}", subject.hex()))?)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rewrites the tag schema index as the union of its entries, the individually tagged
    /// artifacts and `entry`, until a re-read lists `entry`.
    fn add_to_tag_index(&self, subject: Digest, entry: &Referrer) -> Result<(), RegistryError> {
        let tag = Target::Tag(format!("sha256-{}", subject.hex()));
        let listed = |index: &Value| entries(index).iter().any(|e| e.digest == entry.digest);
        for _ in 0..TAG_RETRIES {
            let current = self.tag_index(subject)?.unwrap_or_else(empty_index);
            let all = union(union(entries(&current), self.tagged(subject)?), vec![entry.clone()]);
            if all.len() != entries(&current).len() {
                let manifests: Vec<Value> = all
                    .iter()
                    .map(|r| {
                        json!({"mediaType": OCI_MANIFEST, "digest": r.digest.to_string(), "size": r.size, "artifactType": r.artifact_type})
                    })
                    .collect();
                let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
                self.push_manifest(&tag, serde_json::to_vec(&index).expect("JSON of a Value"), OCI_INDEX)?;
            }
            if self.tag_index(subject)?.as_ref().is_some_and(listed) {
                return Ok(());
            }
        }
        Err(RegistryError::Invalid {
            what: format!("referrers tag sha256-{}", subject.hex()),
            reason: format!(
                "other writers kept replacing it; {} is pushed and tagged but not in the index",
                entry.digest
            ),
        })
    }
}

/// The tag that holds one artifact of `subject` on its own.
fn own_tag(subject: Digest, artifact: Digest) -> String {
    format!("sha256-{}.{}", subject.hex(), &artifact.hex()[..32])
}

/// The well-formed entries of an index (sha256 digest and size present).
fn entries(index: &Value) -> Vec<Referrer> {
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(Referrer {
                digest: Digest::parse(e["digest"].as_str()?)?,
                size: e["size"].as_u64()?,
                artifact_type: e["artifactType"].as_str().map(str::to_string),
            })
        })
        .collect()
}

/// `a` then the entries of `b` whose digest `a` does not list.
fn union(mut a: Vec<Referrer>, b: Vec<Referrer>) -> Vec<Referrer> {
    for r in b {
        if !a.iter().any(|x| x.digest == r.digest) {
            a.push(r);
        }
    }
    a
}

fn empty_index() -> Value {
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
}

fn parse_index(bytes: &[u8], what: &str) -> Result<Value, RegistryError> {
    let index: Value = serde_json::from_slice(bytes)
        .map_err(|_| RegistryError::Invalid { what: what.to_string(), reason: "not JSON".into() })?;
    if !index["manifests"].is_array() {
        return Err(RegistryError::Invalid { what: what.to_string(), reason: "not an image index".into() });
    }
    Ok(index)
}

fn declared_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes).ok()?["mediaType"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referrer(n: u8) -> Referrer {
        Referrer { digest: Digest::from_bytes([n; 32]), size: u64::from(n), artifact_type: Some("t".into()) }
    }

    #[test]
    fn union_keeps_order_and_drops_repeats() {
        let merged = union(vec![referrer(1), referrer(2)], vec![referrer(2), referrer(3)]);
        assert_eq!(merged, vec![referrer(1), referrer(2), referrer(3)]);
    }

    #[test]
    fn index_entries_without_sha256_digest_or_size_are_ignored() {
        let index = json!({"manifests": [
            {"digest": Digest::from_bytes([1; 32]).to_string(), "size": 1, "artifactType": "t"},
            {"digest": "sha512:00", "size": 1},
            {"digest": Digest::from_bytes([2; 32]).to_string()},
        ]});
        assert_eq!(entries(&index), vec![referrer(1)]);
    }

    #[test]
    fn own_tag_is_a_valid_tag_under_the_subject() {
        let tag = own_tag(Digest::from_bytes([0xab; 32]), Digest::from_bytes([0xcd; 32]));
        assert!(tag.starts_with(&format!("sha256-{}.", "ab".repeat(32))));
        assert!(tag.len() <= 128);
    }
}
