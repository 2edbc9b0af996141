//! In-VM tests of privileges as signed (`src/bpf/enforcer/privs.h`): a listed binary runs with the
//! setuid/setgid bits and file capabilities of a signed entry with its digest, or fewer; a copy
//! of it that someone made setuid, setgid or gave a capability is refused, though its bytes are
//! listed. Each attack has a positive twin that must keep working. Run by the kernel lab
//! (`#[ignore]`d on the host).
// Test programs may print what they saw; the lab shows it (helpers too, not only #[test] fns).
#![allow(clippy::print_stdout, clippy::print_stderr)]
// setxattr(2) of security.capability, in a commented unsafe block.
#![allow(unsafe_code)]

mod support;
#[allow(unused_imports)]
use support::*;

use bpf_lsm::enforcer::Privs;

/// An unprivileged uid for the exec that would gain a file capability.
const NOBODY: u32 = 65534;
/// CAP_NET_RAW.
const CAP_NET_RAW: u32 = 13;

/// `security.capability` (revision 2) granting `cap` permitted and effective.
fn capability_xattr(cap: u32) -> Vec<u8> {
    let mut v = (0x0200_0000u32 | 1).to_le_bytes().to_vec(); // VFS_CAP_REVISION_2 | EFFECTIVE
    let (lo, hi) = if cap < 32 { (1u32 << cap, 0) } else { (0, 1u32 << (cap - 32)) };
    for word in [lo, 0, hi, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

fn set_capability(path: &Path, value: &[u8]) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: both pointers are to live NUL-terminated strings and `value` is a live slice of
    // `value.len()` bytes; setxattr(2) only reads them.
    let rc = unsafe {
        sys::setxattr(c_path.as_ptr(), c"security.capability".as_ptr(), value.as_ptr().cast(), value.len(), 0)
    };
    assert_eq!(rc, 0, "setxattr security.capability on {}: {}", path.display(), io::Error::last_os_error());
}

/// A copy of `from` at `to` with `mode`.
fn copy_with_mode(from: &Path, to: &Path, mode: u32) {
    fs::copy(from, to).expect("copy");
    fs::set_permissions(to, fs::Permissions::from_mode(mode)).expect("chmod");
    assert_eq!(fs::metadata(to).unwrap().mode() & 0o7777, mode, "mode of {}", to.display());
}

/// Runs `path true` in `cgroup` as `uid` (None: as the test, root).
fn run_as(path: &Path, cgroup: &Cgroup, uid: Option<u32>) -> io::Result<ExitStatus> {
    let mut cmd = Command::new(path);
    cmd.arg("true").stdin(Stdio::null());
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    in_cgroup(cmd, cgroup).status()
}

fn assert_refused(result: io::Result<ExitStatus>, what: &str) {
    match result {
        Err(e) if is_denial(&e) => println!("{what}: refused: {e}"),
        Err(e) => panic!("{what}: failed, but not with EPERM/EACCES: {e}"),
        Ok(status) => panic!("{what}: was not refused (ran: {status})"),
    }
}

fn assert_ran(result: io::Result<ExitStatus>, what: &str) {
    match result {
        Ok(status) => assert!(status.success(), "{what}: ran but {status}"),
        Err(e) => panic!("{what}: exec failed: {e}"),
    }
}

fn privilege_refusal_reported(enf: &mut Enforcer) -> bool {
    drain_events(enf)
        .iter()
        .any(|e| e.hook == Hook::Creds && e.reason == Reason::Privilege && e.verdict == Verdict::Deny)
}

#[test]
#[ignore = "needs BPF-LSM: run by the kernel lab"]
fn vm_privs_a_setuid_bit_added_to_a_listed_copy_is_refused() {
    let dir = scratch_dir("privs-setuid");
    let (plain, digest) = unique_busybox(&dir, "ping");
    let suid = dir.join("busybox-suid");
    copy_with_mode(&plain, &suid, 0o4755);
    let sgid = dir.join("busybox-sgid");
    copy_with_mode(&plain, &sgid, 0o2755);
    let cgroup = Cgroup::new("privs-setuid");
    let mut enf = attach();
    enf.replace_digests(90, &[digest]).expect("allow, unprivileged");
    enf.set_scope(cgroup.id, scope(90, Mode::Enforce)).expect("scope");

    // Twin: the listed file as signed runs, as root and as another user.
    assert_ran(run_as(&plain, &cgroup, None), "the listed copy");
    assert_ran(run_as(&plain, &cgroup, Some(NOBODY)), "the listed copy as nobody");
    // Attack: same bytes, setuid (or setgid) bit the signed entry does not have.
    assert_refused(run_as(&suid, &cgroup, Some(NOBODY)), "a setuid copy run by nobody");
    assert_refused(run_as(&suid, &cgroup, None), "a setuid copy run by root (the bits are judged)");
    assert_refused(run_as(&sgid, &cgroup, Some(NOBODY)), "a setgid copy");
    assert!(privilege_refusal_reported(&mut enf), "the refusal is reported with reason privilege");

    // Signed setuid: the setuid copy runs, and so does the plain one (fewer privileges).
    enf.replace_entries(90, &[(digest, Privs::of_entry(0o4755, None).unwrap())]).expect("allow setuid");
    assert_eq!(enf.privileges(90, &digest).unwrap(), Some(Privs::of_entry(0o4755, None).unwrap()));
    assert_ran(run_as(&suid, &cgroup, Some(NOBODY)), "a setuid copy signed setuid");
    assert_ran(run_as(&plain, &cgroup, Some(NOBODY)), "the plain copy of a setuid entry");
    assert_refused(run_as(&sgid, &cgroup, Some(NOBODY)), "setgid is not setuid");
    fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs BPF-LSM: run by the kernel lab"]
fn vm_privs_two_entries_privileges_do_not_mix() {
    let dir = scratch_dir("privs-mix");
    let (plain, digest) = unique_busybox(&dir, "mix");
    let both = dir.join("busybox-both");
    copy_with_mode(&plain, &both, 0o6755);
    let suid = dir.join("busybox-suid");
    copy_with_mode(&plain, &suid, 0o4755);
    let cgroup = Cgroup::new("privs-mix");
    let mut enf = attach();
    // One entry setuid, another (same bytes) setgid: never both at once.
    let entries = [(digest, Privs::of_entry(0o4755, None).unwrap()), (digest, Privs::of_entry(0o2755, None).unwrap())];
    enf.replace_entries(91, &entries).expect("allow");
    enf.set_scope(cgroup.id, scope(91, Mode::Enforce)).expect("scope");
    assert_ran(run_as(&suid, &cgroup, Some(NOBODY)), "setuid, as one entry");
    assert_refused(run_as(&both, &cgroup, Some(NOBODY)), "setuid and setgid together");
    fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs BPF-LSM: run by the kernel lab"]
fn vm_privs_a_file_capability_added_to_a_listed_copy_is_refused() {
    let dir = scratch_dir("privs-caps");
    let (plain, digest) = unique_busybox(&dir, "caps");
    let capped = dir.join("busybox-capped");
    copy_with_mode(&plain, &capped, 0o755);
    let xattr = capability_xattr(CAP_NET_RAW);
    set_capability(&capped, &xattr);
    let cgroup = Cgroup::new("privs-caps");
    let mut enf = attach();
    enf.replace_digests(92, &[digest]).expect("allow, unprivileged");
    enf.set_scope(cgroup.id, scope(92, Mode::Enforce)).expect("scope");

    assert_ran(run_as(&plain, &cgroup, Some(NOBODY)), "the listed copy");
    // Root gains nothing from the capability (it has them all): judged by effect, it runs.
    assert_ran(run_as(&capped, &cgroup, None), "the capability copy run by root");
    assert_refused(run_as(&capped, &cgroup, Some(NOBODY)), "nobody gaining CAP_NET_RAW");
    assert!(privilege_refusal_reported(&mut enf), "the refusal is reported with reason privilege");

    // Signed with that capability: it runs.
    let signed = Privs::of_entry(0o755, Some(&xattr)).unwrap();
    enf.replace_entries(92, &[(digest, signed)]).expect("allow with the capability");
    assert_ran(run_as(&capped, &cgroup, Some(NOBODY)), "a capability signed");
    // Signed with another one: refused.
    let other = Privs::of_entry(0o755, Some(&capability_xattr(CAP_NET_RAW + 1))).unwrap();
    enf.replace_entries(92, &[(digest, other)]).expect("allow with another capability");
    assert_refused(run_as(&capped, &cgroup, Some(NOBODY)), "a capability other than the signed one");
    fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs BPF-LSM: run by the kernel lab"]
fn vm_privs_audit_mode_reports_and_allows() {
    let dir = scratch_dir("privs-audit");
    let (plain, digest) = unique_busybox(&dir, "audit");
    let suid = dir.join("busybox-suid");
    copy_with_mode(&plain, &suid, 0o4755);
    let cgroup = Cgroup::new("privs-audit");
    let mut enf = attach();
    enf.replace_digests(93, &[digest]).expect("allow");
    enf.set_scope(cgroup.id, scope(93, Mode::Audit)).expect("scope");
    assert_ran(run_as(&suid, &cgroup, Some(NOBODY)), "audit mode lets it run");
    let events = drain_events(&mut enf);
    assert!(
        events.iter().any(|e| e.hook == Hook::Creds && e.reason == Reason::Privilege && e.verdict == Verdict::Audit),
        "an audit finding with reason privilege: {events:?}"
    );
    fs::remove_dir_all(&dir).ok();
}
