//! Scopes and digest sets in the maps: which cgroups are scopes ([`Enforcer::set_scope`]), and
//! the set of (digest, privileges) each scope id allows, replaced whole without a window
//! ([`Enforcer::replace_entries`]: fill a fresh set id, repoint `enf_sets` in one update, then
//! delete the old pairs; the kernel side's half of the argument is in `enforcer.bpf.c`).
//!
//! A map that is full refuses the change whole: an insert the kernel refuses (`E2BIG`) is
//! [`EnforcerError::MapFull`], naming the map, and what was written of a new set is taken out
//! again (the entries this call inserted, not a scan of the map), so the set in force stays.

use super::{
    digest_key, ignore_absent, insert_err, is_absent, is_errno, map_err, Enforcer, EnforcerError, Privs, Scope,
    ALLOWED_MAP, BPF_NOEXIST, EEXIST, SCOPES_MAP, SETS_MAP,
};
use crate::abi::EnfScope;
use crate::Digest;
use aya::maps::IterableMap as _;

impl Enforcer {
    /// Every cgroup that is a scope, with its settings.
    pub fn scopes_in_force(&mut self) -> Result<Vec<(u64, Scope)>, EnforcerError> {
        let map = self.scopes()?;
        let mut scopes = Vec::new();
        for entry in map.iter() {
            let (cgroup_id, raw) = map_err(SCOPES_MAP, entry)?;
            scopes.push((cgroup_id, Scope::from_raw(&raw)));
        }
        scopes.sort_by_key(|(cgroup_id, _)| *cgroup_id);
        Ok(scopes)
    }

    /// How many digests the set of scope `scope_id` holds.
    pub fn digest_count(&mut self, scope_id: u32) -> Result<usize, EnforcerError> {
        Ok(match self.current_set(scope_id)? {
            Some(set_id) => self.set_sizes.get(&set_id).copied().unwrap_or(0),
            None => 0,
        })
    }

    /// The scope ids that have a digest set, in order.
    pub fn scope_ids_with_sets(&mut self) -> Result<Vec<u32>, EnforcerError> {
        let sets = self.sets()?;
        let mut ids = Vec::new();
        for entry in sets.iter() {
            ids.push(map_err(SETS_MAP, entry)?.0);
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Makes the cgroup `cgroup_id` a scope, or changes its settings.
    pub fn set_scope(&mut self, cgroup_id: u64, scope: Scope) -> Result<(), EnforcerError> {
        let raw = EnfScope { scope_id: scope.id, mode: scope.mode.to_raw(), flags: scope.flags(), pad: 0 };
        let mut map = self.scopes()?;
        map.insert(cgroup_id, raw, 0).map_err(|e| insert_err(SCOPES_MAP, map.map(), e))
    }

    /// Stops enforcing the cgroup `cgroup_id`: its tasks are untouched again
    /// (unless an ancestor cgroup is a scope). The digest set of its scope id
    /// stays (other cgroups may share it). Removing a cgroup that is not a
    /// scope is not an error.
    pub fn remove_scope(&mut self, cgroup_id: u64) -> Result<(), EnforcerError> {
        let mut map = self.scopes()?;
        ignore_absent(SCOPES_MAP, map.remove(&cgroup_id))
    }

    /// Makes `digests` the whole digest set of scope `scope_id`, atomically:
    /// a decision racing with the call sees the old set or the new one.
    /// Every digest gets [`Privs::NONE`]: a setuid, setgid or capability-gaining exec of it is
    /// refused ([`Enforcer::replace_entries`] says otherwise).
    pub fn replace_digests(&mut self, scope_id: u32, digests: &[Digest]) -> Result<(), EnforcerError> {
        let entries: Vec<(Digest, Privs)> = digests.iter().map(|d| (*d, Privs::NONE)).collect();
        self.replace_entries(scope_id, &entries)
    }

    /// Makes `entries` the whole digest set of scope `scope_id`, each digest with the privileges
    /// an exec of it may have, atomically as [`Enforcer::replace_digests`]. A digest given more
    /// than once gets the merge of its privileges ([`Privs::merge`]).
    pub fn replace_entries(&mut self, scope_id: u32, entries: &[(Digest, Privs)]) -> Result<(), EnforcerError> {
        let mut merged: std::collections::BTreeMap<Digest, Privs> = std::collections::BTreeMap::new();
        for (digest, privs) in entries {
            merged.entry(*digest).and_modify(|p| *p = p.merge(*privs)).or_insert(*privs);
        }
        let old = self.current_set(scope_id)?;
        let new = self.next_set_id;
        self.next_set_id = self.next_set_id.wrapping_add(1).max(1);
        // On failure fill_set has taken out what it wrote of the new set: the old one stays.
        self.fill_set(new, &merged)?;
        let pointed = {
            let mut sets = self.sets()?;
            sets.insert(scope_id, new, 0).map_err(|e| insert_err(SETS_MAP, sets.map(), e))
        };
        if let Err(e) = pointed {
            // Nothing points at the new set (enf_sets is full, say): take it out again, the old
            // one stays in force.
            self.set_sizes.remove(&new);
            if let Ok(mut map) = self.allowed() {
                for digest in merged.keys() {
                    let _ = map.remove(&digest_key(new, *digest));
                }
            }
            return Err(e);
        }
        match old {
            Some(old) => self.clear_set(old),
            None => Ok(()),
        }
    }

    /// The privileges scope `scope_id`'s set in force gives `digest`; `None` when the digest is
    /// not in it (or the scope has no set).
    pub fn privileges(&mut self, scope_id: u32, digest: &Digest) -> Result<Option<Privs>, EnforcerError> {
        let Some(set_id) = self.current_set(scope_id)? else {
            return Ok(None);
        };
        let map = self.allowed()?;
        match map.get(&digest_key(set_id, *digest), 0) {
            Ok(raw) => Ok(Some(Privs::from_raw(&raw))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(EnforcerError::Map { name: ALLOWED_MAP, source }),
        }
    }

    /// Removes `digests` from the digest set of scope `scope_id`; digests not
    /// in the set are ignored. A set left empty is forgotten (as by
    /// [`Enforcer::remove_digest_set`]).
    pub fn revoke_digests(&mut self, scope_id: u32, digests: &[Digest]) -> Result<(), EnforcerError> {
        let Some(set_id) = self.current_set(scope_id)? else {
            return Ok(());
        };
        let mut removed = 0;
        {
            let mut map = self.allowed()?;
            for digest in digests {
                match map.remove(&digest_key(set_id, *digest)) {
                    Ok(()) => removed += 1,
                    Err(e) if is_absent(&e) => {}
                    Err(source) => return Err(EnforcerError::Map { name: ALLOWED_MAP, source }),
                }
            }
        }
        let size = self.set_sizes.entry(set_id).or_default();
        *size = size.saturating_sub(removed);
        if *size == 0 {
            self.remove_digest_set(scope_id)?;
        }
        Ok(())
    }

    /// Empties and forgets the digest set of scope `scope_id`: cgroups still
    /// pointing at the scope then allow nothing (enforce) or report
    /// everything (audit).
    pub fn remove_digest_set(&mut self, scope_id: u32) -> Result<(), EnforcerError> {
        let Some(set_id) = self.current_set(scope_id)? else {
            return Ok(());
        };
        let mut sets = self.sets()?;
        ignore_absent(SETS_MAP, sets.remove(&scope_id))?;
        self.clear_set(set_id)
    }

    /// The set id scope `scope_id` points at, if any.
    fn current_set(&mut self, scope_id: u32) -> Result<Option<u32>, EnforcerError> {
        let sets = self.sets()?;
        match sets.get(&scope_id, 0) {
            Ok(set_id) => Ok(Some(set_id)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(source) => Err(EnforcerError::Map { name: SETS_MAP, source }),
        }
    }

    /// Writes `entries` as set `set_id` (a fresh one). On failure the entries written here are
    /// removed again, so nothing of the set is left.
    fn fill_set(
        &mut self,
        set_id: u32,
        entries: &std::collections::BTreeMap<Digest, Privs>,
    ) -> Result<(), EnforcerError> {
        let mut written = Vec::new();
        let mut map = self.allowed()?;
        let mut result: Result<(), EnforcerError> = Ok(());
        for (digest, privs) in entries {
            let key = digest_key(set_id, *digest);
            match map.insert(key, privs.to_raw(&key), BPF_NOEXIST) {
                Ok(()) => written.push(key),
                Err(e) if is_errno(&e, EEXIST) => {}
                Err(e) => {
                    result = Err(insert_err(ALLOWED_MAP, map.map(), e));
                    break;
                }
            }
        }
        if result.is_err() {
            for key in &written {
                let _ = map.remove(key);
            }
            return result;
        }
        *self.set_sizes.entry(set_id).or_default() += written.len();
        Ok(())
    }

    /// Deletes every pair of set `set_id`.
    fn clear_set(&mut self, set_id: u32) -> Result<(), EnforcerError> {
        self.set_sizes.remove(&set_id);
        let mut map = self.allowed()?;
        let mut doomed = Vec::new();
        for key in map.keys() {
            let key = map_err(ALLOWED_MAP, key)?;
            if key.set_id == set_id {
                doomed.push(key);
            }
        }
        for key in doomed {
            ignore_absent(ALLOWED_MAP, map.remove(&key))?;
        }
        Ok(())
    }
}
