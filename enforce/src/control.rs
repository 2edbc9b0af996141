//! The daemon's control socket: root on the node asks the running daemon to add a scope (a
//! cgroup and the bundles that define it), remove one, or list them, without editing the policy
//! or sending SIGHUP. A container runtime registers each container's cgroup this way before its
//! first instruction runs (`imgsign run --enforce`, later the OCI runtime and hook).
//!
//! Protocol: a unix stream socket (default [`DEFAULT_SOCKET`], mode 0600, root's), one request
//! per connection, one JSON object per line each way ([`Request`], [`Reply`]). Only peers whose
//! credentials (`SO_PEERCRED`) say uid 0 are served: anyone who can add a scope can choose what
//! runs in it. A scope added here is verified exactly like the policy's (signatures, threshold,
//! revocation, expiry, rollback, the image if named) before any digest reaches the kernel, and
//! the reply comes only after the kernel has it (or after the daemon gave up and kept the plan
//! in force). What the daemon does with a request is [`crate::daemon::Daemon::control`]; this
//! module is the socket, its framing, and the client.

use crate::policy::{Mode, Profile, Violation};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the daemon listens when the policy does not say.
pub const DEFAULT_SOCKET: &str = "/run/imgsign/enforce.sock";
/// How long the daemon waits for a connected client's request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Requests are small; a longer line is refused.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot listen on the control socket {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot reach the enforcement daemon at {path} (is `imgsign enforce` running?)")]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("talking to the enforcement daemon at {path}")]
    Exchange {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the enforcement daemon at {path} answered something that is not a reply: {detail}")]
    BadReply { path: PathBuf, detail: String },
}

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
// One request per connection, parsed once: boxing the scope would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Make a cgroup a scope (or replace the scope of that name).
    Add(AddScope),
    /// Stop enforcing the scope of that name (added here; policy scopes stay).
    Remove { name: String },
    /// Every scope in force, from the policy and from here.
    List,
    /// The scope's most recent event and response records, oldest first (`imgsign snapshot`).
    Events { name: String },
}

/// A scope to add: as a policy `[[scope]]`, with absolute paths (the daemon reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddScope {
    pub name: String,
    pub cgroup: PathBuf,
    pub mode: Mode,
    #[serde(default)]
    pub profile: Profile,
    #[serde(default)]
    pub remote_fs: bool,
    /// Freeze or kill the cgroup when the kernel reports a violation in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_violation: Option<Violation>,
    /// The container the cgroup is, named in every event of the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// May be empty when `image` is a registry reference: the bundles attached to it there are
    /// discovered (reached as the policy's `[registry]` says).
    #[serde(default)]
    pub bundles: Vec<PathBuf>,
    /// Also compare this image's files with the manifest (`oci:DIR[:TAG]`, ...); or, a
    /// `docker://HOST/REPO[:TAG|@sha256:HEX]` without bundles, where they are discovered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// What a runtime says of the container whose cgroup a scope is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerInfo {
    /// The runtime's container id.
    pub id: String,
    /// The image reference it was started from.
    pub image: String,
    /// The image's signed digest (`sha256:...`).
    pub digest: String,
    /// The container's name where the engine gives one (podman's name, Kubernetes' container
    /// name), beside the runtime's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Kubernetes pod (`namespace/name`) where the engine is CRI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The runtime's init process, in the cgroup already and running the runtime's code until it
    /// execs the container's entrypoint (which the kernel judges): the daemon's check of the
    /// tasks already in the cgroup leaves it alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<u32>,
}

/// A scope as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedScope {
    pub name: String,
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
    pub mode: Mode,
    pub profile: Profile,
    pub digests: usize,
    /// `policy` or `control`.
    pub origin: String,
    /// Its counters in the kernel (decisions, dropped events), when the kernel keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<crate::kernel::ScopeCounters>,
}

/// The answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    pub ok: bool,
    /// Why the request was refused (`ok` false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every scope in force after the request.
    #[serde(default)]
    pub scopes: Vec<ListedScope>,
    /// The records asked for by [`Request::Events`], as the daemon wrote them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<serde_json::Value>,
    /// With the scope list: the runtime helpers in force (allowed in every scope that verified,
    /// besides its signed set) and those listed but ignored, as last hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_helpers: Option<crate::helpers::Helpers>,
}

impl Reply {
    pub fn refused(error: impl Into<String>) -> Self {
        Reply { ok: false, error: Some(error.into()), ..Reply::default() }
    }
}

/// Whether a peer with this uid may use the socket.
pub fn peer_allowed(uid: u32) -> bool {
    uid == 0
}

/// The listening socket.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ControlServer {
    /// The socket file goes with the daemon (clients then get a clear "cannot reach").
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A connected client whose request was read; answer with [`Pending::reply`].
pub struct Pending {
    stream: UnixStream,
    pub request: Result<Request, String>,
}

impl Pending {
    /// Writes the reply (errors ignored: a client that went away loses its answer only).
    pub fn reply(mut self, reply: &Reply) {
        let mut line = serde_json::to_vec(reply).expect("replies serialise");
        line.push(b'\n');
        let _ = self.stream.write_all(&line);
    }
}

impl ControlServer {
    /// Listens on `path` (its directory is created; a socket left there by an earlier daemon is
    /// replaced), mode 0600. The socket does not block: [`ControlServer::accept`] polls.
    pub fn bind(path: &Path) -> Result<Self, ControlError> {
        let err = |source| ControlError::Bind { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
                std::fs::remove_file(path).map_err(err)?
            }
            Ok(_) => return Err(err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = UnixListener::bind(path).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        Ok(ControlServer { listener, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for a client to connect; returns whether one is waiting. Lets the
    /// daemon sleep on the socket rather than on a timer, so a runtime's request is answered
    /// as soon as it comes.
    pub fn wait(&self, timeout: Duration) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: timeout.subsec_nanos().into(),
        };
        // EINTR (a signal: SIGHUP, SIGTERM) ends the wait early, as it should.
        poll(&mut fds, Some(&timeout)).is_ok_and(|n| n > 0)
    }

    /// The next client with its request, if one is waiting. A peer that is not root gets a
    /// refusal here and is not returned; so does one that sends no valid request in time.
    pub fn accept(&self) -> Option<Pending> {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => return None, // WouldBlock, or a transient error: look again later
            };
            let uid = rustix::net::sockopt::socket_peercred(&stream).map(|c| c.uid.as_raw()).ok();
            let pending = Pending { request: Err(String::new()), stream };
            if !uid.is_some_and(peer_allowed) {
                pending.reply(&Reply::refused("the control socket serves root only"));
                continue;
            }
            return Some(read_request(pending));
        }
    }
}

fn read_request(mut pending: Pending) -> Pending {
    let setup =
        pending.stream.set_nonblocking(false).and_then(|()| pending.stream.set_read_timeout(Some(REQUEST_TIMEOUT)));
    if let Err(e) = setup {
        pending.request = Err(format!("cannot read the request: {e}"));
        return pending;
    }
    let mut line = String::new();
    let read = match pending.stream.try_clone() {
        Ok(s) => BufReader::new(s).take(MAX_REQUEST).read_line(&mut line),
        Err(e) => Err(e),
    };
    pending.request = match read {
        Err(e) => Err(format!("cannot read the request: {e}")),
        Ok(_) if !line.ends_with('\n') => Err(format!("the request is not one line of at most {MAX_REQUEST} bytes")),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("not a valid request: {e}")),
    };
    pending
}

use std::io::Read as _;

/// Sends `request` to the daemon listening on `socket` and waits up to `timeout` for its reply.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ControlError> {
    let mut stream =
        UnixStream::connect(socket).map_err(|source| ControlError::Connect { path: socket.to_path_buf(), source })?;
    let exchange = |source| ControlError::Exchange { path: socket.to_path_buf(), source };
    stream.set_read_timeout(Some(timeout)).map_err(exchange)?;
    let mut line = serde_json::to_vec(request).expect("requests serialise");
    line.push(b'\n');
    stream.write_all(&line).map_err(exchange)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(exchange)?;
    serde_json::from_str(&answer)
        .map_err(|e| ControlError::BadReply { path: socket.to_path_buf(), detail: format!("{e}: {answer:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let add = Request::Add(AddScope {
            name: "c1".into(),
            cgroup: "/sys/fs/cgroup/c1".into(),
            mode: Mode::Enforce,
            profile: Profile::Default,
            remote_fs: false,
            on_violation: Some(Violation::Freeze),
            container: None,
            bundles: vec!["/b.json".into()],
            image: None,
        });
        let text = serde_json::to_string(&add).unwrap();
        assert!(text.contains(r#""op":"add""#) && text.contains(r#""onViolation":"freeze""#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), add);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"list"}"#).unwrap(), Request::List);
        let extra = text.replacen('{', r#"{"runAs":"someone","#, 1);
        assert!(serde_json::from_str::<Request>(&extra).is_err(), "an unknown field in a scope: {extra}");
        assert!(serde_json::from_str::<Request>(r#"{"op":"format"}"#).is_err());
    }

    #[test]
    fn only_root_is_served() {
        assert!(peer_allowed(0));
        assert!(!peer_allowed(1000) && !peer_allowed(65534));
    }
}
