//! The signed manifests a container may match: the policy's bundle files, grouped by the
//! statement they carry (co-signers of one statement count together towards the threshold),
//! each verified against the trust store (signatures, threshold, revocation, expiry, rollback)
//! before its file list is read. A statement that does not verify is never a candidate; why is
//! kept for the refusal message.

use crate::policy::Policy;
use keys::TrustStore;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use verifier_core::bundle::CheckedBundle;
use verifier_core::manifest::FileEntry;
use verifier_core::verify::{error_chain, verify_statement};

/// Annotations by which engines name the image of a container (CRI: containerd and CRI-O; the
/// OCI image spec's reference name). They can only narrow the candidates.
pub const IMAGE_ANNOTATIONS: &[&str] =
    &["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName", "org.opencontainers.image.ref.name"];

/// A verified statement and its file list.
pub struct Candidate {
    pub name: String,
    /// `sha256:...`
    pub digest: String,
    pub bundles: Vec<PathBuf>,
    pub files: Vec<FileEntry>,
    /// When the statement expires (a cached verdict is not used past it).
    pub expires_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum CandidateError {
    #[error("cannot open the trust store {path}")]
    Trust { path: PathBuf, source: Box<keys::TrustError> },
    #[error("cannot list the bundle directory {path}")]
    List { path: PathBuf, source: std::io::Error },
}

/// The bundle files that apply: those the policy maps a named image to, when an image
/// annotation names one the policy knows; else every bundle of the policy.
pub fn bundle_files(
    policy: &Policy,
    annotations: impl Fn(&str) -> Option<String>,
) -> Result<Vec<PathBuf>, CandidateError> {
    let named = IMAGE_ANNOTATIONS.iter().filter_map(|key| annotations(key)).find_map(|name| policy.images.get(&name));
    let roots = named.unwrap_or(&policy.bundles);
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(root)
                .map_err(|source| CandidateError::List { path: root.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(root.clone());
        }
    }
    Ok(files)
}

/// Verifies `files` against the trust store at `trust_dir` as of `now`: the candidates, and
/// for each statement or file that was refused, why.
pub fn verify(
    files: &[PathBuf],
    trust_dir: &Path,
    now: SystemTime,
) -> Result<(Vec<Candidate>, Vec<String>), CandidateError> {
    let trust = TrustStore::open(trust_dir)
        .map_err(|source| CandidateError::Trust { path: trust_dir.to_path_buf(), source: Box::new(source) })?;
    let mut refused = Vec::new();
    let mut groups: Vec<(Vec<PathBuf>, Vec<CheckedBundle>)> = Vec::new();
    for path in files {
        match CheckedBundle::read(path) {
            Ok(bundle) => match groups.iter_mut().find(|(_, g)| g[0].payload().digest() == bundle.payload().digest()) {
                Some((paths, group)) => {
                    paths.push(path.clone());
                    group.push(bundle);
                }
                None => groups.push((vec![path.clone()], vec![bundle])),
            },
            Err(e) => refused.push(format!("{}: {}", path.display(), error_chain(&e))),
        }
    }
    let mut candidates = Vec::new();
    for (paths, group) in groups {
        let statement = match verify_statement(&group, &trust, now) {
            Ok(statement) => statement,
            Err(e) => {
                refused.push(format!("{}: {}", paths[0].display(), error_chain(&e)));
                continue;
            }
        };
        let mut entries = Vec::with_capacity(statement.header().files);
        if let Err(e) = statement.for_each_file(&mut |entry| entries.push(entry)) {
            refused.push(format!("{}: {}", paths[0].display(), error_chain(&e)));
            continue;
        }
        candidates.push(Candidate {
            name: statement.header().name.clone(),
            digest: statement.subject().oci(),
            bundles: paths,
            files: entries,
            expires_at: statement.header().expires_at,
        });
    }
    Ok((candidates, refused))
}
