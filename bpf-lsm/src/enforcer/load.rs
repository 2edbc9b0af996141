//! Loading the enforcer object and attaching its programs ([`load`]): which programs there are,
//! in which order they attach (and detach: [`detach_order`]), the object a loader loads
//! ([`Build`], its [`Identity`]), and registering the owner in `enf_guard`. Pinned, the maps of
//! the layout are taken from their pins when they are there (shared with the programs already
//! pinned, see `takeover.rs`), the identity and links are pinned under staged names, and
//! `pins::commit` makes them final.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aya::maps::{Array, Map, MapData};
use aya::programs::links::FdLink;
use aya::programs::{FExit, Lsm};
use aya::{Btf, Ebpf, EbpfLoader};
use sha2::{Digest as _, Sha256};

use super::pins::{self, staged, IDENTITY_MAP};
use super::takeover::Identity;
use super::{
    map_err, Enforcer, EnforcerError, ALLOWED_MAP, EVENTS_MAP, GUARD_MAP, HOOK_BPRM_CHECK, HOOK_CREDS,
    HOOK_FILE_MPROTECT, HOOK_MMAP_FILE, SCOPES_MAP, SCOPE_STATS_MAP, SETS_MAP, STATS_MAP,
};
use crate::abi::{self, EnfGuard, EnfIdentity};
use crate::{kernel, objects};

const PROGRAMS: [(&str, &str); 4] = [
    ("enf_bprm_check", HOOK_BPRM_CHECK),
    ("enf_mmap_file", HOOK_MMAP_FILE),
    ("enf_file_mprotect", HOOK_FILE_MPROTECT),
    ("enf_privs_creds", HOOK_CREDS),
];
/// The programs that invalidate the per-inode digest cache: attached before
/// [`PROGRAMS`] (which fill and use it) and detached after them. The
/// `inode_setattr` hook has two argument lists across kernels: one of the
/// two programs loads (see the C file).
const FILE_OPEN_PROGRAM: (&str, &str) = ("enf_file_open", "file_open");
/// The programs against code patching in a scope and of the strict profile
/// (`enforcer/patch.h`). They neither hash nor use the digest cache:
/// attached after [`PROGRAMS`], detached with them.
const PATCH_PROGRAMS: [(&str, &str); 6] = [
    ("enf_patch_file_open", "file_open"),
    ("enf_patch_ptrace_access", "ptrace_access_check"),
    ("enf_patch_ptrace_traceme", "ptrace_traceme"),
    ("enf_patch_anon_inode", "inode_init_security_anon"),
    ("enf_patch_mmap_file", HOOK_MMAP_FILE),
    ("enf_patch_file_mprotect", HOOK_FILE_MPROTECT),
];
/// The strict profile's executable-stack check: a tracing (fexit) program on
/// the kernel function that makes an exec's stack, which has no LSM hook.
const EXEC_STACK_PROGRAM: (&str, &str) = ("enf_patch_exec_stack", "setup_arg_pages");
const SETATTR_PROGRAMS: [&str; 2] = ["enf_inode_setattr3", "enf_inode_setattr2"];
/// Self-protection and escapes (`enforcer/guard.h`): the sticky scope at
/// fork and `clone3(CLONE_INTO_CGROUP)`, `bpf()`, the pins, kernel loads.
/// Attached after the owner is registered in `enf_guard`, and after the
/// cache invalidation programs.
const GUARD_PROGRAMS: [(&str, &str); 8] = [
    ("enf_task_alloc", "task_alloc"),
    ("enf_inode_unlink", "inode_unlink"),
    ("enf_inode_rmdir", "inode_rmdir"),
    ("enf_inode_rename", "inode_rename"),
    ("enf_sb_umount", "sb_umount"),
    ("enf_kernel_read_file", "kernel_read_file"),
    ("enf_kernel_load_data", "kernel_load_data"),
    ("enf_bpf", "bpf"),
];
const SETATTR_HOOK: &str = "inode_setattr";
/// Pin name (after `link_`) of whichever `inode_setattr` program loaded.
const SETATTR_PIN: &str = "enf_inode_setattr";
/// The seal guards (`seal.h`): refuse opens for write and size changes of
/// sealed inodes. Attached with the cache invalidation, before [`PROGRAMS`]
/// (which seal), detached after them; same two `inode_setattr` forms.
const SEAL_FILE_OPEN_PROGRAM: (&str, &str) = ("enf_seal_file_open", "file_open");
const SEAL_SETATTR_PROGRAMS: [&str; 2] = ["enf_seal_inode_setattr3", "enf_seal_inode_setattr2"];
const SEAL_SETATTR_PIN: &str = "enf_seal_inode_setattr";

/// Which BPF object a loader loads: the embedded enforcer, or (tests only) another build of it.
#[derive(Debug, Clone, Copy)]
pub struct Build {
    object: &'static [u8],
}

impl Build {
    /// The enforcer this library embeds ([`objects::ENFORCER`]).
    pub fn embedded() -> Self {
        Build { object: objects::ENFORCER }
    }

    /// The test-only second build of the same layout ([`objects::ENFORCER_VARIANT`]): what the
    /// upgrade tests pin as the build to replace.
    #[doc(hidden)]
    pub fn test_variant() -> Self {
        Build { object: objects::ENFORCER_VARIANT }
    }

    /// This build's pinned layout and the SHA-256 of its object.
    pub fn identity(&self) -> Identity {
        static EMBEDDED: OnceLock<Identity> = OnceLock::new();
        let compute = || Identity { layout: abi::ENF_PIN_LAYOUT, build: Sha256::digest(self.object).into() };
        if std::ptr::eq(self.object, objects::ENFORCER) {
            *EMBEDDED.get_or_init(compute)
        } else {
            compute()
        }
    }

    pub(super) fn object(&self) -> &'static [u8] {
        self.object
    }
}

/// The final pin name of every link this build pins, in the order they are detached: the
/// programs that fill and use the digest cache go before the ones that invalidate it (so no
/// content change goes unseen meanwhile); the self-protection programs go last.
pub(super) fn detach_order() -> Vec<String> {
    PROGRAMS
        .iter()
        .chain(PATCH_PROGRAMS.iter())
        .chain([&EXEC_STACK_PROGRAM])
        .map(|(program, _)| link_pin_name(program))
        .chain([
            link_pin_name(SEAL_FILE_OPEN_PROGRAM.0),
            link_pin_name(SEAL_SETATTR_PIN),
            link_pin_name(FILE_OPEN_PROGRAM.0),
            link_pin_name(SETATTR_PIN),
        ])
        .chain(GUARD_PROGRAMS.iter().map(|(program, _)| link_pin_name(program)))
        .collect()
}

/// The links whose presence says an enforcer is pinned (the deciding programs).
pub(super) fn deciding_links() -> impl Iterator<Item = String> {
    PROGRAMS.iter().map(|(program, _)| link_pin_name(program))
}

/// Loads `build` and attaches its programs. With `pin_dir`: the layout's maps are taken from
/// their pins there (or created and pinned), the identity is pinned as `enf_identity__new` and
/// each link as `link_<program>__new`; the caller commits ([`pins::commit`]) or aborts.
pub(super) fn load(build: Build, pin_dir: Option<&Path>) -> Result<Enforcer, EnforcerError> {
    let btf = Btf::from_sys_fs().map_err(EnforcerError::Btf)?;
    let map_pins: Vec<(&'static str, PathBuf)> = match pin_dir {
        Some(dir) => pins::shared_maps().map(|name| (name, dir.join(name))).collect(),
        None => Vec::new(),
    };
    // The sticky scopes' task storage (enf_task_scope) is a map type aya
    // 0.14 does not wrap; only the programs use it.
    let mut loader = EbpfLoader::new();
    loader.allow_unsupported_maps();
    for (name, path) in &map_pins {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(build.object()).map_err(EnforcerError::Object)?;
    // This process owns the enforcer (and, pinned, where the pins are)
    // before any program runs: enf_bpf would refuse it bpf() otherwise
    // if it sits in a scope.
    let pin = match pin_dir {
        Some(dir) => {
            let meta = fs::metadata(dir).map_err(|source| EnforcerError::PinDir { path: dir.into(), source })?;
            Some((meta.ino(), kernel_dev(meta.dev())))
        }
        None => None,
    };
    let guard = ebpf.map_mut(GUARD_MAP).ok_or(EnforcerError::Missing { kind: "map", name: GUARD_MAP })?;
    register_owner(guard, Some(pin.unwrap_or((0, 0))))?;
    if let Some(dir) = pin_dir {
        let identity = build.identity();
        let map = ebpf.map_mut(IDENTITY_MAP).ok_or(EnforcerError::Missing { kind: "map", name: IDENTITY_MAP })?;
        {
            let mut array: Array<&mut MapData, EnfIdentity> = map_err(IDENTITY_MAP, Array::try_from(&mut *map))?;
            let raw = EnfIdentity { layout: identity.layout, pad: 0, build: identity.build };
            map_err(IDENTITY_MAP, array.set(0, raw, 0))?;
        }
        let path = dir.join(staged(IDENTITY_MAP));
        map.pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
    }
    // Cache invalidation first: nothing may fill the cache before every
    // content change is seen.
    attach_one(&mut ebpf, &btf, FILE_OPEN_PROGRAM.0, FILE_OPEN_PROGRAM.1, FILE_OPEN_PROGRAM.0, pin_dir)?;
    attach_either(&mut ebpf, &btf, SETATTR_PROGRAMS, SETATTR_HOOK, SETATTR_PIN, pin_dir)?;
    // The seal guards next: nothing may be sealed before they see writes.
    let (program, hook) = SEAL_FILE_OPEN_PROGRAM;
    attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
    attach_either(&mut ebpf, &btf, SEAL_SETATTR_PROGRAMS, SETATTR_HOOK, SEAL_SETATTR_PIN, pin_dir)?;
    for (program, hook) in GUARD_PROGRAMS {
        attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
    }
    for (program, hook) in PROGRAMS.into_iter().chain(PATCH_PROGRAMS) {
        attach_one(&mut ebpf, &btf, program, hook, program, pin_dir)?;
    }
    attach_fexit(&mut ebpf, &btf, EXEC_STACK_PROGRAM.0, EXEC_STACK_PROGRAM.1, pin_dir)?;
    let mut take = |name: &'static str| ebpf.take_map(name).ok_or(EnforcerError::Missing { kind: "map", name });
    let (scopes, sets, allowed, stats, events) =
        (take(SCOPES_MAP)?, take(SETS_MAP)?, take(ALLOWED_MAP)?, take(STATS_MAP)?, take(EVENTS_MAP)?);
    let scope_stats = take(SCOPE_STATS_MAP)?;
    Enforcer::from_maps(Some(ebpf), scopes, sets, allowed, stats, Some(scope_stats), events)
}

/// Loads `program` on `hook`, attaches it and, with `pin_dir`, pins its link
/// as `link_<pin>__new` (the link then outlives the process; [`pins::commit`]
/// renames it to its final name).
fn attach_one(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    hook: &'static str,
    pin: &str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let lsm: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or(EnforcerError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(|source| EnforcerError::ProgramType { program, source: Box::new(source) })?;
    lsm.load(hook, btf).map_err(|source| EnforcerError::Load { program, hook, source: Box::new(source) })?;
    let link = lsm.attach().map_err(|source| EnforcerError::Attach {
        program,
        hook,
        lsm_state: kernel::describe_bpf_lsm_state(),
        source: Box::new(source),
    })?;
    if let Some(dir) = pin_dir {
        let link =
            lsm.take_link(link).map_err(|source| EnforcerError::Load { program, hook, source: Box::new(source) })?;
        let path = dir.join(staged(&link_pin_name(pin)));
        FdLink::from(link).pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
    }
    Ok(())
}

/// Loads and attaches the fexit `program` on kernel function `function`
/// (pinning its link under `pin_dir`), as [`attach_one`] does for LSM programs.
fn attach_fexit(
    ebpf: &mut Ebpf,
    btf: &Btf,
    program: &'static str,
    function: &'static str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let fexit: &mut FExit = ebpf
        .program_mut(program)
        .ok_or(EnforcerError::Missing { kind: "program", name: program })?
        .try_into()
        .map_err(|source| EnforcerError::ProgramType { program, source: Box::new(source) })?;
    fexit.load(function, btf).map_err(|source| EnforcerError::Load {
        program,
        hook: function,
        source: Box::new(source),
    })?;
    let link = fexit.attach().map_err(|source| EnforcerError::Attach {
        program,
        hook: function,
        lsm_state: kernel::describe_bpf_lsm_state(),
        source: Box::new(source),
    })?;
    if let Some(dir) = pin_dir {
        let link = fexit.take_link(link).map_err(|source| EnforcerError::Load {
            program,
            hook: function,
            source: Box::new(source),
        })?;
        let path = dir.join(staged(&link_pin_name(program)));
        FdLink::from(link).pin(&path).map_err(|source| EnforcerError::Pin { path, source: Box::new(source) })?;
    }
    Ok(())
}

/// Attaches the first of `programs` (two forms of one hook whose arguments
/// differ between kernels) that the verifier accepts, pinned as `link_<pin>`.
fn attach_either(
    ebpf: &mut Ebpf,
    btf: &Btf,
    programs: [&'static str; 2],
    hook: &'static str,
    pin: &str,
    pin_dir: Option<&Path>,
) -> Result<(), EnforcerError> {
    let mut first_error = None;
    for program in programs {
        match attach_one(ebpf, btf, program, hook, pin, pin_dir) {
            Ok(()) => return Ok(()),
            // The verifier refuses the form that does not match this
            // kernel's hook; the other one is tried next.
            Err(e @ EnforcerError::Load { .. }) => {
                first_error.get_or_insert(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(first_error.expect("two programs were tried"))
}

/// Registers the calling process as the owner in the `enf_guard` map (one
/// update), and with `pin` also where the pins are: the pin directory's
/// inode number and its super block's device.
pub(super) fn register_owner(map: &mut Map, pin: Option<(u64, u32)>) -> Result<(), EnforcerError> {
    let mut array: Array<&mut MapData, EnfGuard> = map_err(GUARD_MAP, Array::try_from(map))?;
    let mut config = map_err(GUARD_MAP, array.get(&0, 0))?;
    if let Some((pin_ino, pin_dev)) = pin {
        config.pin_ino = pin_ino;
        config.pin_dev = pin_dev;
    }
    config.owner_tgid = std::process::id();
    map_err(GUARD_MAP, array.set(0, config, 0))
}

/// The kernel's `dev_t` (`major << 20 | minor`, as `super_block.s_dev`) of
/// a device number as `stat(2)` reports it (glibc's encoding).
pub(super) fn kernel_dev(dev: u64) -> u32 {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    ((major << 20) | (minor & 0xfffff)) as u32
}

/// The file name of the pinned link of `program`.
pub(super) fn link_pin_name(program: &str) -> String {
    format!("link_{program}")
}
impl Drop for Enforcer {
    /// Detaches the programs that use the digest cache before the ones that
    /// invalidate it (dropping the object alone would detach them in any
    /// order). Pinned links are not affected: they stay until unpinned.
    fn drop(&mut self) {
        if let Some(ebpf) = self._ebpf.as_mut() {
            for (program, _) in PROGRAMS {
                if let Some(lsm) = ebpf.program_mut(program).and_then(|p| <&mut Lsm>::try_from(p).ok()) {
                    let _ = lsm.unload();
                }
            }
        }
    }
}
