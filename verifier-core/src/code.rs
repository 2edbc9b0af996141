//! Code marks: whether a regular file's content is something the kernel would run or map as
//! code, decided from its first bytes while they are hashed (never a second read). An ELF object
//! starts with `\x7fELF`; a script the kernel runs through its interpreter starts with `#!`.
//!
//! The mark is part of the signed per-file manifest (`code`, predicate v2), so the enforcer,
//! which never sees image content, loads into a scope's digest set only what can run. Verify
//! recomputes it from the image like every other field: a manifest that calls an ELF file
//! "not code" does not verify.

use serde::{Deserialize, Serialize};

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const SHEBANG: &[u8; 2] = b"#!";

/// What kind of code a file's content is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// An ELF object: executable, shared library, the dynamic loader.
    Elf,
    /// A `#!` script, run by the interpreter its first line names.
    Script,
}

impl CodeKind {
    /// The kind of code `head` (the first bytes of a file, at least four when the file has
    /// them) starts with, if any.
    pub fn detect(head: &[u8]) -> Option<CodeKind> {
        if head.starts_with(ELF_MAGIC) {
            Some(CodeKind::Elf)
        } else if head.starts_with(SHEBANG) {
            Some(CodeKind::Script)
        } else {
            None
        }
    }

    /// The name the manifest uses (`elf`, `script`).
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Elf => "elf",
            CodeKind::Script => "script",
        }
    }
}

/// Keeps the first bytes of a stream handed over in chunks of any size (a reader may return
/// one byte at a time), for [`CodeKind::detect`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeSniffer {
    head: [u8; 4],
    len: usize,
}

impl CodeSniffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of content.
    pub fn update(&mut self, chunk: &[u8]) {
        let take = (self.head.len() - self.len).min(chunk.len());
        self.head[self.len..self.len + take].copy_from_slice(&chunk[..take]);
        self.len += take;
    }

    /// The mark of the content fed so far.
    pub fn finish(&self) -> Option<CodeKind> {
        CodeKind::detect(&self.head[..self.len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> Option<CodeKind> {
        let mut s = CodeSniffer::new();
        chunks.iter().for_each(|c| s.update(c));
        s.finish()
    }

    #[test]
    fn elf_and_shebang_are_code() {
        assert_eq!(sniff(&[b"\x7fELF\x02\x01\x01\0rest"]), Some(CodeKind::Elf));
        assert_eq!(sniff(&[b"#!/bin/sh\necho hi\n"]), Some(CodeKind::Script));
        assert_eq!(sniff(&[b"#!"]), Some(CodeKind::Script), "a bare #! is still run through exec's script loader");
        assert_eq!(sniff(&[b"\x7fELF"]), Some(CodeKind::Elf));
    }

    #[test]
    fn short_empty_and_near_miss_content_is_not_code() {
        for content in
            [&b""[..], b"#", b"\x7f", b"\x7fE", b"\x7fEL", b"# comment\n", b"ELF\x7f", b"\x7felf", b" #!/bin/sh"]
        {
            assert_eq!(sniff(&[content]), None, "{content:?}");
        }
    }

    #[test]
    fn magic_split_across_chunks_is_found() {
        assert_eq!(sniff(&[b"\x7f", b"E", b"", b"LF", b"more"]), Some(CodeKind::Elf));
        assert_eq!(sniff(&[b"#", b"!/bin/sh"]), Some(CodeKind::Script));
        assert_eq!(sniff(&[b"\x7fEL", b"X"]), None);
    }

    #[test]
    fn serialises_as_lowercase_names() {
        assert_eq!(serde_json::to_string(&CodeKind::Elf).unwrap(), r#""elf""#);
        assert_eq!(serde_json::from_str::<CodeKind>(r#""script""#).unwrap(), CodeKind::Script);
        assert!(serde_json::from_str::<CodeKind>(r#""ELF""#).is_err());
        assert_eq!(CodeKind::Script.as_str(), "script");
    }
}
