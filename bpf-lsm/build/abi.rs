//! The enforcer's ABI, read from `src/bpf/abi.h` (the one place it is written) and written out
//! for both sides: Rust constants and `#[repr(C)]` structs with `assert!`s of their sizes and
//! offsets, and the C side's `_Static_assert`s of the same numbers. The numbers come from one
//! layout computation here (natural alignment, as both the BPF and the x86-64 C ABIs lay out
//! these integer fields); each compiler then proves that its own layout equals them, so the two
//! sides agree or the build fails. Implicit padding is refused outright.
//!
//! The header may hold only what [`parse`] understands (its top comment says what).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A `#define NAME VALUE /* (rust TYPE) ... */`.
pub struct Constant {
    pub name: String,
    pub value: String,
    pub rust_type: String,
}

pub struct Field {
    pub name: String,
    /// The C scalar type (`__u32`, `char`, ...).
    pub c_type: String,
    /// Array length, when the field is an array.
    pub len: Option<u64>,
    pub offset: u64,
}

pub struct Struct {
    pub name: String,
    pub fields: Vec<Field>,
    pub size: u64,
}

pub struct Abi {
    pub constants: Vec<Constant>,
    pub structs: Vec<Struct>,
}

/// Size (and alignment) of a C scalar type, and its Rust name.
fn scalar(c_type: &str) -> Option<(u64, &'static str)> {
    Some(match c_type {
        "__u8" | "char" => (1, "u8"),
        "__u16" => (2, "u16"),
        "__u32" => (4, "u32"),
        "__s32" => (4, "i32"),
        "__u64" => (8, "u64"),
        "__s64" => (8, "i64"),
        _ => return None,
    })
}

/// Removes `/* ... */` comments, keeping the `(rust TYPE)` annotation of a comment that ends a
/// `#define` line as a `@TYPE` token.
fn strip_comments(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").ok_or("unterminated comment")? + start;
        let comment = &rest[start + 2..end];
        let line = &out[out.rfind('\n').map_or(0, |n| n + 1)..];
        if let Some(at) = comment.find("(rust ").filter(|_| line.trim_start().starts_with("#define")) {
            let ty = comment[at + 6..].split(')').next().unwrap_or("").trim();
            out.push_str(&format!(" @{ty}"));
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn number(text: &str, constants: &BTreeMap<String, u64>) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.or_else(|| constants.get(text).copied()).ok_or_else(|| format!("{text:?} is not a number or a constant"))
}

pub fn parse(text: &str) -> Result<Abi, String> {
    let text = strip_comments(text)?;
    let mut constants = Vec::new();
    let mut values = BTreeMap::new();
    let mut structs = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["#ifndef" | "#endif", ..] | ["#include", "\"abi_layout.h\""] => {}
            ["#define", name] if name.ends_with("_ABI_H") => {}
            ["#define", name, value, ty] if ty.starts_with('@') => {
                values.insert(name.to_string(), number(value, &values)?);
                constants.push(Constant { name: name.into(), value: value.into(), rust_type: ty[1..].into() });
            }
            ["#define", name, ..] => return Err(format!("#define {name}: needs a value and a (rust TYPE) comment")),
            ["struct", name, "{"] => structs.push(parse_struct(name, &mut lines, &values)?),
            _ => return Err(format!("cannot read {line:?}")),
        }
    }
    Ok(Abi { constants, structs })
}

fn parse_struct<'a>(
    name: &str,
    lines: &mut impl Iterator<Item = &'a str>,
    constants: &BTreeMap<String, u64>,
) -> Result<Struct, String> {
    let mut fields = Vec::new();
    let (mut offset, mut align) = (0u64, 1u64);
    loop {
        let line = lines.next().ok_or_else(|| format!("struct {name}: no closing `}};`"))?;
        if line == "};" {
            break;
        }
        let (c_type, declarator) = line
            .strip_suffix(';')
            .and_then(|l| l.split_once(char::is_whitespace))
            .ok_or_else(|| format!("struct {name}: cannot read {line:?}"))?;
        let (size, _) = scalar(c_type).ok_or_else(|| format!("struct {name}: unknown type {c_type}"))?;
        let declarator = declarator.trim();
        let (field, len) = match declarator.split_once('[') {
            Some((field, len)) => (field, Some(number(len.trim_end_matches(']'), constants)?)),
            None => (declarator, None),
        };
        if offset % size != 0 {
            return Err(format!("struct {name}: {field} would follow implicit padding (offset {offset}); add it"));
        }
        fields.push(Field { name: field.into(), c_type: c_type.into(), len, offset });
        offset += size * len.unwrap_or(1);
        align = align.max(size);
    }
    if offset % align != 0 {
        return Err(format!("struct {name}: {offset} bytes leave tail padding (alignment {align}); add it"));
    }
    Ok(Struct { name: name.into(), fields, size: offset })
}

/// `enf_digest_key` -> `EnfDigestKey`.
pub fn rust_name(c_name: &str) -> String {
    c_name.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

pub fn rust(abi: &Abi) -> String {
    let mut out = String::from("// Generated by build.rs from src/bpf/abi.h: edit that file instead.\n\n");
    for c in &abi.constants {
        let _ = writeln!(out, "pub const {}: {} = {};", c.name, c.rust_type, c.value);
    }
    for s in &abi.structs {
        let name = rust_name(&s.name);
        let _ = writeln!(out, "\n/// `struct {}` of `abi.h`.", s.name);
        let _ = writeln!(out, "#[repr(C)]\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub struct {name} {{");
        for f in &s.fields {
            let (_, ty) = scalar(&f.c_type).expect("checked by parse");
            match f.len {
                Some(len) => _ = writeln!(out, "    pub {}: [{ty}; {len}],", f.name),
                None => _ = writeln!(out, "    pub {}: {ty},", f.name),
            }
        }
        let _ = writeln!(out, "}}");
        let _ = writeln!(out, "const _: () = assert!(::core::mem::size_of::<{name}>() == {});", s.size);
        for f in &s.fields {
            let _ =
                writeln!(out, "const _: () = assert!(::core::mem::offset_of!({name}, {}) == {});", f.name, f.offset);
        }
    }
    out
}

pub fn c_layout(abi: &Abi) -> String {
    let mut out = String::from("/* Generated by build.rs from abi.h: the layout both sides must have. */\n");
    for s in &abi.structs {
        let _ = writeln!(out, "_Static_assert(sizeof(struct {0}) == {1}, \"struct {0}: size\");", s.name, s.size);
        for f in &s.fields {
            let _ = writeln!(
                out,
                "_Static_assert(__builtin_offsetof(struct {0}, {1}) == {2}, \"struct {0}: offset of {1}\");",
                s.name, f.name, f.offset
            );
        }
    }
    out
}
