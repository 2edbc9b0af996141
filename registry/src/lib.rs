//! The OCI distribution transport of imgsign: registry references ([`Reference`]), where
//! credentials come from ([`auth`]), and a blocking client for one repository ([`Registry`])
//! built on `oci-client`, with its tokio runtime kept inside. It knows digests, sizes and media
//! types, not images: `verifier-core`'s registry source turns manifests into layers and checks
//! layers as they stream.
//!
//! A crate of its own so that the HTTP, TLS and async stack (reqwest, rustls, tokio) is built
//! only by the crates that reach registries, not by every user of `verifier-core`.

pub mod auth;
mod blob;
mod client;
mod reference;
mod referrers;

pub use auth::{AuthError, Credentials};
pub use blob::BlobReader;
pub use client::{Access, Manifest, Registry, RegistryError, MANIFEST_TYPES, MAX_MANIFEST};
pub use reference::{Digest, Reference, ReferenceError, Target};
pub use referrers::{Discoverable, Referrer, EMPTY_MEDIA_TYPE, OCI_INDEX, OCI_MANIFEST};
