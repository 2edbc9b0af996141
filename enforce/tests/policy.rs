//! Policy files: every field checked, errors naming the file and the field, relative paths
//! resolved against the policy's directory.

mod support;

use enforce::policy::{self, EventSink, Mode, PolicyError, Profile, Violation};
use std::path::{Path, PathBuf};

const GOOD: &str = r#"
trust = "trust"
events = "events.jsonl"
pin_dir = "/sys/fs/bpf/imgsign-test"

[[scope]]
name = "web"
cgroup = "/sys/fs/cgroup/web"
mode = "enforce"
bundles = ["web.sigstore.json", "/abs/web-cosigned.json"]
image = "oci:images/web:latest"

[[scope]]
name = "node"
cgroup = "/sys/fs/cgroup"
mode = "audit"
remote_fs = true
bundles = ["host.json"]
"#;

fn parse(text: &str) -> Result<policy::Policy, PolicyError> {
    policy::parse(text, Path::new("/etc/imgsign/policy.toml"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => enforce::daemon::chain(&e),
    }
}

#[test]
fn a_good_policy_resolves_relative_paths_against_its_directory() {
    let p = parse(GOOD).unwrap();
    assert_eq!(p.trust, PathBuf::from("/etc/imgsign/trust"));
    assert_eq!(p.events, EventSink::File("/etc/imgsign/events.jsonl".into()));
    assert_eq!(p.pin_dir, PathBuf::from("/sys/fs/bpf/imgsign-test"));
    assert_eq!(p.scopes.len(), 2);
    let web = &p.scopes[0];
    assert_eq!((web.name.as_str(), web.mode), ("web", Mode::Enforce));
    assert_eq!(
        web.bundles,
        vec![PathBuf::from("/etc/imgsign/web.sigstore.json"), PathBuf::from("/abs/web-cosigned.json")]
    );
    assert_eq!(web.image.as_ref().unwrap().to_string(), "oci:/etc/imgsign/images/web:latest");
    assert_eq!(p.scopes[1].mode, Mode::Audit);
    assert!(p.scopes[1].image.is_none());
    assert!(!web.remote_fs, "remote file systems are refused unless a scope opts in");
    assert!(p.scopes[1].remote_fs);
}

#[test]
fn defaults_events_to_stdout_and_the_standard_pin_dir() {
    let p = parse("trust = \"/t\"\n[[scope]]\nname = \"a\"\ncgroup = \"/sys/fs/cgroup/a\"\nmode = \"audit\"\nbundles = [\"a.json\"]\n").unwrap();
    assert_eq!(p.events, EventSink::Stdout);
    assert_eq!(p.pin_dir, PathBuf::from(policy::DEFAULT_PIN_DIR));
    let p = parse("trust = \"/t\"\nevents = \"-\"\n[[scope]]\nname = \"a\"\ncgroup = \"/sys/fs/cgroup/a\"\nmode = \"audit\"\nbundles = [\"a.json\"]\n").unwrap();
    assert_eq!(p.events, EventSink::Stdout);
}

#[test]
fn a_scope_profile_is_default_unless_strict_is_asked() {
    let p = parse(GOOD).unwrap();
    assert_eq!((p.scopes[0].profile, p.scopes[1].profile), (Profile::Default, Profile::Default), "absent: default");
    let p = parse(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\nprofile = \"strict\"")).unwrap();
    assert_eq!((p.scopes[0].profile, p.scopes[1].profile), (Profile::Default, Profile::Strict));
    let p = parse(&GOOD.replace("mode = \"enforce\"", "mode = \"enforce\"\nprofile = \"default\"")).unwrap();
    assert_eq!(p.scopes[0].profile, Profile::Default);
    let e = error(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\nprofile = \"paranoid\""));
    assert!(e.contains("paranoid") && e.contains("default") && e.contains("strict"), "{e}");
    let e = error(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\nprofile = true"));
    assert!(e.contains("profile"), "{e}");
}

#[test]
fn recheck_defaults_to_a_minute_and_is_bounded() {
    assert_eq!(parse(GOOD).unwrap().recheck, std::time::Duration::from_secs(60));
    let with = |v: &str| GOOD.replacen("\n[[scope]]", &format!("recheck_seconds = {v}\n\n[[scope]]"), 1);
    assert_eq!(parse(&with("5")).unwrap().recheck, std::time::Duration::from_secs(5));
    assert!(error(&with("0")).contains("recheck_seconds"), "{}", error(&with("0")));
    assert!(error(&with("100000")).contains("recheck_seconds"));
}

#[test]
fn a_deny_unknown_scope_takes_no_bundles_and_only_it_may_have_none() {
    let parent = |extra: &str| {
        format!("trust = \"trust\"\n\n[[scope]]\nname = \"parent\"\ncgroup = \"/sys/fs/cgroup/c\"\nmode = \"enforce\"\n{extra}")
    };
    let p = parse(&parent("deny_unknown = true\n")).unwrap();
    assert!(p.scopes[0].bundles.is_empty());
    let e = error(&parent("bundles = []\n"));
    assert!(e.contains("bundles") && e.contains("deny_unknown"), "{e}");
    let e = error(&parent("deny_unknown = true\nbundles = [\"b.json\"]\n"));
    assert!(e.contains("must be empty"), "{e}");
    let e = error(&parent("deny_unknown = true\nimage = \"oci:/i\"\n"));
    assert!(e.contains("image"), "{e}");
}

#[test]
fn a_scope_responds_to_violations_only_when_asked() {
    let p = parse(GOOD).unwrap();
    assert_eq!((p.scopes[0].on_violation, p.scopes[1].on_violation), (None, None));
    let p = parse(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\non_violation = \"freeze\"")).unwrap();
    assert_eq!((p.scopes[0].on_violation, p.scopes[1].on_violation), (None, Some(Violation::Freeze)));
    let p = parse(&GOOD.replace("mode = \"enforce\"", "mode = \"enforce\"\non_violation = \"kill\"")).unwrap();
    assert_eq!(p.scopes[0].on_violation, Some(Violation::Kill));
    let e = error(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\non_violation = \"reboot\""));
    assert!(e.contains("reboot") && e.contains("freeze") && e.contains("kill"), "{e}");
}

#[test]
fn unknown_fields_are_refused_by_name() {
    let e = error(&GOOD.replace("pin_dir =", "pin_directory ="));
    assert!(e.contains("/etc/imgsign/policy.toml") && e.contains("pin_directory"), "{e}");
    let e = error(&GOOD.replace("mode = \"audit\"", "mode = \"audit\"\nallow_all = true"));
    assert!(e.contains("allow_all"), "{e}");
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    let e = error(&GOOD.replace("trust = \"trust\"", ""));
    assert!(e.contains("trust"), "{e}");
    let e = error(&GOOD.replace("mode = \"enforce\"", "mode = \"strict\""));
    assert!(e.contains("strict") && e.contains("enforce") && e.contains("audit"), "{e}");
    let e = error(&GOOD.replace("bundles = [\"host.json\"]", "bundles = \"host.json\""));
    assert!(e.contains("bundles"), "{e}");
    let e = error(&GOOD.replace("cgroup = \"/sys/fs/cgroup\"\n", ""));
    assert!(e.contains("cgroup"), "{e}");
    let e = error("this is = not [toml");
    assert!(e.contains("/etc/imgsign/policy.toml"), "{e}");
}

#[test]
fn semantic_errors_name_the_scope_and_field() {
    let cases = [
        (GOOD.replace("name = \"node\"", "name = \"web\""), "scope[1] (\"web\").name", "earlier scope"),
        (GOOD.replace("name = \"node\"", "name = \"no de\""), "scope[1] (\"no de\").name", "letters"),
        (GOOD.replace("name = \"node\"", "name = \"\""), "scope[1].name", "1 to 64"),
        (
            GOOD.replace("cgroup = \"/sys/fs/cgroup\"\n", "cgroup = \"sys/fs/cgroup\"\n"),
            "scope[1] (\"node\").cgroup",
            "absolute",
        ),
        (
            GOOD.replace("cgroup = \"/sys/fs/cgroup\"\n", "cgroup = \"/sys/fs/cgroup/web\"\n"),
            "scope[1] (\"node\").cgroup",
            "earlier scope",
        ),
        (GOOD.replace("bundles = [\"host.json\"]", "bundles = []"), "scope[1] (\"node\").bundles", "empty"),
        (GOOD.replace("oci:images/web:latest", "registry.example/web"), "scope[0] (\"web\").image", "oci:DIR"),
        (GOOD.replace("pin_dir = \"/sys/fs/bpf/imgsign-test\"", "pin_dir = \"bpf\""), "pin_dir", "absolute"),
        (GOOD.replace("trust = \"trust\"", "trust = \"\""), "trust", "empty"),
        (GOOD.replace("events = \"events.jsonl\"", "events = \"\""), "events", "empty"),
    ];
    for (text, field, reason) in cases {
        match parse(&text) {
            Err(PolicyError::Invalid { path, field: f, reason: r }) => {
                assert_eq!(path, Path::new("/etc/imgsign/policy.toml"));
                assert_eq!(f, field, "{r}");
                assert!(r.contains(reason), "{f}: {r}");
            }
            other => panic!("expected an error on {field}, got {other:?}"),
        }
    }
    // No scope is fine: scopes can come through the control socket; its path must be absolute.
    let bare = parse("trust = \"/t\"\n").unwrap();
    assert!(bare.scopes.is_empty());
    assert_eq!(bare.control, Path::new(enforce::control::DEFAULT_SOCKET));
    let e = error("trust = \"/t\"\ncontrol = \"enforce.sock\"\n");
    assert!(e.contains("control") && e.contains("absolute"), "{e}");
}

#[test]
fn an_unreadable_policy_names_the_file() {
    let e = policy::load(Path::new("/nonexistent/policy.toml")).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/policy.toml"));
}

#[test]
fn runtime_helpers_are_none_by_default_and_absolute_distinct_paths_otherwise() {
    assert!(parse(GOOD).unwrap().runtime_helpers.is_empty(), "the strict default: no helper");
    let with = |list: &str| format!("runtime_helpers = {list}\n{GOOD}");
    let policy = parse(&with(r#"["/usr/sbin/runc", "/usr/bin/crun"]"#)).unwrap();
    assert_eq!(policy.runtime_helpers, vec![PathBuf::from("/usr/sbin/runc"), PathBuf::from("/usr/bin/crun")]);
    let err = error(&with(r#"["runc"]"#));
    assert!(err.contains("runtime_helpers[0]") && err.contains("absolute"), "{err}");
    let err = error(&with(r#"["/usr/sbin/runc", "/usr/bin/crun", "/usr/sbin/runc"]"#));
    assert!(err.contains("runtime_helpers[2]") && err.contains("twice"), "{err}");
    let many: Vec<String> = (0..=policy::MAX_RUNTIME_HELPERS).map(|i| format!("\"/usr/lib/h{i}\"")).collect();
    let err = error(&with(&format!("[{}]", many.join(", "))));
    assert!(err.contains("runtime_helpers") && err.contains("more than"), "{err}");
    assert!(matches!(parse(&with(r#""/usr/sbin/runc""#)), Err(PolicyError::Parse { .. })), "a list, not a string");
    let err = parse(&format!("runtime_helper = [\"/usr/sbin/runc\"]\n{GOOD}")).unwrap_err();
    assert!(matches!(err, PolicyError::Parse { .. }), "a misspelt field is refused: {err:?}");
    assert!(enforce::daemon::chain(&err).contains("runtime_helper"), "{err}");
}
