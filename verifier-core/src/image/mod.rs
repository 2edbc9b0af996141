//! The image layer: everything between an image reference and the flattened tree of files.
//!
//! - [`source`]: `ImageRef` and the [`source::ImageSource`] trait (identity, layers, blobs), with
//!   OCI layouts, docker archives and `dir:` trees behind it; [`platform`] chooses in indexes.
//! - [`stream`] and [`tar`]: a layer blob decompressed and hashed on a worker thread, then read
//!   by a strict tar reader.
//! - [`tree`]: the OCI layer rules, once, over a tree generic in its file content, driving an
//!   [`tree::Applier`]; [`apply::hash`] only hashes (sign, verify), [`apply::unpack`] writes the
//!   tree under a directory through [`inroot`] (`openat2(RESOLVE_IN_ROOT)`) while hashing.
//!
//! Data flows one way: source -> stream -> tar -> rules -> applier -> manifest.

pub mod apply;
pub mod inroot;
pub mod platform;
pub mod source;
pub mod stream;
pub mod tar;
pub mod tree;

pub use apply::unpack::{
    unpack, unpack_source, ContentPlan, ContentSink, Placed, UnpackError, UnpackOptions, UnpackedImage, Written,
};
pub use platform::{Platform, PlatformError};
pub use source::{open, scan, ImageContent, ImageRef, ImageSource, LayerDescriptor, ScannedImage, SourceError};
