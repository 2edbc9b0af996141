//! Unpacking an image whose statement was verified: the bridge `imgsign run` uses until the
//! content-addressed store lands. The image is unpacked with the one unpacking applier (every
//! file hashed as it is written), then the written tree's manifest must be the signed one and
//! the image the signed subject; otherwise everything written is removed and the error names
//! the paths that differ. Nothing reads the tree before this returns `Ok`.

use crate::image::apply::unpack::{unpack, UnpackError, UnpackOptions, UnpackedImage};
use crate::image::source::ImageRef;
use crate::manifest::Difference;
use crate::progress::Progress;
use crate::statement::StatementError;
use crate::verify::{PolicyError, VerifiedStatement};
use std::path::Path;
use std::sync::Arc;

/// Paths listed in [`VerifiedUnpackError::Files`]'s message before "... and N more".
const LISTED: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum VerifiedUnpackError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("the image is not the signed one")]
    Subject(#[source] PolicyError),
    #[error("the unpacked image differs from the signed manifest: {}", describe(.0))]
    Files(Vec<Difference>),
    #[error("cannot read the signed file list")]
    Statement(#[source] StatementError),
}

fn describe(differences: &[Difference]) -> String {
    let mut parts: Vec<String> = differences
        .iter()
        .take(LISTED)
        .map(|d| match d {
            Difference::Missing { path } => format!("missing {path}"),
            Difference::Extra { path } => format!("extra {path}"),
            Difference::Changed { path, fields } => {
                let what: Vec<&str> = fields.iter().map(|f| f.field).collect();
                format!("changed {path} ({})", what.join(", "))
            }
        })
        .collect();
    if differences.len() > LISTED {
        parts.push(format!("... and {} more", differences.len() - LISTED));
    }
    parts.join("; ")
}

/// Unpacks `image` into `dest` (which must not exist) and checks it against `statement`. On
/// any error `dest` is gone.
pub fn unpack_verified(
    statement: &VerifiedStatement,
    image: &ImageRef,
    dest: &Path,
    progress: Arc<dyn Progress>,
) -> Result<UnpackedImage, VerifiedUnpackError> {
    let unpacked = unpack(image, dest, UnpackOptions::default(), progress)?;
    let remove = || {
        // remove_dir_all never follows symlinks inside the tree.
        let _ = std::fs::remove_dir_all(dest);
    };
    let differences = match statement.compare_files(&unpacked.files) {
        Ok(d) => d,
        Err(e) => {
            remove();
            return Err(VerifiedUnpackError::Statement(e));
        }
    };
    if !differences.is_empty() {
        remove();
        return Err(VerifiedUnpackError::Files(differences));
    }
    if let Err(e) = statement.check_subject(&unpacked.identity, &unpacked.files) {
        remove();
        return Err(VerifiedUnpackError::Subject(e));
    }
    Ok(unpacked)
}
