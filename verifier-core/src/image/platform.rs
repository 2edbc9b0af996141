//! The platform an image is chosen for when an OCI index lists several: `OS/ARCH[/VARIANT]` as
//! Go names them (`linux/amd64`, `linux/arm64/v8`), checked when parsed.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad platform {given:?}: expected OS/ARCH[/VARIANT] of lowercase letters, digits and '_' (e.g. linux/amd64, linux/arm64/v8)")]
pub struct PlatformError {
    pub given: String,
}

/// A checked `OS/ARCH[/VARIANT]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`, the platform imgsign chose before it could be asked for another.
    fn default() -> Self {
        Self { os: "linux".into(), architecture: "amd64".into(), variant: None }
    }
}

impl Platform {
    pub fn os(&self) -> &str {
        &self.os
    }

    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    pub fn variant(&self) -> Option<&str> {
        self.variant.as_deref()
    }

    /// True if an index entry of `os`/`architecture`/`variant` serves this platform. Without a
    /// variant asked for, any variant of the architecture does.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os && self.architecture == architecture && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, PlatformError> {
        let part = |p: &str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if part(os) && part(arch) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, variant] if part(os) && part(arch) && part(variant) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(variant.to_string()) })
            }
            _ => Err(PlatformError { given: s.to_string() }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!((p.os(), p.architecture(), p.variant()), ("linux", "arm64", Some("v8")));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!("linux/amd64".parse::<Platform>().unwrap(), Platform::default());
        for bad in ["", "linux", "linux/", "/amd64", "Linux/amd64", "linux/amd64/v1/x", "linux/am d64", "linux/../x"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn variant_is_optional_when_matching() {
        let any: Platform = "linux/arm64".parse().unwrap();
        assert!(any.matches("linux", "arm64", Some("v8")));
        assert!(any.matches("linux", "arm64", None));
        let v8: Platform = "linux/arm64/v8".parse().unwrap();
        assert!(v8.matches("linux", "arm64", Some("v8")));
        assert!(!v8.matches("linux", "arm64", None));
        assert!(!any.matches("linux", "amd64", None));
    }
}
