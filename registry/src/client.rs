//! A blocking client for one repository of an OCI distribution registry, over `oci-client`.
//!
//! The async world stays in here: a [`Registry`] owns a current-thread tokio runtime, and every
//! call (including each read of a [`BlobReader`]) is one `block_on`. What it guarantees:
//! - TLS by default (system roots, plus `*.crt` from a certificate directory and from
//!   `/etc/containers/certs.d/HOST[:PORT]/`); plain HTTP only with [`Access::insecure`] and only
//!   to a loopback host.
//! - Connect and read time-outs on every request.
//! - Manifests are read with a size cap while they stream (oci-client reads them whole, so this
//!   one GET is made here, with the credentials oci-client negotiated), and checked against the
//!   digest asked for (and the registry's `Docker-Content-Digest`) before they are returned.
//! - Blobs stream through oci-client, capped at the size their descriptor gives; their digest is
//!   checked by whoever reads them to the end ([`Registry::small_blob`] does it here).
//! - Credentials (anonymous, basic, bearer from the registry's token service) come from the auth
//!   files ([`crate::auth`]) and are never part of a message.

use crate::access::Access;
use crate::auth::{self, AuthError};
use crate::blob::{BlobReader, Resume};
use crate::reference::{Digest, Reference, Target};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest manifest or index read into memory.
pub const MAX_MANIFEST: u64 = 4 << 20;

/// The manifest media types asked for (and the only ones accepted).
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("--insecure allows plain HTTP to a loopback registry only (localhost, 127.0.0.0/8, [::1]); {host} is not one: use TLS")]
    InsecureNotLoopback { host: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot read CA certificate {path}")]
    Certificate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the registry client for {host}")]
    Setup {
        host: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{host} refused access to {repository} (HTTP {status}): {hint}")]
    Unauthorized { host: String, repository: String, status: u16, hint: String },
    #[error("{what}: not found in the registry (HTTP 404)")]
    NotFound { what: String },
    #[error("{what}: the registry answered HTTP {status}")]
    Status { what: String, status: u16 },
    #[error("{what}: request failed")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: request failed")]
    Distribution {
        what: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{what}: larger than the {limit} byte limit")]
    TooLarge { what: String, limit: u64 },
    #[error("{what}: digest mismatch: asked for {expected}, the registry sent {actual}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what}: size mismatch: descriptor says {expected} bytes, the registry sent {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: cannot read the transfer")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// True when the registry's bytes contradict the digest or size that name them.
    pub fn is_integrity(&self) -> bool {
        matches!(self, RegistryError::DigestMismatch { .. } | RegistryError::SizeMismatch { .. })
    }
}

/// A manifest or index as the registry sent it, checked against its digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    /// The `Content-Type` the registry gave.
    pub media_type: Option<String>,
}

/// A response body read under a cap, with the headers that describe it.
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, as the registry claims it.
    pub claimed_digest: Option<String>,
}

/// One repository of a registry, connected and authenticated for pulling.
pub struct Registry {
    runtime: Arc<tokio::runtime::Runtime>,
    client: oci_client::Client,
    http: reqwest::Client,
    reference: Reference,
    scheme: &'static str,
    auth: RegistryAuth,
    /// The `Authorization` header of manifest requests (basic or the negotiated bearer token).
    authorization: Option<String>,
    /// Where the credentials came from, for the 401 hint (never the credentials themselves).
    credential_origin: String,
}

impl Registry {
    /// Sets up TLS and credentials for `reference`'s repository and negotiates a pull token
    /// where the registry asks for one.
    pub fn connect(reference: &Reference, access: &Access) -> Result<Self, RegistryError> {
        let host = reference.host().to_string();
        if access.insecure && !reference.is_loopback() {
            return Err(RegistryError::InsecureNotLoopback { host });
        }
        let setup = |source: Box<dyn std::error::Error + Send + Sync>| RegistryError::Setup {
            host: reference.host().to_string(),
            source,
        };
        // rustls needs one process-wide crypto provider; a second install is refused harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pems = certificates(access.cert_dir.as_deref(), &host)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| setup(Box::new(e)))?;
        let config = ClientConfig {
            protocol: if access.insecure { ClientProtocol::Http } else { ClientProtocol::Https },
            extra_root_certificates: pems
                .iter()
                .map(|data| Certificate { encoding: CertificateEncoding::Pem, data: data.clone() })
                .collect(),
            read_timeout: Some(access.timeout),
            connect_timeout: Some(access.timeout),
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| setup(Box::new(e)))?;
        let mut roots = Vec::new();
        for pem in &pems {
            roots.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| setup(Box::new(e)))?);
        }
        let http = reqwest::Client::builder()
            .tls_certs_merge(roots)
            .https_only(!access.insecure)
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(access.timeout)
            .read_timeout(access.timeout)
            .build()
            .map_err(|e| setup(Box::new(e)))?;

        let (credentials, credential_origin) = match &access.credentials {
            Some(c) => (Some(c.clone()), "the credentials given".to_string()),
            None => {
                let files =
                    if access.auth_files.is_empty() { auth::default_auth_files() } else { access.auth_files.clone() };
                let found = auth::find_credentials(&files, &host)?;
                let listed = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ");
                match found {
                    Some(c) => (Some(c), format!("the credentials found for {host} in one of: {listed}")),
                    None => (None, format!("no credentials for {host} in any of: {listed}")),
                }
            }
        };
        let auth = match &credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password().to_string()),
            None => RegistryAuth::Anonymous,
        };
        let mut registry = Self {
            runtime: Arc::new(runtime),
            client,
            http,
            reference: reference.clone(),
            scheme: if access.insecure { "http" } else { "https" },
            auth,
            authorization: None,
            credential_origin,
        };
        registry.authenticate(RegistryOperation::Pull)?;
        Ok(registry)
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Negotiates credentials for `operation` (oci-client: a bearer token from the registry's
    /// token service, or basic auth) and keeps the header manifest requests send.
    pub(crate) fn authenticate(&mut self, operation: RegistryOperation) -> Result<(), RegistryError> {
        let reference = self.reference.to_oci();
        let token = self.runtime.block_on(self.client.auth(&reference, &self.auth, operation));
        self.authorization = match token {
            Ok(Some(token)) => Some(format!("Bearer {token}")),
            Ok(None) => match &self.auth {
                RegistryAuth::Basic(user, password) => {
                    use base64::Engine as _;
                    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                    Some(format!("Basic {pair}"))
                }
                _ => None,
            },
            Err(OciDistributionError::AuthenticationFailure(_))
            | Err(OciDistributionError::UnauthorizedError { .. }) => {
                return Err(self.unauthorized(401));
            }
            Err(source) => {
                return Err(RegistryError::Distribution {
                    what: format!("authenticating to {}", self.reference.host()),
                    source,
                })
            }
        };
        Ok(())
    }

    fn unauthorized(&self, status: u16) -> RegistryError {
        RegistryError::Unauthorized {
            host: self.reference.host().to_string(),
            repository: self.reference.repository().to_string(),
            status,
            hint: format!("used {}", self.credential_origin),
        }
    }

    /// The manifest or index `target` names in this repository, read under [`MAX_MANIFEST`]
    /// and checked: against the digest when `target` is one, against `size` when given, and
    /// against the registry's `Docker-Content-Digest` when it sends one.
    pub fn manifest(&self, target: &Target, size: Option<u64>) -> Result<Manifest, RegistryError> {
        let (name, what) = match target {
            Target::Tag(tag) => (
                tag.clone(),
                format!("manifest {}", self.reference.with_tag(tag).unwrap_or_else(|_| self.reference.clone())),
            ),
            Target::Digest(d) => (d.to_string(), format!("manifest {}", self.reference.with_digest(*d))),
        };
        let Body { bytes, content_type: media_type, claimed_digest: header_digest } =
            self.get_capped(&format!("manifests/{name}"), &what, MANIFEST_TYPES, size.unwrap_or(MAX_MANIFEST))?;
        let actual = Digest::of(&bytes);
        if let Some(expected) = size {
            if bytes.len() as u64 != expected {
                return Err(RegistryError::SizeMismatch { what, expected, actual: bytes.len() as u64 });
            }
        }
        if let Target::Digest(expected) = target {
            if *expected != actual {
                return Err(RegistryError::DigestMismatch { what, expected: *expected, actual });
            }
        }
        if let Some(claimed) = header_digest.as_deref().and_then(Digest::parse) {
            if claimed != actual {
                return Err(RegistryError::DigestMismatch {
                    what: format!("{what} (Docker-Content-Digest)"),
                    expected: claimed,
                    actual,
                });
            }
        }
        Ok(Manifest { bytes, digest: actual, media_type })
    }

    /// `GET /v2/REPO/{path}` with the negotiated credentials, its body read under `limit`
    /// (at most [`MAX_MANIFEST`]) as it streams; with the `Content-Type` and
    /// `Docker-Content-Digest` the registry sent.
    pub(crate) fn get_capped(
        &self,
        path: &str,
        what: &str,
        accept: &[&str],
        limit: u64,
    ) -> Result<Body, RegistryError> {
        let url = format!("{}://{}/v2/{}/{path}", self.scheme, self.reference.host(), self.reference.repository());
        let what = what.to_string();
        let transport = |source| RegistryError::Transport { what: what.clone(), source };
        let limit = limit.min(MAX_MANIFEST);
        let too_large = |actual: u64| too_large_or_size(&what, (limit < MAX_MANIFEST).then_some(limit), actual);
        self.runtime.block_on(async {
            let mut request = self.http.get(&url).header(ACCEPT, accept.join(", "));
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let mut response = request.send().await.map_err(transport)?;
            match response.status() {
                StatusCode::OK => {}
                s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => return Err(self.unauthorized(s.as_u16())),
                StatusCode::NOT_FOUND => return Err(RegistryError::NotFound { what: what.clone() }),
                s => return Err(RegistryError::Status { what: what.clone(), status: s.as_u16() }),
            }
            if let Some(length) = response.content_length().filter(|&n| n > limit) {
                return Err(too_large(length));
            }
            let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let (content_type, claimed_digest) = (header(CONTENT_TYPE.as_str()), header("docker-content-digest"));
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(transport)? {
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > limit {
                    return Err(too_large(bytes.len() as u64));
                }
            }
            Ok(Body { bytes, content_type, claimed_digest })
        })
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    pub(crate) fn client(&self) -> &oci_client::Client {
        &self.client
    }

    /// oci-client's error on a request as ours: 401 with the credentials hint, 404 as not found.
    pub(crate) fn request_error(&self, what: String, source: OciDistributionError) -> RegistryError {
        match source {
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                self.unauthorized(401)
            }
            source => distribution_error(what, source),
        }
    }

    /// Streams the blob `digest` of this repository, capped at one byte past `size` (so a
    /// longer blob shows up as a size mismatch to the reader that checks it). The reader checks
    /// nothing else: read it to the end and compare its digest and size (see [`BlobReader`]).
    pub fn blob(&self, digest: Digest, size: u64) -> Result<BlobReader, RegistryError> {
        let what = format!("blob {digest}");
        let reference = self.reference.to_oci();
        let name = digest.to_string();
        let stream = self.runtime.block_on(self.client.pull_blob_stream(&reference, name.as_str()));
        let stream = stream.map_err(|e| self.request_error(what.clone(), e))?;
        if let Some(length) = stream.content_length.filter(|&n| n != size) {
            return Err(RegistryError::SizeMismatch { what, expected: size, actual: length });
        }
        let resume = Resume { client: self.client.clone(), reference, digest: name };
        Ok(BlobReader::new(self.runtime.clone(), stream.stream, size.saturating_add(1), resume))
    }

    /// A small blob (an image config) read whole under `limit`, with its size and digest checked
    /// before it is returned.
    pub fn small_blob(&self, digest: Digest, size: u64, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        if size > limit {
            return Err(RegistryError::TooLarge { what, limit });
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut self.blob(digest, size)?, &mut bytes)
            .map_err(|source| RegistryError::Read { what: what.clone(), source })?;
        if bytes.len() as u64 != size {
            return Err(RegistryError::SizeMismatch { what, expected: size, actual: bytes.len() as u64 });
        }
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(RegistryError::DigestMismatch { what, expected: digest, actual });
        }
        Ok(bytes)
    }
}

fn too_large_or_size(what: &str, size: Option<u64>, actual: u64) -> RegistryError {
    match size {
        Some(expected) if expected <= MAX_MANIFEST => {
            RegistryError::SizeMismatch { what: what.to_string(), expected, actual }
        }
        _ => RegistryError::TooLarge { what: what.to_string(), limit: MAX_MANIFEST },
    }
}

/// Maps oci-client's errors on a request to ours: 404 as not found, the rest with their source.
pub(crate) fn distribution_error(what: String, source: OciDistributionError) -> RegistryError {
    match source {
        OciDistributionError::ServerError { code: 404, .. } => RegistryError::NotFound { what },
        OciDistributionError::RegistryError { ref envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::BlobUnknown | OciErrorCode::ManifestUnknown)) =>
        {
            RegistryError::NotFound { what }
        }
        source => RegistryError::Distribution { what, source },
    }
}

/// PEM certificates: `*.crt` in `cert_dir`, then in `/etc/containers/certs.d/HOST[:PORT]/`.
fn certificates(cert_dir: Option<&Path>, host: &str) -> Result<Vec<Vec<u8>>, RegistryError> {
    let system = Path::new("/etc/containers/certs.d").join(host);
    let mut pems = Vec::new();
    for dir in cert_dir.into_iter().chain(Some(system.as_path()).filter(|d| d.is_dir())) {
        let read_err = |source| RegistryError::Certificate { path: dir.to_path_buf(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        files.sort();
        for file in files {
            pems.push(
                std::fs::read(&file).map_err(|source| RegistryError::Certificate { path: file.clone(), source })?,
            );
        }
    }
    Ok(pems)
}
