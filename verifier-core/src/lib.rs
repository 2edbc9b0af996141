//! The verification core of imgsign: reads images from their sources, applies layers the way a
//! runtime would, builds the per-file manifest, and signs or verifies it as a Sigstore bundle.
