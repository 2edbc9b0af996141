//! What the gate reads of a container's OCI spec ([`GateSpec`]): the root's path, the
//! annotations (an image name may narrow the candidates), the mount destinations (judged by
//! what is mounted there) and the user namespace's id mappings. Taken from a parsed
//! `oci_spec::runtime::Spec` where the caller has one (`imgsign runtime create`, which hands
//! the whole spec to libcontainer), or read straight from `config.json` ([`GateSpec::load`])
//! where nothing else of the spec is needed (`imgsign-hook`, on every container's critical
//! path): that read skips the rest (an engine's spec carries its whole seccomp profile) instead
//! of building it. Both read the same JSON with serde_json and the spec's field names; a test
//! holds them equal on a full engine spec.

use crate::matcher::IdMaps;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the bundle's spec {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the bundle's spec {path} is not a valid OCI runtime spec")]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// The parts of a container's spec the gate decides on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GateSpec {
    /// `root.path` as written (relative to the bundle, or absolute).
    pub root: Option<PathBuf>,
    pub annotations: BTreeMap<String, String>,
    /// Every `mounts[].destination`, in order.
    pub mount_destinations: Vec<String>,
    pub id_maps: IdMaps,
}

impl GateSpec {
    /// Reads `config.json` at `path`, keeping only what the gate uses.
    pub fn load(path: &Path) -> Result<GateSpec, SpecError> {
        let bytes = std::fs::read(path).map_err(|source| SpecError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&bytes).map_err(|source| SpecError::Parse { path: path.to_path_buf(), source })
    }

    /// [`GateSpec::load`] of bytes already read.
    pub fn parse(bytes: &[u8]) -> Result<GateSpec, serde_json::Error> {
        let raw: Raw = serde_json::from_slice(bytes)?;
        let maps = |m: Option<Vec<RawIdMap>>| {
            m.unwrap_or_default()
                .into_iter()
                .map(|m| (u64::from(m.container_id), u64::from(m.host_id), u64::from(m.size)))
                .collect()
        };
        let linux = raw.linux.unwrap_or_default();
        Ok(GateSpec {
            root: raw.root.map(|r| r.path),
            annotations: raw.annotations.unwrap_or_default(),
            mount_destinations: raw.mounts.unwrap_or_default().into_iter().map(|m| m.destination).collect(),
            id_maps: IdMaps { uids: maps(linux.uid_mappings), gids: maps(linux.gid_mappings) },
        })
    }
}

impl From<&oci_spec::runtime::Spec> for GateSpec {
    fn from(spec: &oci_spec::runtime::Spec) -> GateSpec {
        let maps = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.iter()
                .flatten()
                .map(|m| (u64::from(m.container_id()), u64::from(m.host_id()), u64::from(m.size())))
                .collect()
        };
        let id_maps = spec
            .linux()
            .as_ref()
            .map(|l| IdMaps { uids: maps(l.uid_mappings()), gids: maps(l.gid_mappings()) })
            .unwrap_or_default();
        GateSpec {
            root: spec.root().as_ref().map(|r| r.path().clone()),
            annotations: spec.annotations().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
            mount_destinations: spec
                .mounts()
                .iter()
                .flatten()
                .map(|m| m.destination().to_string_lossy().into_owned())
                .collect(),
            id_maps,
        }
    }
}

// The spec's JSON, only the fields read; serde skips every other one.
#[derive(Deserialize)]
struct Raw {
    root: Option<RawRoot>,
    annotations: Option<BTreeMap<String, String>>,
    mounts: Option<Vec<RawMount>>,
    linux: Option<RawLinux>,
}

#[derive(Deserialize)]
struct RawRoot {
    path: PathBuf,
}

#[derive(Deserialize)]
struct RawMount {
    destination: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawLinux {
    uid_mappings: Option<Vec<RawIdMap>>,
    gid_mappings: Option<Vec<RawIdMap>>,
}

#[derive(Deserialize)]
struct RawIdMap {
    #[serde(rename = "containerID")]
    container_id: u32,
    #[serde(rename = "hostID")]
    host_id: u32,
    size: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine's spec (podman 4.3's shape: mounts, annotations, id mappings, a seccomp
    /// profile): the light read and oci-spec's give the same view.
    const ENGINE_SPEC: &str = r#"{
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/",
                    "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"]}},
        "root": {"path": "/var/lib/containers/storage/overlay/abc/merged"},
        "hostname": "c1",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/run/containers/resolv.conf", "options": ["bind", "rprivate"]},
            {"destination": "/run/.containerenv", "type": "bind", "source": "/run/containers/containerenv", "options": ["bind", "rprivate"]}
        ],
        "annotations": {"io.container.manager": "libpod", "io.kubernetes.cri.image-name": "app:1"},
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 1000}, {"containerID": 1000, "hostID": 1000, "size": 1}],
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "user"}],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                        "architectures": ["SCMP_ARCH_X86_64"],
                        "syscalls": [{"names": ["read", "write", "openat"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                                      "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]
        }
    }"#;

    #[test]
    fn the_light_read_sees_what_oci_spec_sees() {
        let light = GateSpec::parse(ENGINE_SPEC.as_bytes()).unwrap();
        let full: oci_spec::runtime::Spec = serde_json::from_str(ENGINE_SPEC).unwrap();
        assert_eq!(light, GateSpec::from(&full));
        assert_eq!(light.root.as_deref(), Some(Path::new("/var/lib/containers/storage/overlay/abc/merged")));
        assert_eq!(light.mount_destinations, ["/proc", "/dev", "/etc/resolv.conf", "/run/.containerenv"]);
        assert_eq!(light.annotations["io.kubernetes.cri.image-name"], "app:1");
        assert_eq!(light.id_maps.gids, [(0, 200000, 1000), (1000, 1000, 1)]);
    }

    #[test]
    fn a_spec_with_nothing_the_gate_reads_is_empty_and_a_broken_one_is_refused() {
        assert_eq!(GateSpec::parse(br#"{"ociVersion": "1.0.2"}"#).unwrap(), GateSpec::default());
        for broken in [
            &br#"{"mounts": [{"type": "proc"}]}"#[..],
            br#"{"root": {}}"#,
            b"[",
            br#"{"linux": {"uidMappings": [{"containerID": -1, "hostID": 0, "size": 1}]}}"#,
        ] {
            assert!(GateSpec::parse(broken).is_err(), "{}", String::from_utf8_lossy(broken));
        }
    }
}
