//! The pin directory on bpffs, read and changed: what it holds ([`survey`], the identity, the
//! staged pins of an interrupted replacement), the steps of a replacement that touch it
//! ([`become_owner`], [`adopt_state`], [`commit`], [`abort`], [`recover`]) and [`unpin`]. The
//! decisions are `takeover.rs`'s (the argument for each step is there); this module only carries
//! them out. bpffs holds no regular files: the identity is a pinned one-element map.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData, MapInfo};
use aya::programs::links::{FdLink, PinnedLink};

use super::load::{self, register_owner, Build};
use super::takeover::{self, Found, Identity, Recovery, Staged, Survey, Takeover, LEGACY_PINS};
use super::{map_err, EnforcerError, GUARD_MAP, MAPS};
use crate::abi::EnfIdentity;

/// The pinned identity (`abi.h`, `struct enf_identity`).
pub(super) const IDENTITY_MAP: &str = "enf_identity";
/// The programs' own state shared across an upgrade: the seals on judged files and the sticky
/// scopes of tasks. Pinned since layout 2; in layout 1 they are reached through the programs.
const STATE_MAPS: [&str; 2] = ["enf_seals", "enf_task_scope"];
/// What a replacement appends to the names it pins before it commits (bpffs refuses names with
/// a dot).
const STAGED_SUFFIX: &str = "__new";
/// The link whose program holds the state maps (every deciding program uses both).
const STATE_LINK: &str = "link_enf_bprm_check";

/// One pinned link, as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedLinkInfo {
    /// The pin's file name (`link_enf_bprm_check`, ...).
    pub name: String,
    /// The kernel's id of the link.
    pub link_id: u32,
    /// The kernel's id of the program attached through it.
    pub program_id: u32,
}

/// `name` as pinned before a replacement commits.
pub(super) fn staged(name: &str) -> String {
    format!("{name}{STAGED_SUFFIX}")
}

/// Every map of the layout, pinned by name and shared with the programs of the next build.
pub(super) fn shared_maps() -> impl Iterator<Item = &'static str> {
    MAPS.into_iter().chain(STATE_MAPS)
}

/// Every final name this build pins.
#[cfg(test)]
pub(super) fn pin_names() -> Vec<String> {
    let maps = shared_maps().chain([IDENTITY_MAP]).map(str::to_string);
    load::detach_order().into_iter().chain(maps).collect()
}

/// The names in `dir` (none if it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>, EnforcerError> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(EnforcerError::ReadPins { dir: dir.into(), source }),
    };
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| EnforcerError::ReadPins { dir: dir.into(), source })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The pinned map `name` under `dir`.
pub(super) fn open_map(dir: &Path, name: &'static str) -> Result<Map, EnforcerError> {
    let path = dir.join(name);
    MapData::from_pin(&path).and_then(Map::from_map_data).map_err(|source| EnforcerError::OpenPin { path, source })
}

/// The identity pinned under `dir`, if any.
pub(super) fn read_identity(dir: &Path) -> Result<Option<Identity>, EnforcerError> {
    if !dir.join(IDENTITY_MAP).exists() {
        return Ok(None);
    }
    match identity_at(dir, IDENTITY_MAP)? {
        Ok(identity) => Ok(Some(identity)),
        Err(what) => Err(EnforcerError::Link { path: dir.join(IDENTITY_MAP), what }),
    }
}

/// The identity in the pinned map `name`, or what is wrong with it (a map of another shape).
fn identity_at(dir: &Path, name: &'static str) -> Result<Result<Identity, String>, EnforcerError> {
    let path = dir.join(name);
    let info = MapInfo::from_pin(&path).map_err(|source| EnforcerError::OpenPin { path: path.clone(), source })?;
    let want = size_of::<EnfIdentity>() as u32;
    if info.key_size() != 4 || info.value_size() != want || info.max_entries() < 1 {
        return Ok(Err(format!(
            "an {name} of key size {}, value size {} (an identity is key size 4, value size {want})",
            info.key_size(),
            info.value_size()
        )));
    }
    let map = open_map(dir, IDENTITY_MAP)?;
    let array: Array<&MapData, EnfIdentity> = map_err(IDENTITY_MAP, Array::try_from(&map))?;
    let raw = map_err(IDENTITY_MAP, array.get(&0, 0))?;
    Ok(Ok(Identity { layout: raw.layout, build: raw.build }))
}

/// What `dir` holds, for [`takeover::plan`] (staged pins are left out: [`recover`] deals with
/// them first).
pub(super) fn survey(dir: &Path, build: Build) -> Result<Survey, EnforcerError> {
    let names: Vec<String> = entries(dir)?.into_iter().filter(|n| !n.ends_with(STAGED_SUFFIX)).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    let found = if names.is_empty() {
        Found::Nothing
    } else if has(IDENTITY_MAP) {
        match identity_at(dir, IDENTITY_MAP)? {
            Ok(identity) => Found::Identity(identity),
            Err(what) => Found::Unrecognised(what),
        }
    } else if LEGACY_PINS.iter().all(|n| has(n))
        && names.iter().all(|n| LEGACY_PINS.contains(&n.as_str()) || STATE_MAPS.contains(&n.as_str()))
    {
        Found::Legacy
    } else if names.iter().all(|n| shared_maps().any(|m| m == n)) {
        // Maps of a first attach that never got to its links: nothing enforces, and a fresh
        // load takes them up by name.
        Found::Nothing
    } else {
        let missing: Vec<&str> = LEGACY_PINS.iter().copied().filter(|n| !has(n)).collect();
        let unknown: Vec<&str> =
            names.iter().map(String::as_str).filter(|n| !LEGACY_PINS.contains(n) && !STATE_MAPS.contains(n)).collect();
        Found::Unrecognised(format!(
            "{} pins without {IDENTITY_MAP} that are not the legacy layout 1 (missing: {}; not of layout 1: {})",
            names.len(),
            list(&missing),
            list(&unknown)
        ))
    };
    let complete = load::deciding_links().all(|n| has(&n));
    let conflicts = conflicts(dir, &names, build)?;
    Ok(Survey { found, complete, conflicts })
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The pinned maps of `names` whose type or sizes differ from `build`'s, described.
fn conflicts(dir: &Path, names: &[String], build: Build) -> Result<Vec<String>, EnforcerError> {
    let object = aya_obj::Object::parse(build.object()).map_err(|e| EnforcerError::Object(e.into()))?;
    let mut conflicts = Vec::new();
    for name in shared_maps().filter(|m| names.iter().any(|n| n == m)) {
        let path = dir.join(name);
        let info = MapInfo::from_pin(&path).map_err(|source| EnforcerError::OpenPin { path, source })?;
        let def = object.maps.get(name).ok_or(EnforcerError::Missing { kind: "map", name })?;
        conflicts.extend(compare_map(name, &info, def));
    }
    Ok(conflicts)
}

/// How a kernel map differs from this build's definition of it, if it does.
fn compare_map(name: &str, info: &MapInfo, def: &aya_obj::Map) -> Option<String> {
    let kind = info.map_type().map(|t| t as u32).unwrap_or(u32::MAX);
    let found = (kind, info.key_size(), info.value_size());
    let want = (def.map_type(), def.key_size(), def.value_size());
    (found != want).then(|| {
        format!(
            "{name} is of type {}, key size {}, value size {} (this build: type {}, key size {}, value size {})",
            found.0, found.1, found.2, want.0, want.1, want.2
        )
    })
}

/// Whether a replacement was interrupted, and where.
fn staged_state(dir: &Path) -> Result<Staged, EnforcerError> {
    let names = entries(dir)?;
    Ok(if names.iter().any(|n| *n == staged(IDENTITY_MAP)) {
        Staged::Uncommitted
    } else if names.iter().any(|n| n.ends_with(STAGED_SUFFIX)) {
        Staged::Committed
    } else {
        Staged::None
    })
}

/// Undoes or finishes an interrupted replacement under `dir` ([`takeover::recovery`]), if the
/// layout committed there is one `build` reads (otherwise nothing is touched, and the caller's
/// plan refuses it).
pub(super) fn recover(dir: &Path, build: Build) -> Result<(), EnforcerError> {
    let Some(recovery) = takeover::recovery(staged_state(dir)?) else {
        return Ok(());
    };
    if let Takeover::Refuse { .. } = takeover::plan(&survey(dir, build)?, &build.identity()) {
        return Ok(());
    }
    become_owner(dir)?;
    match recovery {
        Recovery::Abort => abort(dir),
        Recovery::RollForward => roll_forward(dir),
    }
}

/// Registers the caller as the owner in the pinned `enf_guard` (only the owner may rename and
/// remove the pins), if there is one.
pub(super) fn become_owner(dir: &Path) -> Result<(), EnforcerError> {
    if dir.join(GUARD_MAP).exists() {
        register_owner(&mut open_map(dir, GUARD_MAP)?, None)?;
    }
    Ok(())
}

/// Pins the layout-1 programs' `enf_seals` and `enf_task_scope` under `dir` (step 2 of a
/// replacement), so the new programs share them.
pub(super) fn adopt_state(dir: &Path, build: Build) -> Result<(), EnforcerError> {
    if STATE_MAPS.iter().all(|m| dir.join(m).exists()) {
        return Ok(());
    }
    let path = dir.join(STATE_LINK);
    let failed = |what: String| EnforcerError::Link { path: path.clone(), what };
    let link: FdLink = PinnedLink::from_pin(&path).map_err(|e| failed(e.to_string()))?.into();
    let program_id = link.info().map_err(|e| failed(e.to_string()))?.program_id();
    let program = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == program_id)
        .ok_or_else(|| failed(format!("its program {program_id} is not loaded")))?;
    let map_ids = program.map_ids().map_err(|e| failed(e.to_string()))?.unwrap_or_default();
    let object = aya_obj::Object::parse(build.object()).map_err(|e| EnforcerError::Object(e.into()))?;
    for id in map_ids {
        let info = MapInfo::from_id(id).map_err(|e| failed(format!("map {id}: {e}")))?;
        let Some(name) = info.name_as_str().and_then(|n| STATE_MAPS.into_iter().find(|m| *m == n)) else {
            continue;
        };
        let target = dir.join(name);
        if target.exists() {
            continue;
        }
        let def = object.maps.get(name).ok_or(EnforcerError::Missing { kind: "map", name })?;
        if let Some(conflict) = compare_map(name, &info, def) {
            return Err(failed(conflict));
        }
        let map = MapData::from_id(id).map_err(|e| failed(format!("map {id}: {e}")))?;
        map.pin(&target).map_err(|source| EnforcerError::Pin { path: target.clone(), source: Box::new(source) })?;
    }
    match STATE_MAPS.iter().find(|m| !dir.join(m).exists()) {
        Some(missing) => Err(failed(format!("its program {program_id} has no map {missing}"))),
        None => Ok(()),
    }
}

/// Steps 6 to 8 of a replacement: the staged identity becomes the identity (the commit), every
/// staged link replaces its final name, and links this build does not have are removed.
pub(super) fn commit(dir: &Path) -> Result<(), EnforcerError> {
    rename(dir, &staged(IDENTITY_MAP), IDENTITY_MAP)?;
    roll_forward(dir)?;
    remove_stale_links(dir)
}

/// Renames every staged link over its final name, users of the digest cache first.
fn roll_forward(dir: &Path) -> Result<(), EnforcerError> {
    let names = entries(dir)?;
    for name in link_order(&names).into_iter().filter(|n| n.ends_with(STAGED_SUFFIX)) {
        rename(dir, &name, name.trim_end_matches(STAGED_SUFFIX))?;
    }
    Ok(())
}

/// Removes the final link pins of programs this build does not have (an older build's).
pub(super) fn remove_stale_links(dir: &Path) -> Result<(), EnforcerError> {
    let own: BTreeSet<String> = load::detach_order().into_iter().collect();
    for name in entries(dir)? {
        if name.starts_with("link_") && !name.ends_with(STAGED_SUFFIX) && !own.contains(&name) {
            remove(dir, &name)?;
        }
    }
    Ok(())
}

/// Removes every staged pin: the links first (their programs detach), the staged identity last,
/// so an abort interrupted in turn is still recognised as uncommitted.
pub(super) fn abort(dir: &Path) -> Result<(), EnforcerError> {
    let names = entries(dir)?;
    for name in link_order(&names).into_iter().filter(|n| n.ends_with(STAGED_SUFFIX)) {
        remove(dir, &name)?;
    }
    let identity = staged(IDENTITY_MAP);
    for name in names.iter().filter(|n| n.ends_with(STAGED_SUFFIX) && !n.starts_with("link_") && **n != identity) {
        remove(dir, name)?;
    }
    remove(dir, &identity)
}

/// Removes everything pinned under `dir` (links first, in detach order, then the rest), then
/// `dir` itself if it is left empty.
pub(super) fn unpin(dir: &Path) -> Result<(), EnforcerError> {
    // Only the registered owner may remove the pins: become it.
    become_owner(dir)?;
    let names = entries(dir)?;
    let links = link_order(&names);
    for name in &links {
        remove(dir, name)?;
    }
    for name in names.iter().filter(|n| !links.contains(n)) {
        remove(dir, name)?;
    }
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// The link pins among `names` (final and staged), in detach order. Links this build does not
/// know (another build's) go first: they may use that build's digest cache, and a user going
/// early is harmless.
fn link_order(names: &[String]) -> Vec<String> {
    let order = load::detach_order();
    let rank = |name: &str| {
        let base = name.trim_end_matches(STAGED_SUFFIX);
        order.iter().position(|n| n == base).map_or(0, |i| i + 1)
    };
    let mut links: Vec<String> = names.iter().filter(|n| n.starts_with("link_")).cloned().collect();
    links.sort_by_key(|n| rank(n));
    links
}

/// The links pinned under `dir`, by name.
pub(super) fn pinned_links(dir: &Path) -> Result<Vec<PinnedLinkInfo>, EnforcerError> {
    let mut links = Vec::new();
    for name in entries(dir)?.into_iter().filter(|n| n.starts_with("link_")) {
        let path = dir.join(&name);
        let failed = |what: String| EnforcerError::Link { path: path.clone(), what };
        let link: FdLink = PinnedLink::from_pin(&path).map_err(|e| failed(e.to_string()))?.into();
        let info = link.info().map_err(|e| failed(e.to_string()))?;
        links.push(PinnedLinkInfo { name, link_id: info.id(), program_id: info.program_id() });
    }
    Ok(links)
}

fn rename(dir: &Path, from: &str, to: &str) -> Result<(), EnforcerError> {
    let (from, to): (PathBuf, PathBuf) = (dir.join(from), dir.join(to));
    fs::rename(&from, &to).map_err(|source| EnforcerError::Rename { from, to, source })
}

fn remove(dir: &Path, name: &str) -> Result<(), EnforcerError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(EnforcerError::Unpin { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_go_in_detach_order_staged_beside_final_and_unknown_first() {
        let names: Vec<String> =
            ["enf_scopes", "link_enf_bpf", "link_enf_old_thing", "link_enf_bprm_check__new", "link_enf_file_open"]
                .map(String::from)
                .to_vec();
        assert_eq!(
            link_order(&names),
            ["link_enf_old_thing", "link_enf_bprm_check__new", "link_enf_file_open", "link_enf_bpf"]
        );
    }
}
