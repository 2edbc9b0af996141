//! A hostile registry: a tiny HTTP/1.1 server on loopback that serves an image from an OCI
//! layout the way the distribution API does (`/v2/`, manifests, blobs), with one fault chosen
//! by the test. Only for the hostile cases: the main path of the tests is the real registry
//! ([`super::registry`]). One thread; each connection is answered and closed; stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every layer blob is served with its last byte flipped (same size, another digest).
    WrongLayerBytes,
    /// The config blob is served with one byte changed.
    WrongConfigBytes,
    /// The manifest is padded with spaces past 4 MiB (Content-Length announced).
    HugeManifest,
    /// The manifest is padded past 4 MiB with no Content-Length (read until close).
    HugeManifestUnannounced,
    /// Layer blobs announce their full length and stop half way, every time.
    TruncatedLayer,
    /// Not quite a fault: the first transfer of each layer blob stops half way, and a `Range`
    /// request gets the rest (206), as a flaky network and a good registry would.
    DropOnceThenRange,
    /// The manifest URL redirects to itself.
    RedirectLoop,
    /// Every request gets 401 with a Basic challenge.
    Unauthorized,
    /// Manifest requests are read and never answered (the connection stays open 20 s).
    Stall,
    /// Not a fault: the registry has the referrers API and lists one bundle (see
    /// [`HostileRegistry::serve_with_referrer`]).
    Referrers,
    /// The referrers API lists a bundle whose blob is served with one byte changed.
    TamperedReferrer,
    /// Not a fault: the registry wants a bearer token, which its token service (`/token`)
    /// gives for basic credentials [`super::registry::USER`]:[`super::registry::PASSWORD`].
    BearerToken,
}

const TOKEN: &str = "hostile-registry-token";

pub struct HostileRegistry {
    pub host: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HostileRegistry {
    /// Serves the image tagged `tag` in the OCI layout `dir` under every repository name.
    pub fn serve(dir: &Path, tag: &str, fault: Fault) -> Self {
        Self::start(Content::load(dir, tag), fault)
    }

    /// As [`Self::serve`], with `bundle` attached to the image manifest as an OCI 1.1 referrer
    /// listed by the referrers API.
    pub fn serve_with_referrer(dir: &Path, tag: &str, bundle: &[u8], fault: Fault) -> Self {
        let mut content = Content::load(dir, tag);
        let digest = |b: &[u8]| format!("sha256:{}", testdata::sha256_hex(b));
        let bundle_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": bundle_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest(b"{}"), "size": 2},
            "layers": [{"mediaType": bundle_type, "digest": digest(bundle), "size": bundle.len()}],
            "subject": {"mediaType": content.media_type, "digest": digest(&content.manifest), "size": content.manifest.len()},
        });
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let mut served = bundle.to_vec();
        if fault == Fault::TamperedReferrer {
            served[bundle.len() / 2] ^= 0x01;
        }
        content.blobs.insert(digest(bundle), served);
        content.blobs.insert(digest(b"{}"), b"{}".to_vec());
        content.referrer = Some((digest(&manifest), manifest, bundle_type.to_string()));
        Self::start(content, fault)
    }

    fn start(content: Content, fault: Fault) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let own_host = host.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &content, fault, &own_host);
                }
            }
        });
        Self { host, stop, thread: Some(thread) }
    }

    pub fn reference(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.host)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Content {
    manifest: Vec<u8>,
    media_type: String,
    config: String,
    layers: Vec<String>,
    blobs: HashMap<String, Vec<u8>>,
    /// A referrer of the image manifest: (digest, manifest bytes, artifact type).
    referrer: Option<(String, Vec<u8>, String)>,
    /// Blobs whose first transfer was already cut ([`Fault::DropOnceThenRange`]).
    cut: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl Content {
    fn load(dir: &Path, tag: &str) -> Self {
        let read_json = |p: &Path| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
        let blob = |digest: &str| std::fs::read(dir.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap();
        let index = read_json(&dir.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .expect("tag in index.json");
        let manifest = blob(entry["digest"].as_str().unwrap());
        let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        let config = parsed["config"]["digest"].as_str().unwrap().to_string();
        let layers: Vec<String> =
            parsed["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
        let mut blobs = HashMap::new();
        for digest in layers.iter().chain(Some(&config)) {
            blobs.insert(digest.clone(), blob(digest));
        }
        let media_type = entry["mediaType"].as_str().unwrap().to_string();
        Self { manifest, media_type, config, layers, blobs, referrer: None, cut: Default::default() }
    }
}

fn answer(stream: TcpStream, content: &Content, fault: Fault, host: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = String::new();
    let mut range_start: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = value.trim().to_string();
            }
            if name.eq_ignore_ascii_case("range") {
                range_start = value.trim().strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse().ok());
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut out = stream;
    let send = |out: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8], length: Option<usize>| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        if let Some(length) = length {
            head += &format!("Content-Length: {length}\r\n");
        }
        head += "\r\n";
        out.write_all(head.as_bytes())?;
        out.write_all(body)?;
        out.flush()
    };
    if fault == Fault::Unauthorized {
        let challenge = ("WWW-Authenticate", "Basic realm=\"hostile\"".to_string());
        return send(&mut out, "401 Unauthorized", &[challenge], b"{}", Some(2));
    }
    if fault == Fault::BearerToken {
        if path.starts_with("/token") {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                super::registry::USER,
                super::registry::PASSWORD
            ));
            if authorization != format!("Basic {basic}") {
                return send(&mut out, "401 Unauthorized", &[], b"{}", Some(2));
            }
            let body = format!(r#"{{"token": "{TOKEN}"}}"#);
            return send(&mut out, "200 OK", &[], body.as_bytes(), Some(body.len()));
        }
        if authorization != format!("Bearer {TOKEN}") {
            let challenge = format!(r#"Bearer realm="http://{host}/token",service="hostile""#);
            return send(&mut out, "401 Unauthorized", &[("WWW-Authenticate", challenge)], b"{}", Some(2));
        }
    }
    if path == "/v2/" {
        return send(&mut out, "200 OK", &[], b"{}", Some(2));
    }
    if path.contains("/referrers/") {
        let Some((digest, manifest, artifact_type)) = &content.referrer else {
            return send(&mut out, "404 Not Found", &[], b"", Some(0));
        };
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": manifest.len(), "artifactType": artifact_type}],
        });
        let body = serde_json::to_vec(&index).unwrap();
        let content_type = ("Content-Type", "application/vnd.oci.image.index.v1+json".to_string());
        return send(&mut out, "200 OK", &[content_type], &body, Some(body.len()));
    }
    if let Some((digest, manifest, _)) =
        content.referrer.as_ref().filter(|(d, ..)| path.ends_with(&format!("/manifests/{d}")))
    {
        let _ = digest;
        let content_type = ("Content-Type", "application/vnd.oci.image.manifest.v1+json".to_string());
        return send(&mut out, "200 OK", &[content_type], manifest, Some(manifest.len()));
    }
    if path.contains("/manifests/") {
        if fault == Fault::Stall {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(20));
                drop(out);
            });
            return Ok(());
        }
        if fault == Fault::RedirectLoop {
            return send(&mut out, "302 Found", &[("Location", path.clone())], b"", Some(0));
        }
        let mut body = content.manifest.clone();
        let announced = match fault {
            Fault::HugeManifest | Fault::HugeManifestUnannounced => {
                body.resize(body.len() + (5 << 20), b' ');
                fault == Fault::HugeManifest
            }
            _ => true,
        };
        let length = announced.then_some(body.len());
        return send(&mut out, "200 OK", &[("Content-Type", content.media_type.clone())], &body, length);
    }
    if let Some(digest) = path.split("/blobs/").nth(1) {
        let Some(blob) = content.blobs.get(digest) else {
            return send(&mut out, "404 Not Found", &[], b"", Some(0));
        };
        let mut body = blob.clone();
        let is_layer = content.layers.iter().any(|l| l == digest);
        if (fault == Fault::WrongLayerBytes && is_layer)
            || (fault == Fault::WrongConfigBytes && digest == content.config)
        {
            let last = body.len() - 1;
            body[last] ^= 0x01;
        }
        if fault == Fault::DropOnceThenRange && is_layer {
            if let Some(start) = range_start {
                let rest = &body[start.min(body.len())..];
                let range = format!("bytes {start}-{}/{}", body.len() - 1, body.len());
                return send(&mut out, "206 Partial Content", &[("Content-Range", range)], rest, Some(rest.len()));
            }
            if content.cut.borrow_mut().insert(digest.to_string()) {
                let length = body.len();
                return send(&mut out, "200 OK", &[], &body[..length / 2], Some(length));
            }
        }
        if fault == Fault::TruncatedLayer && is_layer {
            let length = body.len();
            return send(&mut out, "200 OK", &[], &body[..length / 2], Some(length));
        }
        let length = body.len();
        return send(&mut out, "200 OK", &[], &body, Some(length));
    }
    send(&mut out, "404 Not Found", &[], b"", Some(0))
}
