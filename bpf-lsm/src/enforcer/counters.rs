//! Per-scope counters (`enf_scope_stats`, keyed by a scope's cgroup id): decisions allowed,
//! denied and audited, events dropped because the ring buffer was full, and the number of events
//! the scope emitted (dropped ones included), so each event's `scope_seq` shows a reader the
//! gaps. The programs make a scope's entry on its first decision; entries are never deleted here
//! (cgroup ids are not reused; the map is an LRU hash, so long-gone scopes make room).

use aya::maps::{HashMap, MapData};

use super::{is_absent, map_err, Enforcer, EnforcerError, SCOPE_STATS_MAP};
use crate::abi::EnfScopeStats;

/// One scope's counters, since the programs were loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeStats {
    /// Decisions that allowed known content (execs and executable mappings).
    pub allowed: u64,
    /// Refusals.
    pub denied: u64,
    /// Findings let through in audit mode.
    pub audited: u64,
    /// Events lost because the ring buffer was full.
    pub dropped: u64,
    /// Events emitted or dropped: the number the next event will carry.
    pub events: u64,
}

impl From<&EnfScopeStats> for ScopeStats {
    fn from(raw: &EnfScopeStats) -> Self {
        ScopeStats {
            allowed: raw.allowed,
            denied: raw.denied,
            audited: raw.audited,
            dropped: raw.dropped,
            events: raw.seq,
        }
    }
}

impl Enforcer {
    /// The counters of the scope whose cgroup id is `cgroup_id`: zero if it has decided nothing
    /// yet, `None` if the pinned enforcer predates the counters.
    pub fn scope_stats(&self, cgroup_id: u64) -> Result<Option<ScopeStats>, EnforcerError> {
        let Some(map) = &self.scope_stats_map else { return Ok(None) };
        let map: HashMap<&MapData, u64, EnfScopeStats> = map_err(SCOPE_STATS_MAP, HashMap::try_from(map))?;
        match map.get(&cgroup_id, 0) {
            Ok(raw) => Ok(Some(ScopeStats::from(&raw))),
            Err(e) if is_absent(&e) => Ok(Some(ScopeStats::default())),
            Err(e) => Err(EnforcerError::Map { name: SCOPE_STATS_MAP, source: e }),
        }
    }
}
