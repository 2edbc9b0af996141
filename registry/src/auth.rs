//! Registry credentials from the files Docker and Podman write: an explicit file, else
//! `REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//! `~/.docker/config.json`; the first file with an entry for the host wins, as in
//! containers-auth.json(5). Entries are `{"auths": {"HOST[:PORT]": {"auth": base64(user:pass)}}}`
//! (an `https://HOST/...` key matches too). Secrets are held in [`Credentials`], whose `Debug`
//! shows the user name only; they are never part of an error message.

use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read registry auth file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The JSON error is left out on purpose: its message may quote the file's secrets.
    #[error("registry auth file {path} is not valid JSON ({{\"auths\": {{HOST: {{\"auth\": BASE64}}}}}})")]
    Json { path: PathBuf },
    #[error("registry auth file {path}: the entry for {host} is not base64 of USER:PASSWORD")]
    BadEntry { path: PathBuf, host: String },
}

/// A user name and password for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self { username: username.into(), password: password.into() }
    }

    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// The auth files searched, in order, when none is given: `REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `$HOME/.docker/config.json`.
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|v| !v.is_empty()) {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// The credentials for `host` in the first of `files` that has an entry for it; files that do
/// not exist are skipped, files that exist but cannot be read or parsed are errors.
pub fn find_credentials(files: &[PathBuf], host: &str) -> Result<Option<Credentials>, AuthError> {
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(AuthError::Read { path: path.clone(), source }),
        };
        let file: AuthFile = serde_json::from_slice(&bytes).map_err(|_| AuthError::Json { path: path.clone() })?;
        let entry = file.auths.iter().find(|(key, _)| key_host(key) == host).map(|(_, entry)| entry);
        let Some(encoded) = entry.and_then(|e| e.auth.as_deref()) else { continue };
        let bad = || AuthError::BadEntry { path: path.clone(), host: host.to_string() };
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials::new(user, password)));
    }
    Ok(None)
}

/// The `HOST[:PORT]` of an auth file key (`host:5000`, `https://host:5000/v1/`).
fn key_host(key: &str) -> &str {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    #[test]
    fn first_file_with_the_host_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let a = write(dir.path(), "a.json", &format!(r#"{{"auths":{{"other:1":{{"auth":"{}"}}}}}}"#, b64("x:y")));
        let b = write(
            dir.path(),
            "b.json",
            &format!(r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{}"}}}}}}"#, b64("u:p:w")),
        );
        let missing = dir.path().join("missing.json");
        let found = find_credentials(&[missing, a, b], "reg.example:5000").unwrap().unwrap();
        assert_eq!(found, Credentials::new("u", "p:w"));
        assert!(!format!("{found:?}").contains("p:w"), "Debug shows no password");
    }

    #[test]
    fn bad_files_are_errors_that_quote_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(dir.path(), "bad.json", r#"{"auths": {"h:1": {"auth": "s3cret-not-base64!"}}}"#);
        let err = find_credentials(&[bad], "h:1").unwrap_err();
        assert!(matches!(err, AuthError::BadEntry { .. }));
        assert!(!err.to_string().contains("s3cret"));
        let broken = write(dir.path(), "broken.json", r#"{"auths": {"h:1": "s3cret"#);
        let err = find_credentials(&[broken], "h:1").unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }
}
