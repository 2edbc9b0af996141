//! From a policy to a plan the kernel can take: every bundle verified against the trust store
//! (signatures, threshold, revocation, expiry, rollback), each image checked when the policy
//! names one, each cgroup resolved to its id, and per scope the set of SHA-256 digests allowed to
//! run. One failure refuses the whole plan, naming the scope and the bundle: nothing unverified
//! ever reaches the kernel.
//!
//! A scope's bundles that carry the same statement pool their signatures (as `imgsign verify
//! --bundle a --bundle b` does); bundles of different statements each must verify on their own,
//! and the scope allows the files of all of them. Within one plan an image name may appear at one
//! version only: an older one next to a newer one is a replay.

use crate::cgroup::{cgroup_id, CgroupError};
use crate::policy::{Mode, Policy, ScopeSpec};
use keys::{TrustError, TrustStore};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use verifier_core::bundle::{BundleError, CheckedBundle};
use verifier_core::manifest::FileType;
use verifier_core::progress::NoProgress;
use verifier_core::verify::{accept, verify, verify_statement, Accepted, VerifyError, VerifyOptions};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot open the trust store {path}")]
    Trust {
        path: PathBuf,
        #[source]
        source: Box<TrustError>,
    },
    #[error("scope {scope:?}: cannot read bundle {bundle}")]
    ReadBundle {
        scope: String,
        bundle: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("scope {scope:?}: {bundle} is not a signed manifest bundle")]
    ParseBundle {
        scope: String,
        bundle: PathBuf,
        #[source]
        source: BundleError,
    },
    #[error("scope {scope:?}: bundle {} refused", list(.bundles))]
    Refused {
        scope: String,
        bundles: Vec<PathBuf>,
        #[source]
        source: Box<VerifyError>,
    },
    #[error("scope {scope:?}: bundle {bundle}: {name:?} version {version} is older than version {newer} used by scope {newer_scope:?} of the same plan (replay)")]
    Rollback { scope: String, bundle: PathBuf, name: String, version: u64, newer: u64, newer_scope: String },
    #[error("scope {scope:?}: image {image} is given but the scope's bundles carry {statements} different statements; give the image's bundle(s) only")]
    ImageAmbiguous { scope: String, image: String, statements: usize },
    #[error("scope {scope:?}: image {image} does not match bundle {}: {failures}", list(.bundles))]
    ImageMismatch { scope: String, image: String, bundles: Vec<PathBuf>, failures: String },
    #[error("scope {scope:?}: reading image {image}")]
    Image {
        scope: String,
        image: String,
        #[source]
        source: Box<VerifyError>,
    },
    #[error("scope {scope:?}: bundle {bundle}: entry {path} has no valid sha256")]
    Digest { scope: String, bundle: PathBuf, path: String },
    #[error("scope {scope:?}: cgroup")]
    Cgroup {
        scope: String,
        #[source]
        source: CgroupError,
    },
    #[error("scopes {first:?} and {second:?} resolve to the same cgroup (id {id})")]
    SameCgroup { first: String, second: String, id: u64 },
}

impl PlanError {
    /// Whether the plan was refused because something did not verify (as opposed to input that
    /// could not be read at all).
    pub fn is_verification_failure(&self) -> bool {
        matches!(self, PlanError::Refused { .. } | PlanError::Rollback { .. } | PlanError::ImageMismatch { .. })
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ")
}

/// What the kernel is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub policy: PathBuf,
    pub pin_dir: PathBuf,
    pub scopes: Vec<ScopePlan>,
    /// Accepted version per image name (to record in the trust store once applied).
    pub versions: BTreeMap<String, u64>,
}

/// One scope, ready for the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopePlan {
    pub name: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub mode: Mode,
    /// Every `file` and `hardlink` digest of the scope's signed manifests, once each.
    #[serde(serialize_with = "hex_digests")]
    pub digests: BTreeSet<[u8; 32]>,
    pub manifests: Vec<ManifestInfo>,
}

/// A verified statement a scope draws from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestInfo {
    pub bundles: Vec<PathBuf>,
    pub name: String,
    pub version: u64,
    pub expires: String,
    pub subject: Option<String>,
    pub signers: Vec<String>,
    pub files: usize,
    /// The image whose files were compared with the manifest, when the policy named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// What recording this manifest as accepted writes (see [`record_versions`]).
    #[serde(skip)]
    pub accepted: Accepted,
}

fn hex_digests<S: Serializer>(digests: &BTreeSet<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(digests.iter().map(hex::encode))
}

impl Plan {
    /// The scope keyed by this cgroup id.
    pub fn scope_by_cgroup_id(&self, id: u64) -> Option<&ScopePlan> {
        self.scopes.iter().find(|s| s.cgroup_id == id)
    }

    /// When the first of its manifests expires (RFC 3339), if any.
    pub fn earliest_expiry(&self) -> Option<&str> {
        self.scopes.iter().flat_map(|s| &s.manifests).map(|m| m.expires.as_str()).min()
    }
}

/// Verifies everything the policy names and builds the plan, as of `now`.
pub fn build(policy: &Policy, now: SystemTime) -> Result<Plan, PlanError> {
    let mut trust = TrustStore::open(&policy.trust)
        .map_err(|e| PlanError::Trust { path: policy.trust.clone(), source: Box::new(e) })?;
    let mut scopes = Vec::new();
    for spec in &policy.scopes {
        scopes.push(build_scope(spec, &mut trust, now)?);
    }

    // One version per image name within the plan.
    let mut versions: BTreeMap<String, (u64, &str)> = BTreeMap::new();
    for scope in &scopes {
        for m in &scope.manifests {
            let entry = versions.entry(m.name.clone()).or_insert((m.version, &scope.name));
            if m.version > entry.0 {
                *entry = (m.version, &scope.name);
            }
        }
    }
    for scope in &scopes {
        for m in &scope.manifests {
            let (newer, newer_scope) = versions[&m.name];
            if m.version < newer {
                return Err(PlanError::Rollback {
                    scope: scope.name.clone(),
                    bundle: m.bundles[0].clone(),
                    name: m.name.clone(),
                    version: m.version,
                    newer,
                    newer_scope: newer_scope.to_string(),
                });
            }
        }
    }
    for (i, a) in scopes.iter().enumerate() {
        if let Some(b) = scopes[..i].iter().find(|b| b.cgroup_id == a.cgroup_id) {
            return Err(PlanError::SameCgroup { first: b.name.clone(), second: a.name.clone(), id: a.cgroup_id });
        }
    }
    let versions = versions.into_iter().map(|(name, (version, _))| (name, version)).collect();
    Ok(Plan { policy: policy.path.clone(), pin_dir: policy.pin_dir.clone(), scopes, versions })
}

fn build_scope(spec: &ScopeSpec, trust: &mut TrustStore, now: SystemTime) -> Result<ScopePlan, PlanError> {
    let scope = || spec.name.clone();
    // Group the bundles by the statement they carry.
    let mut groups: Vec<(Vec<PathBuf>, Vec<CheckedBundle>)> = Vec::new();
    for path in &spec.bundles {
        let bundle = CheckedBundle::read(path).map_err(|e| match e {
            BundleError::Read { source, .. } => PlanError::ReadBundle { scope: scope(), bundle: path.clone(), source },
            source => PlanError::ParseBundle { scope: scope(), bundle: path.clone(), source },
        })?;
        let same = |b: &CheckedBundle| b.payload().digest() == bundle.payload().digest();
        match groups.iter_mut().find(|(_, bundles)| same(&bundles[0])) {
            Some((paths, bundles)) => {
                paths.push(path.clone());
                bundles.push(bundle);
            }
            None => groups.push((vec![path.clone()], vec![bundle])),
        }
    }
    if let Some(image) = &spec.image {
        if groups.len() != 1 {
            return Err(PlanError::ImageAmbiguous {
                scope: scope(),
                image: image.to_string(),
                statements: groups.len(),
            });
        }
    }

    let mut digests = BTreeSet::new();
    let mut manifests = Vec::new();
    for (paths, bundles) in &groups {
        let statement = verify_statement(bundles, trust, now).map_err(|e| PlanError::Refused {
            scope: scope(),
            bundles: paths.clone(),
            source: Box::new(e),
        })?;
        let mut image_checked = None;
        if let Some(image) = &spec.image {
            let options = VerifyOptions { now, record_version: false };
            let full = verify(image, bundles, trust, &options, Arc::new(NoProgress)).map_err(|e| PlanError::Image {
                scope: scope(),
                image: image.to_string(),
                source: Box::new(e),
            })?;
            if !full.verified {
                let mut failures: Vec<String> = full.failures().map(|c| format!("{}: {}", c.name, c.detail)).collect();
                failures.extend(full.differences.iter().take(5).map(|d| format!("{} differs", d.path())));
                return Err(PlanError::ImageMismatch {
                    scope: scope(),
                    image: image.to_string(),
                    bundles: paths.clone(),
                    failures: failures.join("; "),
                });
            }
            image_checked = Some(image.to_string());
        }
        let mut missing = None;
        statement
            .for_each_file(&mut |entry| {
                if matches!(entry.kind, FileType::File | FileType::Hardlink) {
                    match entry.sha256 {
                        Some(digest) => drop(digests.insert(digest.0)),
                        None => missing = missing.take().or(Some(entry.path.to_string())),
                    }
                }
            })
            .map_err(|e| PlanError::Refused {
                scope: scope(),
                bundles: paths.clone(),
                source: Box::new(VerifyError::Statement(e)),
            })?;
        if let Some(path) = missing {
            return Err(PlanError::Digest { scope: scope(), bundle: paths[0].clone(), path });
        }
        let header = statement.header();
        manifests.push(ManifestInfo {
            bundles: paths.clone(),
            name: header.name.clone(),
            version: header.version,
            expires: header.expires.clone(),
            subject: Some(statement.subject().oci()),
            signers: statement.signers().map(ToString::to_string).collect(),
            files: header.files,
            image: image_checked,
            accepted: statement.accepted(),
        });
    }
    let cgroup_id = cgroup_id(&spec.cgroup).map_err(|source| PlanError::Cgroup { scope: scope(), source })?;
    Ok(ScopePlan {
        name: spec.name.clone(),
        cgroup: spec.cgroup.clone(),
        cgroup_id,
        mode: spec.mode,
        digests,
        manifests,
    })
}

/// Records each accepted version of `plan` in the trust store at `trust_dir` (rollback
/// protection), once the plan is in force.
pub fn record_versions(plan: &Plan, trust_dir: &Path) -> Result<(), PlanError> {
    let trust_err = |e| PlanError::Trust { path: trust_dir.to_path_buf(), source: Box::new(e) };
    let mut trust = TrustStore::open(trust_dir).map_err(trust_err)?;
    let manifests = plan.scopes.iter().flat_map(|s| &s.manifests);
    accept(&mut trust, manifests.map(|m| &m.accepted)).map_err(trust_err)
}
