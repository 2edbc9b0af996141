//! The verification core of imgsign: reads images from their sources, applies layers the way a
//! runtime would, builds the per-file manifest, and signs or verifies it as a Sigstore bundle.

pub mod bundle;
pub mod digest;
pub mod dsse;
pub mod layer;
pub mod manifest;
pub mod payload;
pub mod progress;
pub mod sign;
pub mod source;
pub mod statement;
pub mod stream;
pub mod tar;
pub mod verify;
