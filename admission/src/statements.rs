//! The statement cache: what verifying the policy's bundle files gave (each verified
//! statement's file list, and why the others were refused), kept so that a second `create`
//! under the same trust store and the same bundle files does not read, decode and verify the
//! bundles again.
//!
//! The key is the digest of everything the verdict depends on but time: every file of the trust
//! store (keys, revocations, threshold, versions seen: a revocation or a new version changes
//! it) and, for each bundle file, its path, inode, size, mtime and ctime (a
//! rewritten bundle changes its ctime). Time is checked on every use: an entry whose statement
//! has expired is not used. Entries are believed only in a directory that belongs to this user
//! and nobody else can write (as the hash cache), and are written to a temporary name and
//! renamed. A line format (tab-separated, escaped) because it reads several times faster than
//! the signed JSON.

use crate::candidates::Candidate;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use verifier_core::digest::Sha256Digest;
use verifier_core::manifest::{FileEntry, FileType};

const DIR: &str = "statements";
const MAGIC: &str = "imgsign-admission-statement-1";

/// The cache key of the policy's bundle files under the trust store at `trust` (`None` when a
/// file cannot be read: then nothing is cached).
pub fn key(trust: &Path, bundles: &[PathBuf]) -> Option<String> {
    let mut hasher = Sha256::new();
    hasher.update(keys::trust::files_digest(trust).ok()?);
    let mut files: Vec<&PathBuf> = bundles.iter().collect();
    files.sort();
    for path in files {
        let m = std::fs::metadata(path).ok()?;
        let line = format!(
            "bundle\0{}\0{}\0{}\0{}.{}\0{}.{}\0",
            path.display(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        );
        hasher.update(line.as_bytes());
    }
    Some(hex::encode(hasher.finalize()))
}

/// The verdict cached under `key` in `cache` (the candidates and the refusals), if there is
/// one, it is trustworthy, and none of its statements has expired at `now`.
pub fn load(cache: &Path, key: &str, now: SystemTime) -> Option<(Vec<Candidate>, Vec<String>)> {
    let dir = cache.join(DIR);
    let path = dir.join(key);
    if ![cache, dir.as_path(), path.as_path()].iter().all(|p| crate::hashes::owned_and_private(p)) {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let mut lines = text.split('\n');
    let header: Vec<&str> = lines.next()?.split('\t').collect();
    let [MAGIC, candidates, refused] = header[..] else { return None };
    let mut reasons = Vec::new();
    for _ in 0..refused.parse::<usize>().ok()? {
        reasons.push(unescape(lines.next()?)?);
    }
    let mut out = Vec::new();
    for _ in 0..candidates.parse::<usize>().ok()? {
        let head: Vec<&str> = lines.next()?.split('\t').collect();
        let ["C", name, digest, expires, count, bundles] = head[..] else { return None };
        let expires_at = UNIX_EPOCH + Duration::from_secs(expires.parse().ok()?);
        if now > expires_at {
            return None;
        }
        let count: usize = count.parse().ok()?;
        let mut files = Vec::with_capacity(count);
        for _ in 0..count {
            files.push(parse_entry(lines.next()?)?);
        }
        let bundles = bundles.split(' ').map(|b| unescape(b).map(PathBuf::from)).collect::<Option<_>>()?;
        out.push(Candidate { name: unescape(name)?, digest: digest.to_string(), bundles, files, expires_at });
    }
    Some((out, reasons))
}

/// Stores the verdict under `key` (failures are ignored: the cache only saves time).
pub fn store(cache: &Path, key: &str, candidates: &[Candidate], refused: &[String]) {
    let dir = cache.join(DIR);
    if crate::hashes::make_private_dir(&dir).is_err() {
        return;
    }
    let mut out = format!("{MAGIC}\t{}\t{}\n", candidates.len(), refused.len());
    for reason in refused {
        out.push_str(&escape(reason));
        out.push('\n');
    }
    for c in candidates {
        let expires = c.expires_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let bundles: Vec<String> = c.bundles.iter().map(|b| escape(&b.to_string_lossy())).collect();
        out.push_str(&format!(
            "C\t{}\t{}\t{expires}\t{}\t{}\n",
            escape(&c.name),
            c.digest,
            c.files.len(),
            bundles.join(" ")
        ));
        for entry in &c.files {
            write_entry(entry, &mut out);
        }
    }
    let _ = atomic_file::replace_file(&dir.join(key), out.as_bytes(), 0o600);
}

fn kind_char(kind: FileType) -> char {
    match kind {
        FileType::File => 'f',
        FileType::Hardlink => 'h',
        FileType::Symlink => 'l',
        FileType::Dir => 'd',
        FileType::Char => 'c',
        FileType::Block => 'b',
        FileType::Fifo => 'p',
    }
}

fn write_entry(e: &FileEntry, out: &mut String) {
    use std::fmt::Write as _;
    let opt = |v: Option<u64>| v.map_or(String::new(), |n| n.to_string());
    let _ = writeln!(
        out,
        "{}\t{}\t{:o}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        escape(&e.path),
        kind_char(e.kind),
        e.mode,
        e.uid,
        e.gid,
        opt(e.size),
        e.sha256.map_or(String::new(), |d| d.hex()),
        e.link_target.as_deref().map_or(String::new(), |t| format!("={}", escape(t))),
        opt(e.dev_major.map(u64::from)),
        opt(e.dev_minor.map(u64::from)),
        e.xattrs.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join(" "),
    );
}

fn parse_entry(line: &str) -> Option<FileEntry> {
    let f: Vec<&str> = line.split('\t').collect();
    let [path, kind, mode, uid, gid, size, sha, link, major, minor, xattrs] = f[..] else { return None };
    let num = |s: &str| if s.is_empty() { Some(None) } else { s.parse::<u64>().ok().map(Some) };
    let kind = match kind {
        "f" => FileType::File,
        "h" => FileType::Hardlink,
        "l" => FileType::Symlink,
        "d" => FileType::Dir,
        "c" => FileType::Char,
        "b" => FileType::Block,
        "p" => FileType::Fifo,
        _ => return None,
    };
    let mut parsed_xattrs = BTreeMap::new();
    for pair in xattrs.split(' ').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        parsed_xattrs.insert(unescape(k)?, unescape(v)?);
    }
    Some(FileEntry {
        path: unescape(path)?,
        kind,
        mode: u32::from_str_radix(mode, 8).ok()?,
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
        size: num(size)?,
        sha256: if sha.is_empty() { None } else { Some(Sha256Digest::parse_hex(sha).ok()?) },
        // Code marks are not kept: the gate does not compare them (see `matcher`).
        code: None,
        link_target: match link.strip_prefix('=') {
            Some(t) => Some(unescape(t)?),
            None if link.is_empty() => None,
            None => return None,
        },
        dev_major: num(major)?.map(|n| u32::try_from(n).ok()).map_or(Some(None), |n| n.map(Some))?,
        dev_minor: num(minor)?.map(|n| u32::try_from(n).ok()).map_or(Some(None), |n| n.map(Some))?,
        xattrs: parsed_xattrs,
    })
}

/// Escapes `\`, tab, newline, space and `=` (the format's separators).
fn escape(s: &str) -> String {
    if !s.contains(['\\', '\t', '\n', ' ', '=']) {
        return s.to_string();
    }
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace(' ', "\\s").replace('=', "\\e")
}

fn unescape(s: &str) -> Option<String> {
    if !s.contains('\\') {
        return Some(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            't' => '\t',
            'n' => '\n',
            's' => ' ',
            'e' => '=',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_survives_the_line_format() {
        let mut xattrs = BTreeMap::new();
        xattrs.insert("security.capability".to_string(), "AQAAAg==".to_string());
        let entries = vec![
            FileEntry {
                path: "/odd name\twith\\tabs=and\nnewlines".into(),
                kind: FileType::File,
                mode: 0o4755,
                uid: 0,
                gid: 42,
                size: Some(0),
                sha256: Some(Sha256Digest::of(b"")),
                code: None,
                link_target: None,
                dev_major: None,
                dev_minor: None,
                xattrs,
            },
            FileEntry {
                path: "/l".into(),
                kind: FileType::Symlink,
                mode: 0o777,
                uid: 1,
                gid: 1,
                size: None,
                sha256: None,
                code: None,
                link_target: Some(String::new()),
                dev_major: None,
                dev_minor: None,
                xattrs: BTreeMap::new(),
            },
            FileEntry {
                path: "/dev/sda".into(),
                kind: FileType::Block,
                mode: 0o660,
                uid: 0,
                gid: 6,
                size: None,
                sha256: None,
                code: None,
                link_target: None,
                dev_major: Some(8),
                dev_minor: Some(0),
                xattrs: BTreeMap::new(),
            },
        ];
        for entry in entries {
            let mut line = String::new();
            write_entry(&entry, &mut line);
            assert_eq!(parse_entry(line.trim_end_matches('\n')), Some(entry));
        }
    }
}
