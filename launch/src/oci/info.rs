//! What the runtime says without a container to act on, and `ps`: `features` (runc's JSON of
//! what this runtime supports), `spec` (a default config.json) and the pids of a container's
//! cgroup.

use super::lifecycle::load;
use super::{runtime_err, OciError, Runtime};
use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager as _};
use oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, Features, FeaturesBuilder, LinuxFeatureBuilder, LinuxNamespaceType, SelinuxBuilder,
    Spec,
};

const HOOKS: [&str; 6] = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"];

/// The runtime's features: namespaces, capabilities, cgroup managers (cgroupfs v1 and v2; no
/// systemd), hooks, mount options.
pub fn features() -> Features {
    use LinuxNamespaceType::*;
    let namespaces = vec![Pid, Network, Uts, Ipc, Mount, User, Cgroup, Time];
    let capabilities: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    let cgroup = CgroupBuilder::default().v1(true).v2(true).systemd(false).systemd_user(false).rdma(false).build();
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .capabilities(capabilities)
        .apparmor(ApparmorBuilder::default().enabled(false).build().unwrap_or_default())
        .selinux(SelinuxBuilder::default().enabled(false).build().unwrap_or_default());
    let linux = match cgroup {
        Ok(cgroup) => linux.cgroup(cgroup),
        Err(_) => linux,
    };
    let mut features = FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max(oci_spec::runtime::VERSION)
        .hooks(HOOKS.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .mount_options(libcontainer::syscall::linux::MountOption::known_options())
        .build()
        .unwrap_or_default();
    if let Ok(linux) = linux.build() {
        features.set_linux(Some(linux));
    }
    features
}

/// runc's default `config.json` (`spec --rootless`: one mapped to the calling user).
pub fn default_spec(rootless: bool) -> Spec {
    if rootless {
        Spec::rootless(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    } else {
        Spec::default()
    }
}

/// The pids of every process in container `id`'s cgroup.
pub fn pids(rt: &Runtime, id: &str) -> Result<Vec<i32>, OciError> {
    let container = load(rt, id)?;
    let config = container.spec().map_err(runtime_err("read the config of", id))?;
    let cgroup_err = |e: Box<dyn std::error::Error + Send + Sync>| OciError::Cgroup { id: id.to_string(), source: e };
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: id.to_string(),
    })
    .map_err(|e| cgroup_err(Box::new(e)))?;
    let pids = manager.get_all_pids().map_err(|e| cgroup_err(Box::new(e)))?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}
