//! From scope specs to a verified plan: every bundle verified against the trust store
//! (signatures, threshold, revocation, expiry, rollback; through [`crate::verified`], cached per
//! statement), each image checked when a scope names one, each cgroup resolved to its id, and
//! per scope the set of SHA-256 digests allowed to run. One failure refuses the whole plan,
//! naming the scope and the bundle: nothing unverified ever reaches the kernel. The kernel is
//! given only [`Plan::desired`]; the rest of the plan (names, manifests, versions) is for
//! reports and for the rollback record.
//!
//! A scope's bundles that carry the same statement pool their signatures (as `imgsign verify
//! --bundle a --bundle b` does); bundles of different statements each must verify on their own,
//! and the scope allows the files of all of them. Within one plan an image name may appear at one
//! version only: an older one next to a newer one is a replay.
//!
//! A scope that names a registry image and no bundle files takes the bundles attached to that
//! image ([`crate::discovered`]); they are then verified exactly as files are. Its image's files
//! are not downloaded and compared: the accepted statement's subject is the manifest digest the
//! registry serves for the reference, which names every layer, and what the kernel allows is the
//! signed manifest's digests either way.

use crate::cgroup::{cgroup_id, CgroupError};
use crate::desired::{DesiredScope, DesiredState, DigestSet, Privs};
use crate::policy::{Mode, Policy, Profile, Violation};
use crate::source::ScopeSpec;
use crate::verified::{self, Accepted, BundleFile, StatementCache, Trust, VerifiedError};
use keys::TrustError;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use verifier_core::digest::Sha256Digest;
use verifier_core::source::ImageRef;

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
        source: VerifiedError,
    },
    #[error("scope {scope:?}: bundle {} refused", list(.bundles))]
    Refused {
        scope: String,
        bundles: Vec<PathBuf>,
        #[source]
        source: Box<VerifiedError>,
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
        source: Box<VerifiedError>,
    },
    #[error("scope {scope:?}: bundle {bundle}: entry {path} has no valid sha256")]
    Digest { scope: String, bundle: PathBuf, path: String },
    #[error("scope {scope:?}")]
    Discovery {
        scope: String,
        #[source]
        source: crate::discovered::DiscoveryError,
    },
    #[error("scope {scope:?}: cgroup")]
    Cgroup {
        scope: String,
        #[source]
        source: CgroupError,
    },
    #[error("scope {scope:?}: cgroup {cgroup} is at level {level} of the cgroup hierarchy (the root is 0); the enforcer's programs look for scopes down to level {max} only, so its tasks would be unenforced: choose a cgroup nearer the root")]
    TooDeep { scope: String, cgroup: PathBuf, level: usize, max: usize },
    #[error("scopes {first:?} and {second:?} resolve to the same cgroup (id {id})")]
    SameCgroup { first: String, second: String, id: u64 },
    #[error("scope {scope:?}: bundle {bundle}")]
    Unexpected {
        scope: String,
        bundle: PathBuf,
        #[source]
        source: Box<VerifiedError>,
    },
}

impl PlanError {
    /// Whether the plan was refused because something did not verify (as opposed to input that
    /// could not be read at all).
    pub fn is_verification_failure(&self) -> bool {
        use crate::discovered::DiscoveryError;
        matches!(
            self,
            PlanError::Refused { .. }
                | PlanError::Rollback { .. }
                | PlanError::ImageMismatch { .. }
                | PlanError::Discovery {
                    source: DiscoveryError::Nothing { .. } | DiscoveryError::Untrusted { .. },
                    ..
                }
        )
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ")
}

/// A verified plan: what the node enforces, with what it was verified from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub policy: PathBuf,
    pub pin_dir: PathBuf,
    pub scopes: Vec<ScopePlan>,
    /// Accepted version per image name (to record in the trust store once applied).
    pub versions: BTreeMap<String, u64>,
    /// The runtime helpers every scope that verified allows besides its signed set (see
    /// [`Plan::add_helpers`]); none until the daemon adds what it hashed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runtime_helpers: Vec<crate::helpers::Helper>,
}

/// One verified scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScopePlan {
    pub name: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub mode: Mode,
    /// Code from remote file systems is judged by digest instead of refused.
    pub remote_fs: bool,
    pub profile: Profile,
    /// What the daemon does to the cgroup on a violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_violation: Option<Violation>,
    /// The container the cgroup is, when a runtime said so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<crate::control::ContainerInfo>,
    /// Every `file` and `hardlink` digest of the scope's signed manifests, once each (shared with
    /// the verified statement when the scope has one).
    #[serde(serialize_with = "hex_digests")]
    pub digests: Arc<DigestSet>,
    /// The digests whose signed entries give privileges (setuid, setgid, file capabilities):
    /// what an operator reviewing a plan looks at first.
    #[serde(serialize_with = "hex_list")]
    pub privileged: Vec<Sha256Digest>,
    pub manifests: Vec<ManifestInfo>,
    /// Why the scope holds no digests: its bundles no longer verify (a revoked key, an expired
    /// manifest, a bundle gone or broken). It fails closed: every exec and executable mapping
    /// in it is denied (enforce) or reported (audit) until it verifies again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// A scope that could not be built as asked (see [`assemble_each`]).
#[derive(Debug)]
pub struct ScopeFailure {
    pub scope: String,
    pub error: PlanError,
    /// In the plan with no digests (its cgroup exists), or left out (its cgroup does not).
    pub fail_closed: bool,
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

fn hex_digests<S: Serializer>(digests: &Arc<DigestSet>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(digests.keys().map(|d| d.hex()))
}

fn hex_list<S: Serializer>(digests: &[Sha256Digest], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(digests.iter().map(|d| d.hex()))
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

    /// Adds the runtime helpers' digests ([`crate::helpers`]) to the set of every scope that
    /// verified, policy and control scopes alike, `deny_unknown` parents included (a runtime
    /// that clones its init into a container's cgroup before the container's own scope exists
    /// is judged by that parent); a scope that failed closed stays empty. A helper digest the
    /// signed set already holds keeps its signed privileges; one it adds gives none. Scopes that
    /// shared a set share the widened one (one `Arc` per distinct set in, one out), so the kernel
    /// still holds one set per image ([`crate::bpf::transition`]). Pure: the daemon hashes the
    /// files. Called once, on a plan fresh from [`assemble_each`].
    pub fn add_helpers(&mut self, helpers: &[crate::helpers::Helper]) {
        self.runtime_helpers = helpers.to_vec();
        if helpers.is_empty() {
            return;
        }
        let mut widened: Vec<(Arc<DigestSet>, Arc<DigestSet>)> = Vec::new();
        for scope in self.scopes.iter_mut().filter(|s| s.failed.is_none()) {
            let done = widened.iter().find(|(from, _)| Arc::ptr_eq(from, &scope.digests) || **from == *scope.digests);
            let to = match done {
                Some((_, to)) => to.clone(),
                None => {
                    let mut set = (*scope.digests).clone();
                    for helper in helpers {
                        set.entry(helper.sha256).or_insert(Privs::NONE);
                    }
                    let to = Arc::new(set);
                    widened.push((scope.digests.clone(), to.clone()));
                    to
                }
            };
            scope.digests = to;
        }
    }

    /// What the kernel is given: per cgroup id, the mode, the remote-fs opt-in and the digest set.
    pub fn desired(&self) -> DesiredState {
        let scopes = self
            .scopes
            .iter()
            .map(|s| {
                let scope = DesiredScope {
                    mode: s.mode,
                    profile: s.profile,
                    remote_fs: s.remote_fs,
                    digests: s.digests.clone(),
                };
                (s.cgroup_id, scope)
            })
            .collect();
        DesiredState { scopes }
    }
}

/// Verifies everything the policy names and builds the plan, as of `now` (nothing cached).
pub fn build(policy: &Policy, now: SystemTime) -> Result<Plan, PlanError> {
    assemble(policy, &policy.scopes, &mut StatementCache::default(), now)
}

/// Verifies `specs` (the scopes of every source) against the trust store `policy` names and
/// builds the plan, as of `now`; statements verified before with the same trust store state
/// come from `cache`. Any scope that fails fails the whole plan (`--check`, a scope being
/// added); [`assemble_each`] is what a running node applies.
pub fn assemble(
    policy: &Policy,
    specs: &[ScopeSpec],
    cache: &mut StatementCache,
    now: SystemTime,
) -> Result<Plan, PlanError> {
    let (plan, failures) = assemble_each(policy, specs, cache, now)?;
    match failures.into_iter().next() {
        Some(failure) => Err(failure.error),
        None => Ok(plan),
    }
}

/// Builds `spec` alone, as [`assemble`] would (its bundles verified, its digests gathered),
/// without ending the statement cache's plan: a control request is checked before anything
/// changes, and the cache keeps the statements of the plan in force for the rebuild that
/// follows (ending the plan here would make it verify every other scope's statement again).
pub fn verify_scope(
    policy: &Policy,
    spec: &ScopeSpec,
    cache: &mut StatementCache,
    now: SystemTime,
) -> Result<(), PlanError> {
    let mut trust =
        Trust::open(&policy.trust).map_err(|e| PlanError::Trust { path: policy.trust.clone(), source: Box::new(e) })?;
    build_scope(spec, &mut trust, cache, now).map(drop)
}

/// [`assemble`], scope by scope: a scope whose bundles do not verify (or that a newer version
/// of its image elsewhere in the plan replaces) is in the plan fail-closed, with no digests and
/// the reason, and one whose cgroup is gone is left out; each is also returned as a failure.
/// So a broken bundle of one scope never keeps a revocation or an expiry from withdrawing
/// another's digests. Only what makes no plan at all is an error: an unreadable trust store,
/// two scopes on one cgroup.
pub fn assemble_each(
    policy: &Policy,
    specs: &[ScopeSpec],
    cache: &mut StatementCache,
    now: SystemTime,
) -> Result<(Plan, Vec<ScopeFailure>), PlanError> {
    let mut trust =
        Trust::open(&policy.trust).map_err(|e| PlanError::Trust { path: policy.trust.clone(), source: Box::new(e) })?;
    let mut scopes = Vec::new();
    let mut failures = Vec::new();
    for spec in specs {
        match build_scope(spec, &mut trust, cache, now) {
            Ok(scope) => scopes.push(scope),
            Err(error) => {
                let closed = fail_closed(spec, &error);
                failures.push(ScopeFailure { scope: spec.name.clone(), error, fail_closed: closed.is_some() });
                scopes.extend(closed);
            }
        }
    }
    cache.finish_plan();

    // One version per image name within the plan.
    let mut versions: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for scope in &scopes {
        for m in &scope.manifests {
            let entry = versions.entry(m.name.clone()).or_insert((m.version, scope.name.clone()));
            if m.version > entry.0 {
                *entry = (m.version, scope.name.clone());
            }
        }
    }
    let mut replayed = Vec::new();
    for (index, scope) in scopes.iter().enumerate() {
        if let Some(m) = scope.manifests.iter().find(|m| m.version < versions[&m.name].0) {
            let (newer, newer_scope) = versions[&m.name].clone();
            let error = PlanError::Rollback {
                scope: scope.name.clone(),
                bundle: m.bundles[0].clone(),
                name: m.name.clone(),
                version: m.version,
                newer,
                newer_scope,
            };
            replayed.push((index, error));
        }
    }
    for (index, error) in replayed {
        let reason = error.to_string();
        failures.push(ScopeFailure { scope: scopes[index].name.clone(), error, fail_closed: true });
        scopes[index].close(reason);
    }
    for (i, a) in scopes.iter().enumerate() {
        if let Some(b) = scopes[..i].iter().find(|b| b.cgroup_id == a.cgroup_id) {
            return Err(PlanError::SameCgroup { first: b.name.clone(), second: a.name.clone(), id: a.cgroup_id });
        }
    }
    let versions = versions.into_iter().map(|(name, (version, _))| (name, version)).collect();
    let plan = Plan {
        policy: policy.path.clone(),
        pin_dir: policy.pin_dir.clone(),
        scopes,
        versions,
        runtime_helpers: Vec::new(),
    };
    Ok((plan, failures))
}

impl ScopePlan {
    /// Withdraws every digest: the scope fails closed, for `reason`.
    fn close(&mut self, reason: String) {
        self.digests = Arc::new(DigestSet::default());
        self.privileged.clear();
        self.manifests.clear();
        self.failed = Some(reason);
    }
}

/// The fail-closed form of a scope that failed with `error`: no digests, when its cgroup is one
/// the programs can scope; `None` when there is no such cgroup (gone, not cgroup v2, too deep).
fn fail_closed(spec: &ScopeSpec, error: &PlanError) -> Option<ScopePlan> {
    let cgroup_id = cgroup_id(&spec.cgroup).ok()?;
    check_level(&spec.name, &spec.cgroup, crate::cgroup::level(&spec.cgroup)).ok()?;
    let mut plan = empty_scope(spec, cgroup_id);
    plan.failed = Some(crate::verified::error_chain(error));
    Some(plan)
}

/// `spec` as a scope of cgroup `cgroup_id` holding no digests yet.
fn empty_scope(spec: &ScopeSpec, cgroup_id: u64) -> ScopePlan {
    ScopePlan {
        name: spec.name.clone(),
        cgroup: spec.cgroup.clone(),
        cgroup_id,
        mode: spec.mode,
        remote_fs: spec.remote_fs,
        profile: spec.profile,
        on_violation: spec.on_violation,
        container: spec.container.clone(),
        digests: Arc::new(DigestSet::default()),
        privileged: Vec::new(),
        manifests: Vec::new(),
        failed: None,
    }
}

fn build_scope(
    spec: &ScopeSpec,
    trust: &mut Trust,
    cache: &mut StatementCache,
    now: SystemTime,
) -> Result<ScopePlan, PlanError> {
    let scope = || spec.name.clone();
    let mut files = Vec::new();
    // No bundle files and a registry image: the bundles attached to it.
    let discovering = spec.bundles.is_empty() && matches!(spec.image, Some(ImageRef::Registry { .. }));
    if let (true, Some(image)) = (discovering, &spec.image) {
        files = crate::discovered::discover(image, trust)
            .map_err(|source| PlanError::Discovery { scope: scope(), source })?;
    }
    for path in &spec.bundles {
        files.push(BundleFile::read(path).map_err(|e| match e {
            VerifiedError::Read(source) => PlanError::ReadBundle { scope: scope(), bundle: path.clone(), source },
            e @ VerifiedError::Parse(_) => PlanError::ParseBundle { scope: scope(), bundle: path.clone(), source: e },
            other => unexpected(scope(), path, other),
        })?);
    }
    let groups = verified::group_by_statement(files);
    if let Some(image) = &spec.image {
        if groups.len() != 1 {
            return Err(PlanError::ImageAmbiguous {
                scope: scope(),
                image: image.to_string(),
                statements: groups.len(),
            });
        }
    }

    let mut digests: Option<Arc<DigestSet>> = None;
    let mut manifests = Vec::new();
    for group in &groups {
        let paths: Vec<PathBuf> = group.iter().map(|f| f.path.clone()).collect();
        let statement = cache.verify(group, trust, now).map_err(|e| match e {
            e @ VerifiedError::Refused(_) => {
                PlanError::Refused { scope: scope(), bundles: paths.clone(), source: Box::new(e) }
            }
            VerifiedError::Digest { path } => PlanError::Digest { scope: scope(), bundle: paths[0].clone(), path },
            other => unexpected(scope(), &paths[0], other),
        })?;
        let mut image_checked = None;
        if let (false, Some(image)) = (discovering, &spec.image) {
            let mismatch = verified::check_image(image, group, trust, now).map_err(|e| match e {
                e @ VerifiedError::Image(_) => {
                    PlanError::Image { scope: scope(), image: image.to_string(), source: Box::new(e) }
                }
                other => unexpected(scope(), &paths[0], other),
            })?;
            if let Some(failures) = mismatch {
                return Err(PlanError::ImageMismatch {
                    scope: scope(),
                    image: image.to_string(),
                    bundles: paths.clone(),
                    failures,
                });
            }
            image_checked = Some(image.to_string());
        }
        // One statement: its set, shared. More: their union.
        digests = Some(match digests.take() {
            None => statement.digests.clone(),
            Some(mut set) => {
                let merged = Arc::make_mut(&mut set);
                for (digest, privs) in statement.digests.iter() {
                    merged.entry(*digest).and_modify(|p| *p = p.merge(*privs)).or_insert(*privs);
                }
                set
            }
        });
        manifests.push(ManifestInfo {
            bundles: paths,
            name: statement.name.clone(),
            version: statement.version,
            expires: statement.expires.clone(),
            subject: statement.subject.clone(),
            signers: statement.signers.clone(),
            files: statement.files,
            image: image_checked,
            accepted: statement.accepted.clone(),
        });
    }
    let cgroup_id = cgroup_id(&spec.cgroup).map_err(|source| PlanError::Cgroup { scope: scope(), source })?;
    check_level(&spec.name, &spec.cgroup, crate::cgroup::level(&spec.cgroup))?;
    let mut plan = empty_scope(spec, cgroup_id);
    plan.privileged =
        digests.iter().flat_map(|set| set.iter()).filter(|(_, p)| p.is_privileged()).map(|(d, _)| *d).collect();
    plan.digests = digests.unwrap_or_default();
    plan.manifests = manifests;
    Ok(plan)
}

/// The deepest cgroup level the kernel programs search for a scope (the root is level 0).
pub const MAX_SCOPE_LEVEL: usize = bpf_lsm::abi::ENF_MAX_CGROUP_LEVEL - 1;

/// Refuses a scope cgroup at `level` deeper than the programs walk ([`MAX_SCOPE_LEVEL`]); an
/// unknown level passes (the cgroup was checked to be a cgroup v2 directory already).
fn check_level(scope: &str, cgroup: &Path, level: Option<usize>) -> Result<(), PlanError> {
    match level {
        Some(level) if level > MAX_SCOPE_LEVEL => Err(PlanError::TooDeep {
            scope: scope.to_string(),
            cgroup: cgroup.to_path_buf(),
            level,
            max: MAX_SCOPE_LEVEL,
        }),
        _ => Ok(()),
    }
}

/// A verification step failed in a way its caller does not expect (kept as a refusal, naming
/// the bundle, rather than a panic).
fn unexpected(scope: String, bundle: &Path, error: VerifiedError) -> PlanError {
    PlanError::Unexpected { scope, bundle: bundle.to_path_buf(), source: Box::new(error) }
}

/// Records each accepted version of `plan` in the trust store at `trust_dir` (rollback
/// protection), once the plan is in force.
pub fn record_versions(plan: &Plan, trust_dir: &Path) -> Result<(), PlanError> {
    let accepted = plan.scopes.iter().flat_map(|s| &s.manifests).map(|m| &m.accepted);
    verified::record_versions(accepted, trust_dir)
        .map_err(|e| PlanError::Trust { path: trust_dir.to_path_buf(), source: Box::new(e) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_deeper_than_the_programs_walk_is_refused_naming_its_cgroup() {
        let cgroup = Path::new("/sys/fs/cgroup/deep");
        assert!(check_level("shallow", cgroup, Some(0)).is_ok());
        assert!(check_level("deepest", cgroup, Some(MAX_SCOPE_LEVEL)).is_ok());
        assert!(check_level("unknown", cgroup, None).is_ok());
        let err = check_level("too-deep", cgroup, Some(MAX_SCOPE_LEVEL + 1)).unwrap_err();
        assert!(matches!(err, PlanError::TooDeep { level: 32, max: 31, .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("too-deep") && message.contains("/sys/fs/cgroup/deep"), "{message}");
        assert!(message.contains("level 32") && message.contains("level 31"), "{message}");
    }
}
