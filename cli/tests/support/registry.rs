//! A real registry for the tests: Debian's `docker-registry` (distribution 2.8) started on a free
//! loopback port with its own config and storage under a temp dir, optionally with TLS (a CA and
//! a server certificate made here with openssl) and htpasswd basic auth; killed when dropped.
//! Images get into it with skopeo, the real client.

use std::fs;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const USER: &str = "signer";
pub const PASSWORD: &str = "registry test password (not a secret)";

/// A running `docker-registry`.
pub struct TestRegistry {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// With TLS and basic auth: the directory holding the CA certificate (`ca.crt`).
    pub cert_dir: Option<PathBuf>,
}

impl TestRegistry {
    /// Plain HTTP, no auth.
    pub fn plain() -> Self {
        Self::start(false)
    }

    /// TLS with a certificate of a CA made for this registry, and htpasswd basic auth.
    pub fn tls_with_auth() -> Self {
        Self::start(true)
    }

    fn start(tls: bool) -> Self {
        need("docker-registry", "docker-registry");
        let dir = super::tempdir();
        let root = dir.path();
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: imgsign-test\n",
            root.join("storage").display()
        );
        let mut cert_dir = None;
        if tls {
            let certs = make_certificates(root);
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: imgsign-test\n    path: {}\n",
                root.join("server.crt").display(),
                root.join("server.key").display(),
                make_htpasswd(root).display()
            );
            cert_dir = Some(certs);
        }
        let config_path = root.join("config.yml");
        fs::write(&config_path, config).unwrap();
        let log = fs::File::create(root.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = Self { child, dir, host, cert_dir };
        registry.wait_listening(port);
        registry
    }

    fn wait_listening(&mut self, port: u16) {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}): {}", self.log());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not listen on {} within 10 s: {}", self.host, self.log());
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `docker://HOST/REPO`.
    pub fn reference(&self, repo: &str) -> String {
        format!("docker://{}/{repo}", self.host)
    }

    /// `skopeo copy SRC docker://HOST/REPO` (with this registry's CA and credentials when it has them).
    pub fn push(&self, src: &str, repo: &str) {
        let mut c = Command::new("skopeo");
        c.args(["copy", "--quiet"]);
        match &self.cert_dir {
            Some(certs) => {
                c.arg("--dest-cert-dir").arg(certs).arg("--dest-creds").arg(format!("{USER}:{PASSWORD}"));
            }
            None => {
                c.arg("--dest-tls-verify=false");
            }
        }
        let out = c.arg(src).arg(self.reference(repo)).output().expect("run skopeo");
        assert!(out.status.success(), "skopeo copy failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
    }

    /// `skopeo inspect --raw docker://HOST/REPO` output and its digest.
    pub fn inspect_digest(&self, repo: &str) -> String {
        let mut c = Command::new("skopeo");
        c.arg("inspect");
        match &self.cert_dir {
            Some(certs) => {
                c.arg("--cert-dir").arg(certs).arg("--creds").arg(format!("{USER}:{PASSWORD}"));
            }
            None => {
                c.arg("--tls-verify=false");
            }
        }
        let out = c.arg(self.reference(repo)).output().expect("run skopeo");
        assert!(out.status.success(), "skopeo inspect failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Digest"].as_str().unwrap().to_string()
    }

    /// An auth file with this registry's credentials, as `podman login` writes it.
    pub fn auth_file(&self, path: &Path) -> PathBuf {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        fs::write(path, format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, self.host)).unwrap();
        path.to_path_buf()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

fn need(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "{program} not found: install the Debian package {package} (scripts/lib.sh ensure_packages {package})"
    );
}

fn sh(script: &str, dir: &Path) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`certs/ca.crt`) and a server certificate for 127.0.0.1 signed by it; returns `certs/`.
fn make_certificates(root: &Path) -> PathBuf {
    need("openssl", "openssl");
    fs::create_dir_all(root.join("certs")).unwrap();
    fs::write(
        root.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
           -out certs/ca.crt -days 2 -subj /CN=imgsign-test-ca 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
           -out server.csr -subj /CN=127.0.0.1 2>/dev/null
         openssl x509 -req -in server.csr -CA certs/ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
           -days 2 -extfile server.ext 2>/dev/null",
        root,
    );
    root.join("certs")
}

fn make_htpasswd(root: &Path) -> PathBuf {
    need("htpasswd", "apache2-utils");
    let out = Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]).output().unwrap();
    assert!(out.status.success());
    let path = root.join("htpasswd");
    fs::write(&path, out.stdout).unwrap();
    path
}
