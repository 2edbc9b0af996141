//! The verification core of imgsign: reads images from their sources, applies layers the way a
//! runtime would, builds the per-file manifest, and signs or verifies it as a Sigstore bundle.

pub mod bundle;
pub mod code;
#[cfg(feature = "registry-client")]
pub mod copy;
pub mod digest;
pub mod dsse;
pub mod image;
pub mod manifest;
pub mod payload;
pub mod progress;
#[cfg(feature = "registry-client")]
pub mod referrers;
pub mod sign;
pub mod statement;
pub mod verify;

/// `crate::source` as sign, verify and the CLI name it; the image layer lives in [`image`].
pub use image::source;
