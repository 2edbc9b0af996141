//! What a loader does with a pin directory it finds: the pure decision ([`plan`], [`recovery`])
//! from what the directory holds (read by `pins.rs`) and what this build is ([`Identity`]).
//! The I/O that carries a decision out is `pins.rs` (reading, recovering, committing) and
//! `load.rs` (loading and attaching).
//!
//! Identity. A pin directory records, in the pinned `enf_identity` map (`abi.h`, a value whose
//! own layout never changes), the pinned layout (`ENF_PIN_LAYOUT`, bumped whenever a pinned
//! map's key or value layout or the set of pins changes) and the build of the programs (the
//! SHA-256 of the BPF object that was loaded). The builds before identities pinned layout 1
//! (`ENF_PIN_LAYOUT_LEGACY`): no `enf_identity`, and `enf_seals` and `enf_task_scope` not
//! pinned; such a directory is recognised by its exact set of names ([`LEGACY_PINS`]).
//!
//! Decision ([`plan`]): nothing pinned -> [`Takeover::Fresh`]; this very layout and build, every
//! link present -> [`Takeover::Reuse`] (open the maps, load nothing); a layout in
//! [`READABLE_LAYOUTS`] with other programs (an older or newer build), or an incomplete one ->
//! [`Takeover::Replace`]; anything else (a newer or unknown layout, names without an identity
//! that are not the legacy set, a pinned map whose type or sizes are not this build's) ->
//! [`Takeover::Refuse`], before anything in the directory is touched (not even the owner
//! registration), so the pinned enforcer keeps enforcing as it was.
//!
//! Replacement without a gap (carried out by `pins.rs` and `load.rs`; every step is safe to
//! crash after, since the directory then holds the old enforcer, the new one, or both, all
//! attached, and the next start finishes or undoes it through [`recovery`]):
//! 1. Become the owner in the pinned `enf_guard` (shared with the new programs, step 3).
//! 2. Layout 1 only: pin the old programs' `enf_seals` and `enf_task_scope` (found through the
//!    pinned `enf_bprm_check` link's program's map ids) under their names. A crash leaves a
//!    legacy directory with two extra pins, still recognised as legacy.
//! 3. Load the new object with every map of the layout taken from its pin (`enf_scopes`,
//!    `enf_sets`, `enf_allowed`, `enf_events`, `enf_stats`, `enf_guard`, `enf_seals`,
//!    `enf_task_scope`): the new programs start with the scopes, digest sets, seals and sticky
//!    scopes in force, and share them with the old ones, so nothing is copied and nothing can
//!    drift while both run. Only the digest cache (and the overlay bookkeeping that serves it)
//!    is the new programs' own, empty: it costs hashes, not soundness.
//! 4. Pin the new identity as `enf_identity__new` (the mark of an uncommitted replacement).
//! 5. Attach the new programs in the usual order (cache invalidation and seal guards before what
//!    fills the cache and seals), each link pinned as `link_<program>__new`. From the first
//!    attach on, both builds judge every exec and mapping: an LSM denial by either denies, so
//!    the stricter wins. A crash in 4-5: [`Recovery::Abort`] removes every `*__new` pin (the new
//!    programs detach; the old ones never stopped).
//! 6. Commit: rename `enf_identity__new` over `enf_identity` (one atomic rename). A crash from
//!    here on: [`Recovery::RollForward`] finishes step 7.
//! 7. Rename each `link_<program>__new` over `link_<program>`: each rename atomically drops the
//!    old link's pin (its program detaches once the kernel lets go of the link) while the name
//!    always holds one of the two. Users of the digest cache go first, its invalidation last,
//!    as in an unpin, so the old programs never use a cache they no longer invalidate.
//! 8. Remove link pins this build does not have (programs an older build had and this one
//!    dropped): the new programs are all attached by then.
//!
//! What is lost: the old programs' digest cache (rebuilt by hashing). What stays: scopes, sets,
//! events, counters, the owner, the seals (a file judged before the switch stays unwritable
//! after it) and the sticky scopes (a task bound before the switch stays bound). Not covered: a
//! layout whose pinned maps changed format (none is known yet; such a layout must be added
//! here with a conversion before it can be taken over, and until then it is refused).
//!
//! Changing the pins: a new pinned map goes into `MAPS` (mod.rs), bumps `ENF_PIN_LAYOUT`, and
//! the previous layout stays in [`READABLE_LAYOUTS`] when its maps are unchanged (the
//! replacement creates the new map by name, the others are shared). A map whose key or value
//! changes bumps the layout too, and leaves the previous one out of [`READABLE_LAYOUTS`] until a
//! conversion exists; the map check of `pins.rs` refuses it meanwhile whatever the identity says.

use crate::abi;
use crate::Digest;

/// Every layout whose pinned maps this build's programs can share as they are (same types,
/// key and value layouts and meaning): the legacy one, layout 2 (this one without the per-scope
/// counters, which the replacement creates) and this build's own.
pub const READABLE_LAYOUTS: [u32; 3] = [abi::ENF_PIN_LAYOUT_LEGACY, abi::ENF_PIN_LAYOUT_2, abi::ENF_PIN_LAYOUT];

/// The pins of layout 1 (the builds before identities), exactly: 23 links and 6 maps. Frozen:
/// it describes what those builds pinned, whatever this build's programs are.
pub const LEGACY_PINS: [&str; 29] = [
    "link_enf_bprm_check",
    "link_enf_mmap_file",
    "link_enf_file_mprotect",
    "link_enf_privs_creds",
    "link_enf_patch_file_open",
    "link_enf_patch_ptrace_access",
    "link_enf_patch_ptrace_traceme",
    "link_enf_patch_anon_inode",
    "link_enf_patch_mmap_file",
    "link_enf_patch_file_mprotect",
    "link_enf_patch_exec_stack",
    "link_enf_seal_file_open",
    "link_enf_seal_inode_setattr",
    "link_enf_file_open",
    "link_enf_inode_setattr",
    "link_enf_task_alloc",
    "link_enf_inode_unlink",
    "link_enf_inode_rmdir",
    "link_enf_inode_rename",
    "link_enf_sb_umount",
    "link_enf_kernel_read_file",
    "link_enf_kernel_load_data",
    "link_enf_bpf",
    "enf_scopes",
    "enf_sets",
    "enf_allowed",
    "enf_events",
    "enf_stats",
    "enf_guard",
];

/// Which layout and which build of the programs a pin directory holds (or a build is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// The pinned layout (`ENF_PIN_LAYOUT` of the build that pinned).
    pub layout: u32,
    /// SHA-256 of the BPF object whose programs are pinned.
    pub build: Digest,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: String = self.build[..6].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "layout {} (build {short})", self.layout)
    }
}

/// What a pin directory was found to hold, after any interrupted replacement was recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No pins at all (or no directory).
    Nothing,
    /// The legacy layout: exactly [`LEGACY_PINS`] (plus the state maps a replacement pinned
    /// before it was interrupted), no identity.
    Legacy,
    /// An identity was read.
    Identity(Identity),
    /// Something else, described (names without an identity, an unreadable identity).
    Unrecognised(String),
}

/// What the directory says about the pins, as [`plan`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    /// What the directory holds.
    pub found: Found,
    /// Whether every link of this build's programs is pinned.
    pub complete: bool,
    /// Pinned maps whose type or sizes differ from this build's, described.
    pub conflicts: Vec<String>,
}

/// What to do with a pin directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// Nothing pinned: load, attach and pin this build.
    Fresh,
    /// This build is pinned: open its maps, load nothing.
    Reuse,
    /// Another build of a readable layout (or an incomplete one): replace its programs by this
    /// build's without a gap, sharing the pinned maps.
    Replace {
        /// The layout found.
        from: u32,
        /// Whether the old programs' state maps (`enf_seals`, `enf_task_scope`) are unpinned and
        /// must be taken from the programs themselves (layout 1).
        adopt_state: bool,
    },
    /// Not a layout this build can read: leave it as it is.
    Refuse {
        /// What was found, for the error.
        found: String,
    },
}

/// The state of an interrupted replacement (staged `*__new` pins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    /// No staged pin.
    None,
    /// `enf_identity__new` is there: the replacement never committed.
    Uncommitted,
    /// Staged links but no staged identity: it committed, and not every link was renamed.
    Committed,
}

/// What to do first about an interrupted replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Remove every staged pin: the old enforcer, never touched, stays.
    Abort,
    /// Rename every staged link over its final name: the new enforcer is the committed one.
    RollForward,
}

/// What to do about staged pins left by an interrupted replacement, if any.
pub fn recovery(staged: Staged) -> Option<Recovery> {
    match staged {
        Staged::None => None,
        Staged::Uncommitted => Some(Recovery::Abort),
        Staged::Committed => Some(Recovery::RollForward),
    }
}

/// What this build (`own`) does with a directory that holds `survey`.
pub fn plan(survey: &Survey, own: &Identity) -> Takeover {
    if !survey.conflicts.is_empty() {
        return Takeover::Refuse { found: format!("pinned maps of another format: {}", survey.conflicts.join("; ")) };
    }
    match &survey.found {
        Found::Nothing => Takeover::Fresh,
        Found::Unrecognised(what) => Takeover::Refuse { found: what.clone() },
        Found::Legacy => Takeover::Replace { from: abi::ENF_PIN_LAYOUT_LEGACY, adopt_state: true },
        Found::Identity(pinned) if !READABLE_LAYOUTS.contains(&pinned.layout) => {
            Takeover::Refuse { found: format!("an enforcer of {pinned}") }
        }
        Found::Identity(pinned) if pinned == own && survey.complete => Takeover::Reuse,
        Found::Identity(pinned) => Takeover::Replace {
            from: pinned.layout,
            // Only layout 1 left the state maps unpinned.
            adopt_state: pinned.layout == abi::ENF_PIN_LAYOUT_LEGACY,
        },
    }
}

/// The layouts this build reads, for an error message ("1, 2").
pub fn readable_layouts() -> String {
    READABLE_LAYOUTS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Identity {
        Identity { layout: abi::ENF_PIN_LAYOUT, build: [7; 32] }
    }

    fn survey(found: Found) -> Survey {
        Survey { found, complete: true, conflicts: Vec::new() }
    }

    #[test]
    fn an_empty_directory_gets_a_fresh_enforcer() {
        assert_eq!(plan(&survey(Found::Nothing), &own()), Takeover::Fresh);
    }

    #[test]
    fn the_same_build_is_reused_when_complete_and_replaced_when_not() {
        assert_eq!(plan(&survey(Found::Identity(own())), &own()), Takeover::Reuse);
        let incomplete = Survey { complete: false, ..survey(Found::Identity(own())) };
        assert_eq!(plan(&incomplete, &own()), Takeover::Replace { from: abi::ENF_PIN_LAYOUT, adopt_state: false });
    }

    #[test]
    fn other_programs_of_a_readable_layout_are_replaced() {
        let other = Identity { build: [8; 32], ..own() };
        assert_eq!(
            plan(&survey(Found::Identity(other)), &own()),
            Takeover::Replace { from: abi::ENF_PIN_LAYOUT, adopt_state: false }
        );
        let legacy_identity = Identity { layout: abi::ENF_PIN_LAYOUT_LEGACY, build: [8; 32] };
        assert_eq!(
            plan(&survey(Found::Identity(legacy_identity)), &own()),
            Takeover::Replace { from: abi::ENF_PIN_LAYOUT_LEGACY, adopt_state: true }
        );
    }

    #[test]
    fn the_legacy_layout_is_replaced_adopting_its_unpinned_state() {
        assert_eq!(
            plan(&survey(Found::Legacy), &own()),
            Takeover::Replace { from: abi::ENF_PIN_LAYOUT_LEGACY, adopt_state: true }
        );
    }

    #[test]
    fn a_newer_or_unknown_layout_is_refused_even_with_the_same_build() {
        for layout in [abi::ENF_PIN_LAYOUT + 1, 0, 99] {
            let pinned = Identity { layout, ..own() };
            match plan(&survey(Found::Identity(pinned)), &own()) {
                Takeover::Refuse { found } => assert!(found.contains(&format!("layout {layout}")), "{found}"),
                other => panic!("layout {layout}: {other:?}"),
            }
        }
    }

    #[test]
    fn names_without_an_identity_are_refused_unless_legacy() {
        let what = "3 pins without enf_identity".to_string();
        assert_eq!(plan(&survey(Found::Unrecognised(what.clone())), &own()), Takeover::Refuse { found: what });
    }

    #[test]
    fn maps_of_another_format_are_refused_whatever_the_identity_says() {
        for found in [Found::Identity(own()), Found::Legacy, Found::Identity(Identity { build: [1; 32], ..own() })] {
            let s = Survey { conflicts: vec!["enf_scopes: value size 12, this build 8".into()], ..survey(found) };
            assert!(matches!(plan(&s, &own()), Takeover::Refuse { found } if found.contains("enf_scopes")));
        }
    }

    #[test]
    fn an_uncommitted_replacement_is_undone_and_a_committed_one_finished() {
        assert_eq!(recovery(Staged::None), None);
        assert_eq!(recovery(Staged::Uncommitted), Some(Recovery::Abort));
        assert_eq!(recovery(Staged::Committed), Some(Recovery::RollForward));
    }

    #[test]
    fn the_legacy_names_are_those_the_current_build_pins_for_the_same_programs() {
        // The current build pins every legacy name (it added pins, it removed none): a
        // replacement from layout 1 leaves no stale pin behind.
        let current = super::super::pins::pin_names();
        for name in LEGACY_PINS {
            assert!(current.iter().any(|n| n == name), "{name} is no longer pinned");
        }
    }
}
