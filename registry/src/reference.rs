//! Registry references as skopeo writes them after `docker://`: `HOST[:PORT]/REPO[:TAG]` or
//! `HOST[:PORT]/REPO@sha256:HEX`, checked when parsed. The host is always explicit (no implicit
//! Docker Hub): a reference names the machine the bytes come from. A reference without tag or
//! digest means `:latest`, as everywhere else.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(
        "bad registry reference {given:?}: {reason} (expected HOST[:PORT]/REPO[:TAG] or HOST[:PORT]/REPO@sha256:HEX)"
    )]
    Bad { given: String, reason: &'static str },
}

/// A checked `sha256:<64 lowercase hex>` digest, as the distribution API names blobs and manifests.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; any other algorithm or spelling is refused.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:")?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Self(out))
    }

    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a reference points at in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Tag(String),
    Digest(Digest),
}

/// A checked registry reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    host: String,
    repository: String,
    target: Target,
}

impl Reference {
    /// `HOST[:PORT]`, as it appears in URLs and auth files.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The same repository, pointing at `digest`.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { host: self.host.clone(), repository: self.repository.clone(), target: Target::Digest(digest) }
    }

    /// The same repository, pointing at `tag` (checked like a parsed tag).
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Bad { given: tag.into(), reason: "bad tag" });
        }
        Ok(Self { host: self.host.clone(), repository: self.repository.clone(), target: Target::Tag(tag.into()) })
    }

    /// The host's name without the port (for the loopback check).
    pub fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, _)| h)
    }

    /// True for `localhost`, 127.0.0.0/8 and `[::1]`: the only hosts plain HTTP is allowed to.
    pub fn is_loopback(&self) -> bool {
        let name = self.hostname();
        name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    #[cfg(feature = "client")]
    pub(crate) fn to_oci(&self) -> oci_client::Reference {
        match &self.target {
            Target::Tag(tag) => {
                oci_client::Reference::with_tag(self.host.clone(), self.repository.clone(), tag.clone())
            }
            Target::Digest(d) => {
                oci_client::Reference::with_digest(self.host.clone(), self.repository.clone(), d.to_string())
            }
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        let bad = |reason| ReferenceError::Bad { given: s.to_string(), reason };
        let (host, rest) = s.split_once('/').ok_or_else(|| bad("no repository after the host"))?;
        if host.is_empty() || !valid_host(host) {
            return Err(bad("bad registry host"));
        }
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad("the first component must name the registry host (HOST.DOMAIN, HOST:PORT or localhost)"));
        }
        let (name, target) = if let Some((name, digest)) = rest.split_once('@') {
            (name, Target::Digest(Digest::parse(digest).ok_or_else(|| bad("bad digest: expected sha256:<64 hex>"))?))
        } else {
            // A tag follows the last ':' of the last path component.
            let last = rest.rsplit('/').next().unwrap_or(rest);
            match last.rsplit_once(':') {
                Some((_, tag)) => {
                    if !valid_tag(tag) {
                        return Err(bad("bad tag"));
                    }
                    (&rest[..rest.len() - tag.len() - 1], Target::Tag(tag.to_string()))
                }
                None => (rest, Target::Tag("latest".into())),
            }
        };
        if name.is_empty() || !name.split('/').all(valid_component) {
            return Err(bad("bad repository name: lowercase letters, digits and . _ - separated by /"));
        }
        Ok(Self { host: host.to_string(), repository: name.to_string(), target })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Tag(tag) => write!(f, "{}/{}:{tag}", self.host, self.repository),
            Target::Digest(d) => write!(f, "{}/{}@{d}", self.host, self.repository),
        }
    }
}

fn valid_host(host: &str) -> bool {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port or [v6]
        let Some((addr, port)) = rest.split_once(']') else { return false };
        return addr.parse::<std::net::Ipv6Addr>().is_ok()
            && (port.is_empty() || port.strip_prefix(':').is_some_and(valid_port));
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    // DNS labels (or the parts of an IPv4 address): non-empty, letters, digits and inner '-'.
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    name.split('.').all(label) && port.is_none_or(valid_port)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-')
        && c.as_bytes()[0].is_ascii_alphanumeric()
        && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_tags_digests_and_ports() {
        let r: Reference = "127.0.0.1:5000/a/b:v1".parse().unwrap();
        assert_eq!((r.host(), r.repository(), r.target()), ("127.0.0.1:5000", "a/b", &Target::Tag("v1".into())));
        assert!(r.is_loopback());
        let r: Reference = format!("registry.example/x@sha256:{HEX}").parse().unwrap();
        assert_eq!(r.target(), &Target::Digest(Digest::parse(&format!("sha256:{HEX}")).unwrap()));
        assert!(!r.is_loopback());
        assert_eq!(r.to_string(), format!("registry.example/x@sha256:{HEX}"));
        let r: Reference = "localhost:5000/x".parse().unwrap();
        assert_eq!(r.target(), &Target::Tag("latest".into()));
        assert!(r.is_loopback());
        let r: Reference = "[::1]:5000/x:t".parse().unwrap();
        assert!(r.is_loopback());
        assert_eq!(r.hostname(), "::1");
        let r: Reference = "127.0.0.2.nip.example:5000/x:t".parse().unwrap();
        assert!(!r.is_loopback(), "a name that only looks like an address is not loopback");
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "alpine",
            "alpine:3",
            "library/alpine",
            "host.example/",
            "host.example/UPPER",
            "host.example/x:",
            "host.example/x@sha256:abc",
            "host.example/x@sha512:abc",
            "host.example:0/x",
            "host.example:99999/x",
            "host.example/x:-bad",
            "ho st.example/x",
            "../x",
            "a..b/x",
            ".example/x",
            "-a.example/x",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad} accepted");
        }
    }
}
