//! The OCI runtime spec of a container, generated from a [`LaunchConfig`] with oci-spec's
//! types: a pure function, so every hardened default is visible (and unit-tested) here and
//! libcontainer applies it. Defaults, each loosened only by a named config field:
//! a user namespace (container root is an unprivileged host range), [`MINIMAL_CAPABILITIES`],
//! no_new_privs, a seccomp allowlist ([`seccomp::profile`] of the capability set), runc's
//! masked and read-only /proc paths, a /dev tmpfs holding only null, zero, full, random,
//! urandom, tty (+ pts, shm) with a device cgroup that refuses every other node, private root
//! propagation, a new network namespace, pids and memory limits, and a hostname.

use crate::config::{LaunchConfig, Net, MINIMAL_CAPABILITIES};
use crate::seccomp::{self, SeccompError};
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot build the container spec")]
    Oci(#[from] oci_spec::OciSpecError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

/// The capability set: the minimal one plus `cap_add`.
pub fn capabilities(config: &LaunchConfig) -> Capabilities {
    MINIMAL_CAPABILITIES.iter().chain(config.cap_add.iter()).copied().collect()
}

/// Device cgroup: deny everything, then allow the character devices the /dev tmpfs holds.
fn device_rules() -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    let rule = |allow, typ, major: Option<i64>, minor: Option<i64>| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access("rwm");
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build()
    };
    let c = LinuxDeviceType::C;
    Ok(vec![
        rule(false, LinuxDeviceType::A, None, None)?,
        rule(true, c, Some(1), Some(3))?, // null
        rule(true, c, Some(1), Some(5))?, // zero
        rule(true, c, Some(1), Some(7))?, // full
        rule(true, c, Some(1), Some(8))?, // random
        rule(true, c, Some(1), Some(9))?, // urandom
        rule(true, c, Some(5), Some(0))?, // tty
        rule(true, c, Some(5), Some(2))?, // ptmx
        rule(true, c, Some(136), None)?,  // pts/*
    ])
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn bind(source: &Path, destination: &Path, read_only: bool) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string(), "nosuid".to_string(), "nodev".to_string()];
    if read_only {
        options.push("ro".to_string());
    }
    Ok(MountBuilder::default()
        .destination(destination.to_path_buf())
        .typ("bind")
        .source(source.to_path_buf())
        .options(options)
        .build()?)
}

/// The mounts: proc, the /dev tmpfs with pts, shm and mqueue, a read-only /sys (a bind of the
/// host's when the network namespace is shared, since sysfs cannot be mounted then), the secrets
/// directory read-only at /run/secrets, and the volumes.
fn mounts(config: &LaunchConfig, secrets: Option<&Path>) -> Result<Vec<Mount>, SpecError> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
    ];
    if config.net == Net::Host && config.userns.is_some() {
        mounts.push(bind(Path::new("/sys"), Path::new("/sys"), true)?);
    } else {
        mounts.push(mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])?);
    }
    if let Some(dir) = secrets {
        mounts.push(bind(dir, Path::new("/run/secrets"), true)?);
    }
    for v in &config.volumes {
        mounts.push(bind(&v.host, &v.container, v.read_only)?);
    }
    Ok(mounts)
}

fn user(config: &LaunchConfig) -> Result<oci_spec::runtime::User, SpecError> {
    let u = &config.user;
    let mut builder = UserBuilder::default().uid(u.uid).gid(u.gid);
    if !u.additional_gids.is_empty() {
        builder = builder.additional_gids(u.additional_gids.clone());
    }
    Ok(builder.build()?)
}

/// Builds the spec for `config` with root file system `rootfs` (absolute) and, when the config
/// has secrets, the directory holding them (`secrets`).
pub fn build(config: &LaunchConfig, rootfs: &Path, secrets: Option<&Path>) -> Result<Spec, SpecError> {
    let caps = capabilities(config);
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user(config)?)
        .args(config.args.clone())
        .env(config.env.clone())
        .cwd(config.cwd.clone())
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;

    let mut namespaces: Vec<LinuxNamespace> = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns
    })
    .collect();
    if config.net == Net::None {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(LinuxNamespaceType::Network);
        namespaces.push(ns);
    }

    let resources = LinuxResourcesBuilder::default()
        .devices(device_rules()?)
        .pids(LinuxPidsBuilder::default().limit(config.pids_limit).build()?)
        .memory(LinuxMemoryBuilder::default().limit(config.memory).swap(config.memory).build()?)
        .build()?;

    let mut linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(crate::config::cgroup_path(&config.id)))
        .resources(resources)
        .rootfs_propagation("private")
        .masked_paths(masked_paths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    if !config.seccomp_unconfined {
        linux = linux.seccomp(seccomp::profile(&capabilities(config).iter().copied().collect::<Vec<_>>())?);
    }
    if let Some(range) = config.userns {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(LinuxNamespaceType::User);
        namespaces.push(ns);
        let map = || LinuxIdMappingBuilder::default().container_id(0u32).host_id(range.base).size(range.size).build();
        linux = linux.uid_mappings(vec![map()?]).gid_mappings(vec![map()?]);
    }
    let linux = linux.namespaces(namespaces).build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(rootfs.to_path_buf()).readonly(config.read_only).build()?)
        .hostname(config.hostname.clone().unwrap_or_else(|| config.id.clone()))
        .process(process)
        .mounts(mounts(config, secrets)?)
        .linux(linux)
        .build()?)
}

/// runc's masked paths (oci-spec's list) and the few runc added since.
fn masked_paths() -> Vec<String> {
    let mut paths = oci_spec::runtime::get_default_maskedpaths();
    for extra in ["/proc/interrupts", "/proc/sys/kernel/core_pattern"] {
        paths.push(extra.to_string());
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IdRange, Volume};
    use oci_spec::runtime::Capability;

    fn config() -> LaunchConfig {
        LaunchConfig::new("c1", "/lower", vec!["/bin/sh".into()])
    }

    #[test]
    fn hardened_by_default() {
        let spec = build(&config(), Path::new("/s/merged"), None).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.effective().as_ref().unwrap().len(), MINIMAL_CAPABILITIES.len());
        assert!(!caps.bounding().as_ref().unwrap().contains(&Capability::SysAdmin));
        assert_eq!(spec.hostname().as_deref(), Some("c1"));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.rootfs_propagation().as_deref(), Some("private"));
        let ns: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(ns.contains(&LinuxNamespaceType::User));
        assert!(ns.contains(&LinuxNamespaceType::Network));
        let uid = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((uid.container_id(), uid.host_id(), uid.size()), (0, 100_000, 65_536));
        let devices = linux.resources().as_ref().unwrap().devices().as_ref().unwrap();
        assert!(!devices[0].allow() && devices[0].typ() == Some(LinuxDeviceType::A));
        assert!(devices.iter().all(|d| !d.allow() || d.typ() == Some(LinuxDeviceType::C)));
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert!(linux.readonly_paths().as_ref().unwrap().contains(&"/proc/sys".to_string()));
        // The allowlist of the container's capabilities (its own tests: seccomp.rs).
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp, &seccomp::profile(&MINIMAL_CAPABILITIES).unwrap());
        assert_eq!(seccomp.default_errno_ret(), Some(seccomp::ENOSYS));
        assert!(spec.root().as_ref().unwrap().readonly() == Some(false));
        let pids = linux.resources().as_ref().unwrap().pids().as_ref().unwrap().limit();
        assert_eq!(pids, crate::config::DEFAULT_PIDS_LIMIT);
    }

    #[test]
    fn seccomp_is_dropped_only_when_asked() {
        let mut c = config();
        c.seccomp_unconfined = true;
        let spec = build(&c, Path::new("/s/merged"), None).unwrap();
        assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    }

    #[test]
    fn loosened_only_by_named_fields() {
        let mut c = config();
        c.net = Net::Host;
        c.cap_add = vec![Capability::NetAdmin, Capability::SysChroot];
        c.userns = None;
        c.read_only = true;
        c.hostname = Some("web".into());
        c.volumes = vec![Volume { host: "/h".into(), container: "/data".into(), read_only: true }];
        let spec = build(&c, Path::new("/s/merged"), Some(Path::new("/s/secrets"))).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let ns: Vec<_> = linux.namespaces().as_ref().unwrap().iter().map(|n| n.typ()).collect();
        assert!(!ns.contains(&LinuxNamespaceType::Network) && !ns.contains(&LinuxNamespaceType::User));
        let caps = spec.process().as_ref().unwrap().capabilities().as_ref().unwrap();
        assert!(caps.effective().as_ref().unwrap().contains(&Capability::NetAdmin));
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("web"));
        let mounts = spec.mounts().as_ref().unwrap();
        let secrets = mounts.iter().find(|m| m.destination() == Path::new("/run/secrets")).unwrap();
        assert!(secrets.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/data")));
        // An added capability brings its syscalls (chroot with SYS_CHROOT), never mount.
        let seccomp = linux.seccomp().as_ref().unwrap().syscalls().as_ref().unwrap();
        let allowed = |name: &str| {
            seccomp.iter().any(|s| {
                s.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActAllow && s.names().iter().any(|n| n == name)
            })
        };
        assert!(allowed("chroot") && !allowed("mount"));
        let _ = IdRange::default();
    }
}
