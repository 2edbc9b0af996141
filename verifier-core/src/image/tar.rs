//! A strict streaming tar reader (ustar, GNU long names, PAX) for layer blobs.
//!
//! It is strict on purpose: a layer is untrusted input, and any construct that two tar readers
//! could read differently (a PAX size that disagrees with the ustar size, data behind a header-only
//! entry, sparse files, a missing end-of-archive marker) is an error rather than a guess. Paths are
//! returned raw; normalisation and the checks on `..` and absolute names belong to the layer applier.

use std::collections::BTreeMap;
use std::io::{self, Read};

const BLOCK: usize = 512;
/// PAX and GNU long-name records larger than this are refused (they are held in memory).
const MAX_META_SIZE: u64 = 1 << 20;
/// Global PAX records accepted: none of them changes a path, a size, an owner or an xattr.
const GLOBAL_PAX_HARMLESS: &[&str] = &["comment", "mtime", "atime", "ctime", "charset", "hdrcharset"];

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("read failed at byte {offset}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("truncated tar: stream ended inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("truncated tar: stream ended at byte {offset} without an end-of-archive marker")]
    MissingEnd { offset: u64 },
    #[error("corrupt tar header at byte {offset}: {reason}")]
    BadHeader { offset: u64, reason: String },
    #[error("entry {path:?} at byte {offset}: PAX size {pax} disagrees with ustar size {ustar}")]
    SizeMismatch { path: String, offset: u64, pax: u64, ustar: u64 },
    #[error("entry {path:?} at byte {offset}: unsupported tar entry type {typeflag:?}")]
    UnsupportedType { path: String, offset: u64, typeflag: char },
    #[error("entry {path:?} at byte {offset}: a {kind} entry must not carry data (size {size})")]
    DataOnHeaderOnly { path: String, offset: u64, kind: &'static str, size: u64 },
    #[error("malformed PAX record at byte {offset}: {reason}")]
    BadPax { offset: u64, reason: String },
}

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

impl EntryKind {
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::HardLink => "hardlink",
            EntryKind::Symlink => "symlink",
            EntryKind::CharDevice => "char",
            EntryKind::BlockDevice => "block",
            EntryKind::Directory => "dir",
            EntryKind::Fifo => "fifo",
        }
    }
}

/// One entry's metadata, with PAX and GNU extensions applied.
#[derive(Debug, Clone)]
pub struct EntryHeader {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub link_target: Option<Vec<u8>>,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Byte offset of the entry's header in the uncompressed stream.
    pub offset: u64,
}

impl EntryHeader {
    pub fn path_lossy(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Streams entries out of a tar archive.
pub struct TarReader<R> {
    inner: R,
    offset: u64,
    /// Unread content bytes of the current entry.
    remaining: u64,
    /// Padding after the current entry's content.
    padding: u64,
    finished: bool,
    global_pax: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct PendingExtensions {
    pax: BTreeMap<String, Vec<u8>>,
    gnu_long_name: Option<Vec<u8>>,
    gnu_long_link: Option<Vec<u8>>,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, offset: 0, remaining: 0, padding: 0, finished: false, global_pax: BTreeMap::new() }
    }

    /// Bytes consumed from the underlying stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives the underlying reader back, for draining what follows the archive.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` after the end-of-archive marker. Unread content of the previous
    /// entry is skipped.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut ext = PendingExtensions::default();
        loop {
            let header_offset = self.offset;
            let mut block = [0u8; BLOCK];
            let got = self.read_full(&mut block)?;
            if got == 0 {
                return Err(TarError::MissingEnd { offset: self.offset });
            }
            if got < BLOCK {
                return Err(TarError::Truncated { what: "a header", offset: self.offset });
            }
            if block.iter().all(|&b| b == 0) {
                // End of archive. A second zero block normally follows; anything after it is left
                // for the caller to drain (it still counts towards the blob digest). A lone zero
                // block followed by more data is refused: Go's archive/tar (containerd, umoci)
                // rejects it and `tar --ignore-zeros` reads the entries behind it, so entries
                // hidden there would run without being in the manifest.
                let mut second = [0u8; BLOCK];
                let got = self.read_full(&mut second)?;
                if second[..got].iter().any(|&b| b != 0) {
                    return Err(TarError::BadHeader {
                        offset: header_offset,
                        reason: "a lone zero block followed by data (not an end-of-archive marker)".into(),
                    });
                }
                self.finished = true;
                if ext.pax.len() + ext.gnu_long_name.iter().len() + ext.gnu_long_link.iter().len() > 0 {
                    return Err(TarError::BadHeader {
                        offset: header_offset,
                        reason: "extended header not followed by an entry".into(),
                    });
                }
                return Ok(None);
            }
            verify_checksum(&block, header_offset)?;
            let typeflag = block[156];
            let ustar_size = parse_numeric(&block[124..136], header_offset, "size")?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if ustar_size > MAX_META_SIZE {
                        return Err(TarError::BadHeader {
                            offset: header_offset,
                            reason: format!("extended header of {ustar_size} bytes is too large"),
                        });
                    }
                    let data = self.read_meta(ustar_size)?;
                    match typeflag {
                        b'x' => parse_pax(&data, header_offset, &mut ext.pax)?,
                        b'g' => {
                            // POSIX and GNU tar apply a global header to every later entry; Go's
                            // archive/tar (containerd, Docker, umoci) does not. Only records that
                            // change nothing imgsign signs are accepted, so both readings agree.
                            let mut global = BTreeMap::new();
                            parse_pax(&data, header_offset, &mut global)?;
                            if let Some(key) = global.keys().find(|k| !GLOBAL_PAX_HARMLESS.contains(&k.as_str())) {
                                return Err(TarError::BadPax {
                                    offset: header_offset,
                                    reason: format!(
                                        "global header sets {key:?}, which tar readers disagree on (Go's archive/tar ignores global headers)"
                                    ),
                                });
                            }
                            parse_pax(&data, header_offset, &mut self.global_pax)?
                        }
                        b'L' => ext.gnu_long_name = Some(trim_nul(&data).to_vec()),
                        _ => ext.gnu_long_link = Some(trim_nul(&data).to_vec()),
                    }
                    continue;
                }
                _ => {}
            }
            let header = self.build_header(&block, header_offset, ustar_size, typeflag, ext)?;
            self.remaining = if header.kind == EntryKind::File { header.size } else { 0 };
            self.padding = pad(self.remaining);
            return Ok(Some(header));
        }
    }

    fn build_header(
        &self,
        block: &[u8; BLOCK],
        offset: u64,
        ustar_size: u64,
        typeflag: u8,
        ext: PendingExtensions,
    ) -> Result<EntryHeader, TarError> {
        let mut pax = self.global_pax.clone();
        pax.extend(ext.pax);
        let is_ustar = &block[257..263] == b"ustar\0";
        let mut path = match (&ext.gnu_long_name, pax.get("path")) {
            (_, Some(p)) => p.clone(),
            (Some(p), None) => p.clone(),
            (None, None) => {
                let name = trim_nul(&block[0..100]);
                let prefix = if is_ustar { trim_nul(&block[345..500]) } else { &[][..] };
                // A star header (trailer "tar\0") has a 131-byte prefix followed by atime and
                // ctime: Go's archive/tar reads it so, GNU tar as a 155-byte prefix. A prefix
                // running past 130 bytes in such a header is a different path to each: refuse.
                if is_ustar && &block[508..512] == b"tar\0" && prefix.len() > 130 {
                    return Err(TarError::BadHeader {
                        offset,
                        reason: "ustar prefix runs into the star header's time fields (readers disagree on the path)"
                            .into(),
                    });
                }
                if prefix.is_empty() {
                    name.to_vec()
                } else {
                    [prefix, b"/", name].concat()
                }
            }
        };
        let link = match (&ext.gnu_long_link, pax.get("linkpath")) {
            (_, Some(p)) => p.clone(),
            (Some(p), None) => p.clone(),
            (None, None) => trim_nul(&block[157..257]).to_vec(),
        };
        let lossy = || String::from_utf8_lossy(&path).into_owned();
        let size = match pax.get("size") {
            Some(v) => {
                let pax_size = parse_pax_u64(v, offset, "size")?;
                // A writer puts 0 (or a saturated field) in the ustar size when the real size only
                // fits in PAX; any other disagreement is a parser-differential attack.
                if ustar_size != 0 && ustar_size != pax_size {
                    return Err(TarError::SizeMismatch { path: lossy(), offset, pax: pax_size, ustar: ustar_size });
                }
                pax_size
            }
            None => ustar_size,
        };
        let uid = match pax.get("uid") {
            Some(v) => parse_pax_u64(v, offset, "uid")?,
            None => parse_numeric(&block[108..116], offset, "uid")?,
        };
        let gid = match pax.get("gid") {
            Some(v) => parse_pax_u64(v, offset, "gid")?,
            None => parse_numeric(&block[116..124], offset, "gid")?,
        };
        let mode = (parse_numeric(&block[100..108], offset, "mode")? & 0o7777) as u32;
        let kind = match typeflag {
            b'0' | b'\0' | b'7' => EntryKind::File,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Directory,
            b'6' => EntryKind::Fifo,
            other => {
                return Err(TarError::UnsupportedType { path: lossy(), offset, typeflag: other as char });
            }
        };
        if pax.keys().any(|k| k.starts_with("GNU.sparse")) {
            return Err(TarError::UnsupportedType { path: lossy(), offset, typeflag: 'S' });
        }
        // Old tars mark directories with a trailing slash on a regular-file typeflag.
        let kind = if kind == EntryKind::File && typeflag == b'\0' && path.ends_with(b"/") {
            EntryKind::Directory
        } else {
            kind
        };
        if kind != EntryKind::File && size != 0 {
            return Err(TarError::DataOnHeaderOnly { path: lossy(), offset, kind: kind.name(), size });
        }
        let (dev_major, dev_minor) = match kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => (
                parse_numeric(&block[329..337], offset, "devmajor")? as u32,
                parse_numeric(&block[337..345], offset, "devminor")? as u32,
            ),
            _ => (0, 0),
        };
        let mut xattrs = BTreeMap::new();
        for (key, value) in &pax {
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.insert(name.to_string(), value.clone());
            }
        }
        let link_target = match kind {
            EntryKind::HardLink | EntryKind::Symlink => Some(link),
            _ => None,
        };
        if kind == EntryKind::Directory {
            while path.len() > 1 && path.ends_with(b"/") {
                path.pop();
            }
        }
        Ok(EntryHeader { path, kind, mode, uid, gid, size, link_target, dev_major, dev_minor, xattrs, offset })
    }

    /// Reads content of the current entry; 0 at its end. A stream that ends early is an error.
    pub fn read_content(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(TarError::Io { offset: self.offset, source }),
            }
        };
        if n == 0 {
            return Err(TarError::Truncated { what: "entry content", offset: self.offset });
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let mut scratch = [0u8; 8192];
        while self.remaining > 0 {
            self.read_content(&mut scratch)?;
        }
        while self.padding > 0 {
            let want = self.padding.min(scratch.len() as u64) as usize;
            let got = self.read_full(&mut scratch[..want])?;
            if got < want {
                return Err(TarError::Truncated { what: "padding", offset: self.offset });
            }
            self.padding -= want as u64;
        }
        Ok(())
    }

    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let total = (size + pad(size)) as usize;
        let mut data = vec![0u8; total];
        if self.read_full(&mut data)? < total {
            return Err(TarError::Truncated { what: "an extended header", offset: self.offset });
        }
        data.truncate(size as usize);
        Ok(data)
    }

    /// Fills `buf` unless the stream ends; returns how much was read.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(TarError::Io { offset: self.offset, source }),
            }
        }
        Ok(filled)
    }
}

fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn verify_checksum(block: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let stored = parse_numeric(&block[148..156], offset, "checksum")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    if stored == unsigned || stored as i64 == signed {
        Ok(())
    } else {
        Err(TarError::BadHeader { offset, reason: format!("checksum {stored} does not match computed {unsigned}") })
    }
}

/// Parses an octal field (NUL/space padded) or a GNU base-256 field.
fn parse_numeric(field: &[u8], offset: u64, name: &str) -> Result<u64, TarError> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(TarError::BadHeader { offset, reason: format!("negative base-256 {name}") });
        }
        let mut value: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(b as u64))
                .ok_or_else(|| TarError::BadHeader { offset, reason: format!("{name} overflows") })?;
        }
        return Ok(value);
    }
    let text: &[u8] = {
        let t = trim_nul(field);
        let start = t.iter().position(|&b| b != b' ').unwrap_or(t.len());
        let end = t.iter().rposition(|&b| b != b' ').map_or(start, |e| e + 1);
        &t[start..end.max(start)]
    };
    if text.is_empty() {
        return Ok(0);
    }
    let mut value: u64 = 0;
    for &b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(TarError::BadHeader {
                offset,
                reason: format!("{name} field is not octal: {:?}", String::from_utf8_lossy(field)),
            });
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add((b - b'0') as u64))
            .ok_or_else(|| TarError::BadHeader { offset, reason: format!("{name} overflows") })?;
    }
    Ok(value)
}

fn parse_pax_u64(value: &[u8], offset: u64, key: &str) -> Result<u64, TarError> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| TarError::BadPax { offset, reason: format!("{key} is not a decimal number") })
}

/// Parses `"<len> <key>=<value>\n"` records. A record with an empty value deletes the key.
fn parse_pax(data: &[u8], offset: u64, into: &mut BTreeMap<String, Vec<u8>>) -> Result<(), TarError> {
    let bad = |reason: &str| TarError::BadPax { offset, reason: reason.to_string() };
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest.iter().position(|&b| b == b' ').ok_or_else(|| bad("record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("record length is not a number"))?;
        if len <= space + 1 || len > rest.len() {
            return Err(bad("record length out of range"));
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").ok_or_else(|| bad("record does not end with a newline"))?;
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("record without '='"))?;
        let key = std::str::from_utf8(&record[..eq]).map_err(|_| bad("key is not UTF-8"))?;
        let value = &record[eq + 1..];
        if value.is_empty() {
            into.remove(key);
        } else {
            into.insert(key.to_string(), value.to_vec());
        }
        rest = &rest[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar header for a regular file of `size` bytes, with a valid checksum.
    fn file_header(name: &str, size: u64) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn entries(bytes: &[u8]) -> Result<Vec<String>, TarError> {
        let mut reader = TarReader::new(bytes);
        let mut names = Vec::new();
        while let Some(entry) = reader.next_entry()? {
            names.push(entry.path_lossy());
        }
        Ok(names)
    }

    #[test]
    fn end_marker_of_one_or_two_zero_blocks() {
        let mut one = file_header("a", 0).to_vec();
        one.extend_from_slice(&[0; BLOCK]);
        assert_eq!(entries(&one).unwrap(), ["a"]);
        one.extend_from_slice(&[0; BLOCK]);
        assert_eq!(entries(&one).unwrap(), ["a"]);
    }

    /// A header of `typeflag` carrying `data`.
    fn meta_entry(typeflag: u8, data: &[u8]) -> Vec<u8> {
        let mut h = file_header("pax", data.len() as u64);
        h[156] = typeflag;
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    #[test]
    fn global_pax_headers_may_only_carry_harmless_records() {
        // git archive writes a global comment: fine.
        let mut ok = meta_entry(b'g', b"52 comment=0123456789012345678901234567890123456789\n");
        ok.extend_from_slice(&file_header("a", 0));
        ok.extend_from_slice(&[0; 2 * BLOCK]);
        assert_eq!(entries(&ok).unwrap(), ["a"]);
        // A global size would make this reader and Go's archive/tar see different entries.
        let mut bad = meta_entry(b'g', b"13 size=1024\n");
        bad.extend_from_slice(&file_header("a", 0));
        bad.extend_from_slice(&[0; 2 * BLOCK]);
        let err = entries(&bad).unwrap_err();
        assert!(err.to_string().contains("global header sets \"size\""), "{err}");
    }

    #[test]
    fn star_prefix_running_into_the_time_fields_is_refused() {
        let with_prefix = |prefix: &[u8]| {
            let mut h = file_header("name", 0);
            h[345..345 + prefix.len()].copy_from_slice(prefix);
            h[508..512].copy_from_slice(b"tar\0");
            h[148..156].copy_from_slice(b"        ");
            let sum: u64 = h.iter().map(|&b| b as u64).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            let mut out = h.to_vec();
            out.extend_from_slice(&[0; 2 * BLOCK]);
            out
        };
        assert_eq!(entries(&with_prefix(b"dir")).unwrap(), ["dir/name"]);
        let err = entries(&with_prefix(&[b'p'; 140])).unwrap_err();
        assert!(err.to_string().contains("star header"), "{err}");
    }

    #[test]
    fn entry_hidden_behind_a_lone_zero_block_is_refused() {
        let mut bytes = file_header("a", 0).to_vec();
        bytes.extend_from_slice(&[0; BLOCK]);
        bytes.extend_from_slice(&file_header("hidden", 0));
        bytes.extend_from_slice(&[0; 2 * BLOCK]);
        let err = entries(&bytes).unwrap_err();
        assert!(matches!(err, TarError::BadHeader { offset: 512, .. }), "{err}");
        assert!(err.to_string().contains("lone zero block"), "{err}");
    }
}
