use super::*;
use verifier_core::manifest::FileEntry;

fn entry(path: &str, kind: FileType) -> FileEntry {
    FileEntry {
        path: path.into(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: (kind == FileType::File).then_some(3),
        sha256: None,
        code: None,
        link_target: (kind == FileType::Symlink).then(|| "busybox".into()),
        dev_major: None,
        dev_minor: None,
        xattrs: Default::default(),
    }
}

fn paths(differences: &[Difference]) -> Vec<&str> {
    differences.iter().map(|d| d.path()).collect()
}

#[test]
fn identical_listings_have_no_differences() {
    let signed = vec![entry("/bin", FileType::Dir), entry("/bin/busybox", FileType::File)];
    assert!(metadata_differences(&signed, &signed, &Mounts::default(), &IdMaps::default()).is_empty());
}

#[test]
fn code_marks_are_the_signers_and_not_compared_but_other_fields_still_are() {
    let mut signed = vec![entry("/bin", FileType::Dir), entry("/bin/busybox", FileType::File)];
    signed[1].code = Some(verifier_core::manifest::CodeKind::Elf);
    let mut seen = vec![entry("/bin", FileType::Dir), entry("/bin/busybox", FileType::File)];
    assert!(metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default()).is_empty());
    seen[1].mode = 0o4755;
    let found = metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default());
    let [Difference::Changed { fields, .. }] = &found[..] else { panic!("{found:?}") };
    assert_eq!(fields.iter().map(|f| f.field).collect::<Vec<_>>(), ["mode"], "no code difference reported");
}

#[test]
fn an_extra_file_a_changed_mode_and_a_missing_file_are_reported() {
    let signed = vec![entry("/bin", FileType::Dir), entry("/bin/a", FileType::File), entry("/bin/b", FileType::File)];
    let mut seen =
        vec![entry("/bin", FileType::Dir), entry("/bin/a", FileType::File), entry("/bin/evil", FileType::File)];
    seen[1].mode = 0o4755;
    let found = metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default());
    assert_eq!(paths(&found), ["/bin/a", "/bin/b", "/bin/evil"]);
}

#[test]
fn what_a_mount_hides_is_not_judged_but_what_is_beside_it_is() {
    let signed = vec![entry("/etc", FileType::Dir), entry("/etc/hosts", FileType::File)];
    let mut seen = signed.clone();
    seen[1].size = Some(99); // replaced under the mount: the container sees the mount
    seen.push(entry("/etc/resolv.conf", FileType::File)); // an empty mount point the runtime made
    seen.push(entry("/run", FileType::Dir)); // ancestor of a destination, made by the runtime
    seen.push(entry("/run/secrets", FileType::Dir));
    seen.push(entry("/run/secrets/x/inside", FileType::File)); // hidden below a destination
    seen.push(entry("/etc/hostsevil", FileType::File)); // a sibling sharing the prefix: judged
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let mounts = Mounts::new(["/etc/hosts", "/etc/resolv.conf", "/run/secrets/x/"]);
    let found = metadata_differences(&signed, &seen, &mounts, &IdMaps::default());
    assert_eq!(paths(&found), ["/etc/hostsevil"]);
}

#[test]
fn a_symlink_at_a_destination_must_be_the_signed_one() {
    let mut signed = vec![entry("/etc", FileType::Dir), entry("/etc/hosts", FileType::Symlink)];
    signed[1].link_target = Some("/run/hosts".into());
    let mut seen = signed.clone();
    seen[1].link_target = Some("/bin/sh".into());
    let mounts = Mounts::new(["/etc/hosts"]);
    assert_eq!(paths(&metadata_differences(&signed, &seen, &mounts, &IdMaps::default())), ["/etc/hosts"]);
    let mut extra = vec![entry("/etc", FileType::Dir), entry("/etc/hosts", FileType::Symlink)];
    extra[1].link_target = Some("/bin/sh".into());
    assert_eq!(paths(&metadata_differences(&signed[..1], &extra, &mounts, &IdMaps::default())), ["/etc/hosts"]);
}

#[test]
fn a_destination_with_dotdot_gives_no_tolerance() {
    let signed = vec![entry("/etc", FileType::Dir)];
    let seen = vec![entry("/etc", FileType::Dir), entry("/etc/x", FileType::File)];
    let mounts = Mounts::new(["/etc/../etc/x"]);
    assert_eq!(paths(&metadata_differences(&signed, &seen, &mounts, &IdMaps::default())), ["/etc/x"]);
}

#[test]
fn owners_shifted_by_the_user_namespace_match_other_owners_do_not() {
    let signed = vec![entry("/bin", FileType::Dir)];
    let mut seen = signed.clone();
    seen[0].uid = 100_000;
    seen[0].gid = 100_000;
    let ids = IdMaps { uids: vec![(0, 100_000, 65536)], gids: vec![(0, 100_000, 65536)] };
    assert!(metadata_differences(&signed, &seen, &Mounts::default(), &ids).is_empty());
    seen[0].uid = 1000;
    assert_eq!(paths(&metadata_differences(&signed, &seen, &Mounts::default(), &ids)), ["/bin"]);
}

#[test]
fn content_is_compared_and_an_unsigned_digest_matches_nothing() {
    let mut signed = entry("/bin/a", FileType::File);
    let digest = Sha256Digest::of(b"abc");
    assert!(content_difference(&signed, digest).is_some());
    signed.sha256 = Some(digest);
    assert!(content_difference(&signed, digest).is_none());
    assert!(content_difference(&signed, Sha256Digest::of(b"abd")).is_some());
}

#[test]
fn hidden_files_are_not_hashed_and_hardlinks_are() {
    let signed = vec![
        entry("/etc/hosts", FileType::File),
        entry("/etc/hosts2", FileType::Hardlink),
        entry("/dev/null", FileType::File),
    ];
    let mounts = Mounts::new(["/etc/hosts", "/dev"]);
    let hashed: Vec<&str> = files_to_hash(&signed, &mounts).map(|e| e.path.as_str()).collect();
    assert_eq!(hashed, ["/etc/hosts2"]);
}

#[test]
fn podmans_etc_mtab_link_is_let_through_only_as_it_makes_it() {
    let signed = vec![entry("/etc", FileType::Dir)];
    let mut seen = vec![entry("/etc", FileType::Dir), entry("/etc/mtab", FileType::Symlink)];
    seen[1].link_target = Some("/proc/mounts".into());
    assert!(metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default()).is_empty());
    seen[1].link_target = Some("/bin/sh".into());
    assert_eq!(paths(&metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default())), ["/etc/mtab"]);
    seen[1] = entry("/etc/mtab", FileType::File);
    assert_eq!(paths(&metadata_differences(&signed, &seen, &Mounts::default(), &IdMaps::default())), ["/etc/mtab"]);
}
