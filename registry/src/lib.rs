//! The OCI distribution transport of imgsign: registry references ([`Reference`]), where
//! credentials come from ([`auth`]), and a blocking client for one repository ([`Registry`])
//! built on `oci-client`, with its tokio runtime kept inside. It knows digests, sizes and media
//! types, not images: `verifier-core`'s registry source turns manifests into layers and checks
//! layers as they stream.
//!
//! A crate of its own so that the HTTP, TLS and async stack (reqwest, rustls, tokio) stays out of
//! verifier-core's code, behind the `client` feature: without it (verifier-core without its
//! `registry-client` feature, as the fuzz targets build it) only references, digests, auth files
//! and [`Access`] are compiled.

mod access;
pub mod auth;
#[cfg(feature = "client")]
mod blob;
#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod push;
mod reference;
#[cfg(feature = "client")]
mod referrers;

pub use access::Access;
pub use auth::{AuthError, Credentials};
#[cfg(feature = "client")]
pub use blob::BlobReader;
#[cfg(feature = "client")]
pub use client::{Manifest, Registry, RegistryError, MANIFEST_TYPES, MAX_MANIFEST};
pub use reference::{Digest, Reference, ReferenceError, Target};
#[cfg(feature = "client")]
pub use referrers::{Discoverable, Referrer, EMPTY_MEDIA_TYPE, OCI_INDEX, OCI_MANIFEST};
