//! The per-statement verification cache: an unchanged statement is verified once across plans,
//! and nothing its verdict depends on can change without it being verified again (hostile: a
//! revoked key, time past the expiry, a different set of signatures for the same payload).

mod support;

use enforce::plan::{self, Plan, PlanError};
use enforce::policy::{self, Policy};
use enforce::verified::StatementCache;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use support::*;

const DAY: Duration = Duration::from_secs(86400);

struct Fixture {
    dir: tempfile::TempDir,
    image: String,
    trust: PathBuf,
    cgroup: TestCgroup,
}

fn fixture(name: &str, threshold: usize) -> Option<Fixture> {
    let cgroup = TestCgroup::new(name)?;
    let dir = tempdir();
    let (written, _) = write_image(&dir.path().join("image"));
    let trust = trust_store(&dir.path().join("trust"), &["a", "b"], threshold);
    Some(Fixture { image: written.reference(), trust, cgroup, dir })
}

impl Fixture {
    fn policy(&self, bundles: &[&Path]) -> Policy {
        let path = write_policy(self.dir.path(), &one_scope(&self.trust, &self.cgroup.path, "enforce", bundles, None));
        policy::load(&path).unwrap()
    }

    fn assemble(&self, cache: &mut StatementCache, bundles: &[&Path], now: SystemTime) -> Result<Plan, PlanError> {
        let policy = self.policy(bundles);
        plan::assemble(&policy, &policy.scopes, cache, now)
    }
}

fn refused(result: Result<Plan, PlanError>, because: &str) {
    match result {
        Ok(plan) => panic!("served a verdict that no longer holds: {plan:?}"),
        Err(e) => {
            let text = enforce::daemon::chain(&e);
            assert!(e.is_verification_failure() && text.contains(because), "{text}");
        }
    }
}

#[test]
fn an_unchanged_statement_is_verified_once() {
    let Some(f) = fixture("cache-once", 1) else { return };
    let bundle = sign_now(&f.image, "a", "web", 1, &f.dir.path().join("a.json"));
    let mut cache = StatementCache::default();
    let first = f.assemble(&mut cache, &[&bundle], SystemTime::now()).unwrap();
    let second = f.assemble(&mut cache, &[&bundle], SystemTime::now()).unwrap();
    assert_eq!(cache.stats(), (1, 1), "(hits, misses)");
    assert_eq!(first, second);
    assert!(std::sync::Arc::ptr_eq(&first.scopes[0].digests, &second.scopes[0].digests), "the set is shared");
}

#[test]
fn a_key_revoked_after_caching_refuses_the_plan() {
    let Some(f) = fixture("cache-revoked", 1) else { return };
    let bundle = sign_now(&f.image, "a", "web", 1, &f.dir.path().join("a.json"));
    let mut cache = StatementCache::default();
    f.assemble(&mut cache, &[&bundle], SystemTime::now()).unwrap();
    let mut trust = keys::TrustStore::open(&f.trust).unwrap();
    trust.revoke(&testdata::keys::test_key("a").public_key().key_id()).unwrap();
    refused(f.assemble(&mut cache, &[&bundle], SystemTime::now()), "signatures");
}

#[test]
fn a_cached_statement_past_its_expiry_is_refused() {
    let Some(f) = fixture("cache-expired", 1) else { return };
    let now = SystemTime::now();
    let bundle = sign_to(&f.image, &["a"], "web", 1, now, DAY, &f.dir.path().join("a.json"));
    let mut cache = StatementCache::default();
    f.assemble(&mut cache, &[&bundle], now).unwrap();
    refused(f.assemble(&mut cache, &[&bundle], now + 2 * DAY), "expir");
}

#[test]
fn the_same_payload_with_fewer_signatures_is_verified_again() {
    // Threshold 2: the statement passes with a's and b's bundles pooled, not with a's alone.
    let Some(f) = fixture("cache-signers", 2) else { return };
    let now = SystemTime::now();
    let by_a = sign_to(&f.image, &["a"], "web", 1, now, DAY, &f.dir.path().join("a.json"));
    let by_b = sign_to(&f.image, &["b"], "web", 1, now, DAY, &f.dir.path().join("b.json"));
    let mut cache = StatementCache::default();
    f.assemble(&mut cache, &[&by_a, &by_b], now).unwrap();
    refused(f.assemble(&mut cache, &[&by_a], now), "threshold");
}

/// A statement the plan in force no longer uses (its last container stopped) is still cached
/// for the next container of that image, up to `KEPT_UNUSED` such statements, the most
/// recently used first (seen failing when only what the last plan used was kept: every
/// container of an image started after the previous one stopped verified its bundles anew).
#[test]
fn statements_no_plan_uses_stay_cached_for_the_next_container_up_to_a_cap() {
    let Some(f) = fixture("cache-kept", 1) else { return };
    let signed: Vec<PathBuf> = (0..enforce::verified::KEPT_UNUSED + 2)
        .map(|i| sign_now(&f.image, "a", &format!("image-{i}"), 1, &f.dir.path().join(format!("{i}.json"))))
        .collect();
    let mut cache = StatementCache::default();
    let now = SystemTime::now();
    f.assemble(&mut cache, &[&signed[0]], now).unwrap();
    f.assemble(&mut cache, &[&signed[1]], now).unwrap();
    let misses = cache.stats().1;
    f.assemble(&mut cache, &[&signed[0]], now).unwrap();
    assert_eq!(cache.stats().1, misses, "the statement of a stopped container is still cached");
    for bundle in &signed[1..] {
        f.assemble(&mut cache, &[bundle], now).unwrap();
    }
    assert!(cache.len() <= enforce::verified::KEPT_UNUSED + 1, "capped: {} statements", cache.len());
    let misses = cache.stats().1;
    f.assemble(&mut cache, &[&signed[0]], now).unwrap();
    assert_eq!(cache.stats().1, misses + 1, "the least recently used is verified again");
    f.assemble(&mut cache, &[&signed[signed.len() - 2]], now).unwrap();
    assert_eq!(cache.stats().1, misses + 1, "a recent one is still cached");
}

/// Hostile: a statement kept although no plan uses it (its container stopped) is not served
/// after its signer's key is revoked.
#[test]
fn a_kept_statement_is_refused_after_its_key_is_revoked() {
    let Some(f) = fixture("cache-kept-revoked", 1) else { return };
    let first = sign_now(&f.image, "a", "web", 1, &f.dir.path().join("a.json"));
    let other = sign_now(&f.image, "b", "other", 1, &f.dir.path().join("b.json"));
    let mut cache = StatementCache::default();
    f.assemble(&mut cache, &[&first], SystemTime::now()).unwrap();
    f.assemble(&mut cache, &[&other], SystemTime::now()).unwrap();
    let mut trust = keys::TrustStore::open(&f.trust).unwrap();
    trust.revoke(&testdata::keys::test_key("a").public_key().key_id()).unwrap();
    refused(f.assemble(&mut cache, &[&first], SystemTime::now()), "signatures");
}
