//! A small tar writer (ustar headers, PAX extended headers) for building layers byte by byte,
//! including the malformed ones a real `tar` would never write.

const BLOCK: usize = 512;

/// One entry to write. Build with the constructors, adjust the public fields for hostile cases.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Raw path bytes, written as-is (no normalisation): `../x` and `/abs` are allowed.
    pub path: Vec<u8>,
    /// Tar typeflag: `b'0'` file, `b'1'` hardlink, `b'2'` symlink, `b'5'` directory, ...
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    /// PAX records written in an `x` header before this entry, in order.
    pub pax: Vec<(String, Vec<u8>)>,
    /// Size written in the ustar header instead of `data.len()` (for size disagreements).
    pub ustar_size: Option<u64>,
    /// Device numbers, for `b'3'` (char) and `b'4'` (block) entries.
    pub dev: (u32, u32),
}

impl Entry {
    fn new(path: impl AsRef<[u8]>, typeflag: u8, mode: u32) -> Self {
        Entry {
            path: path.as_ref().to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            link: Vec::new(),
            data: Vec::new(),
            pax: Vec::new(),
            ustar_size: None,
            dev: (0, 0),
        }
    }

    pub fn char_device(path: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Self {
        Entry { dev: (major, minor), ..Entry::new(path, b'3', mode) }
    }

    pub fn block_device(path: impl AsRef<[u8]>, mode: u32, major: u32, minor: u32) -> Self {
        Entry { dev: (major, minor), ..Entry::new(path, b'4', mode) }
    }

    pub fn fifo(path: impl AsRef<[u8]>, mode: u32) -> Self {
        Entry::new(path, b'6', mode)
    }

    pub fn file(path: impl AsRef<[u8]>, mode: u32, data: impl AsRef<[u8]>) -> Self {
        Entry { data: data.as_ref().to_vec(), ..Entry::new(path, b'0', mode) }
    }

    pub fn dir(path: impl AsRef<[u8]>, mode: u32) -> Self {
        Entry::new(path, b'5', mode)
    }

    pub fn symlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        Entry { link: target.as_ref().to_vec(), ..Entry::new(path, b'2', 0o777) }
    }

    pub fn hardlink(path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        Entry { link: target.as_ref().to_vec(), ..Entry::new(path, b'1', 0o644) }
    }

    /// An empty file, the way whiteouts (`.wh.NAME`, `.wh..wh..opq`) are written.
    pub fn whiteout(path: impl AsRef<[u8]>) -> Self {
        Entry::new(path, b'0', 0)
    }

    pub fn with_pax(mut self, key: &str, value: impl AsRef<[u8]>) -> Self {
        self.pax.push((key.to_string(), value.as_ref().to_vec()));
        self
    }

    pub fn with_owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// Accumulates a tar stream in memory.
#[derive(Debug, Default, Clone)]
pub struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    /// A layer of what only root can create and only a careful unpacker keeps: device nodes, a
    /// fifo, foreign owners, setgid and sticky modes (the differential tests against umoci start
    /// from it).
    pub fn special_files() -> Self {
        let mut layer = TarWriter::new();
        layer
            .dir("dev", 0o755)
            .add(Entry::char_device("dev/null", 0o666, 1, 3))
            .add(Entry::block_device("dev/loop9", 0o660, 7, 9).with_owner(0, 6))
            .add(Entry::fifo("dev/pipe", 0o620))
            .dir("srv", 0o1777)
            .add(Entry::file("srv/setgid", 0o2711, b"sg").with_owner(1000, 50))
            .add(Entry::file("srv/sticky-file", 0o1644, b"st").with_owner(65534, 65534));
        layer
    }

    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, entry: Entry) -> &mut Self {
        let mut pax = entry.pax.clone();
        if entry.path.len() > 100 && !pax.iter().any(|(k, _)| k == "path") {
            pax.push(("path".into(), entry.path.clone()));
        }
        if entry.link.len() > 100 && !pax.iter().any(|(k, _)| k == "linkpath") {
            pax.push(("linkpath".into(), entry.link.clone()));
        }
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut name = b"PaxHeaders/".to_vec();
            name.extend_from_slice(&entry.path[..entry.path.len().min(80)]);
            self.buf.extend_from_slice(&header(&name, b'x', 0o644, 0, 0, 0, records.len() as u64, b"", (0, 0)));
            self.push_data(&records);
        }
        let size = entry.ustar_size.unwrap_or(entry.data.len() as u64);
        self.buf.extend_from_slice(&header(
            &entry.path,
            entry.typeflag,
            entry.mode,
            entry.uid,
            entry.gid,
            entry.mtime,
            size,
            &entry.link,
            entry.dev,
        ));
        self.push_data(&entry.data);
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl AsRef<[u8]>) -> &mut Self {
        self.add(Entry::file(path, mode, data))
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.add(Entry::dir(path, mode))
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(Entry::symlink(path, target))
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.add(Entry::hardlink(path, target))
    }

    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        self.add(Entry::whiteout(path))
    }

    /// A global PAX header (`g`) with these records, applying (for POSIX readers) to every later
    /// entry.
    pub fn global_pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let records: Vec<(String, Vec<u8>)> = records.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        let data = pax_records(&records);
        self.buf.extend_from_slice(&header(b"pax_global_header", b'g', 0o644, 0, 0, 0, data.len() as u64, b"", (0, 0)));
        self.push_data(&data);
        self
    }

    /// Appends raw bytes (for example another archive's entries).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// The bytes so far, without the end-of-archive marker.
    pub fn bytes_without_end(&self) -> &[u8] {
        &self.buf
    }

    /// The finished archive: the entries and two zero blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend_from_slice(&[0u8; 2 * BLOCK]);
        out
    }

    fn push_data(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }
}

/// `"<len> <key>=<value>\n"` records, where `len` counts the whole record including itself.
pub fn pax_records(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body_len = 1 + key.len() + 1 + value.len() + 1; // ' ' key '=' value '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn header(
    path: &[u8],
    typeflag: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: &[u8],
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = &path[..path.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    let link = &link[..link.len().min(100)];
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    octal(&mut h[329..337], dev.0 as u64);
    octal(&mut h[337..345], dev.1 as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// Zero-padded octal with a trailing NUL, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() <= width, "{value} does not fit a {width}-digit octal field");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        let r = pax_records(&[("path".into(), b"a".to_vec())]);
        assert_eq!(r, b"9 path=a\n");
        let long = vec![b'x'; 95];
        let r = pax_records(&[("path".into(), long)]);
        assert_eq!(std::str::from_utf8(&r[..4]).unwrap(), "105 ");
        assert_eq!(r.len(), 105);
    }

    #[test]
    fn writes_blocks_with_valid_checksums() {
        let mut w = TarWriter::new();
        w.file("a/b", 0o4755, b"hello").dir("a", 0o755);
        let bytes = w.finish();
        assert_eq!(bytes.len(), 512 * 2 + 512 + 1024);
        let h = &bytes[..512];
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| b as u64).sum::<u64>());
    }
}

#[cfg(test)]
mod gnu_tar {
    use super::*;

    /// GNU tar (always on Debian) reads what this writer writes, long PAX names included.
    #[test]
    fn gnu_tar_lists_the_entries() {
        let long = format!("dir/{}", "n".repeat(150));
        let mut w = TarWriter::new();
        w.dir("dir", 0o755).file(&long, 0o4755, b"data").symlink("dir/link", "target").hardlink("dir/hard", &long);
        let dir = std::env::temp_dir().join(format!("testdata-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.tar");
        std::fs::write(&file, w.finish()).unwrap();
        let out =
            std::process::Command::new("tar").arg("-tvf").arg(&file).output().expect("GNU tar (Debian package `tar`)");
        std::fs::remove_dir_all(&dir).unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
        assert!(listing.contains(&long), "{listing}");
        assert!(listing.contains("-rwsr-xr-x"), "{listing}");
        assert!(listing.contains("dir/link -> target"), "{listing}");
        assert!(listing.contains(&format!("dir/hard link to {long}")), "{listing}");
    }
}
