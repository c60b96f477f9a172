//! A module's `start` function, moved out of instantiation. Pure: bytes in, bytes out.
//!
//! wasmi runs a `start` function inside instantiation with a plain call, which the runner
//! cannot meter in slices (see [`crate::exec`]: every call of guest code is run in fuel
//! slices, so that the interpreter's native stack is unwound between them). So a module
//! with a start section is rewritten before it is compiled: the start section is dropped,
//! and the start function is exported under [`START_EXPORT`] instead, which the runner
//! calls, sliced, right after instantiation. Nothing else changes: the other sections are
//! copied byte for byte, and the rewritten module is validated again by wasmi.
//! [`START_EXPORT`] holds a NUL byte and is left out of every export list the task sees.

use wasmparser::{Parser, Payload};

/// The export the start function gets.
pub const START_EXPORT: &str = "\0wasm-exec:start";

/// A module with its start function moved to an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub bytes: Vec<u8>,
}

/// Returns the rewritten module when `module` has a start section; `None` when it has none,
/// or when it cannot be read (wasmi then reports why, from the original bytes).
pub fn move_start(module: &[u8]) -> Option<Moved> {
    // (section id, byte range of the whole section: id, size and contents)
    let mut sections: Vec<(u8, std::ops::Range<usize>)> = Vec::new();
    let mut start = None;
    let mut exports: Option<(u32, std::ops::Range<usize>)> = None;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.ok()?;
        match &payload {
            Payload::StartSection { func, .. } => start = Some(*func),
            Payload::ExportSection(reader) => {
                exports = Some((reader.count(), reader.range()));
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            // `range` is the contents; the section begins with its id and size before it.
            let header_start = section_start(module, range.start)?;
            sections.push((id, header_start..range.end));
        }
    }
    let func = start?;
    if exports.as_ref().is_some_and(|(_, r)| {
        // A module that already exports the reserved name keeps its start section.
        module[r.clone()]
            .windows(START_EXPORT.len())
            .any(|w| w == START_EXPORT.as_bytes())
    }) {
        return None;
    }
    let mut entry = Vec::new();
    leb(&mut entry, START_EXPORT.len() as u64);
    entry.extend_from_slice(START_EXPORT.as_bytes());
    entry.push(0x00); // func
    leb(&mut entry, u64::from(func));

    let mut out = module[..8].to_vec();
    for (id, range) in sections {
        match id {
            7 => {
                let (count, contents) = exports.clone()?;
                // The contents begin with the count; the entries follow it unchanged.
                let entries =
                    &module[contents.start + leb_len(module, contents.start)?..contents.end];
                let mut body = Vec::new();
                leb(&mut body, u64::from(count) + 1);
                body.extend_from_slice(entries);
                body.extend_from_slice(&entry);
                section(&mut out, 7, &body);
            }
            8 => {
                if exports.is_none() {
                    // No export section: one goes where the start section was (its place
                    // in the section order is right before it).
                    let mut body = Vec::new();
                    leb(&mut body, 1);
                    body.extend_from_slice(&entry);
                    section(&mut out, 7, &body);
                }
            }
            _ => out.extend_from_slice(&module[range]),
        }
    }
    Some(Moved { bytes: out })
}

/// Where the section whose contents start at `contents` begins: walk back over its size
/// (a LEB128, whose last byte is the only one below 0x80) and its id byte.
fn section_start(module: &[u8], contents: usize) -> Option<usize> {
    let mut i = contents.checked_sub(1)?;
    // The size's last byte has the high bit clear; earlier ones have it set.
    while i > 0 && module.get(i - 1).is_some_and(|b| b & 0x80 != 0) {
        i -= 1;
    }
    i.checked_sub(1)
}

/// Bytes of the LEB128 at `at`.
fn leb_len(bytes: &[u8], at: usize) -> Option<usize> {
    let tail = bytes.get(at..)?;
    tail.iter().position(|b| b & 0x80 == 0).map(|p| p + 1)
}

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
    out.push(id);
    leb(out, body.len() as u64);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports_of(bytes: &[u8]) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for p in Parser::new(0).parse_all(bytes) {
            if let Payload::ExportSection(r) = p.unwrap() {
                for e in r {
                    let e = e.unwrap();
                    out.push((e.name.to_owned(), e.index));
                }
            }
        }
        out
    }

    fn has_start(bytes: &[u8]) -> bool {
        Parser::new(0)
            .parse_all(bytes)
            .any(|p| matches!(p, Ok(Payload::StartSection { .. })))
    }

    #[test]
    fn the_start_function_becomes_an_export_and_the_rest_is_unchanged() {
        for wat in [
            // With an export section.
            r#"(module (memory 1) (global $g (mut i32) (i32.const 0))
                 (func $init (global.set $g (i32.const 7)))
                 (func (export "get") (result i32) (global.get $g))
                 (start $init) (data (i32.const 0) "hi"))"#,
            // Without one.
            r#"(module (func $init) (start $init))"#,
            // With an import shifting the function indices.
            r#"(module (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
                 (func $s) (start $s) (func (export "f")))"#,
        ] {
            let bytes = wat::parse_str(wat).unwrap();
            let moved = move_start(&bytes).unwrap().bytes;
            wasmparser::validate(&moved).unwrap();
            assert!(!has_start(&moved));
            let start_index = Parser::new(0)
                .parse_all(&bytes)
                .find_map(|p| match p.unwrap() {
                    Payload::StartSection { func, .. } => Some(func),
                    _ => None,
                })
                .unwrap();
            let mut want = exports_of(&bytes);
            want.push((START_EXPORT.to_owned(), start_index));
            assert_eq!(exports_of(&moved), want);
        }
    }

    #[test]
    fn a_module_without_a_start_section_is_left_alone() {
        let bytes = wat::parse_str(r#"(module (func (export "f")))"#).unwrap();
        assert_eq!(move_start(&bytes), None);
        assert_eq!(move_start(b"\0asm\x01\0\0\0\x08"), None, "unreadable");
        assert_eq!(move_start(b""), None);
    }

    #[test]
    fn sections_with_long_size_fields_are_found() {
        // A custom section padded so its size takes several LEB bytes, before the start.
        let body = format!("\"{}\"", "x".repeat(300));
        let wat = format!(r#"(module (func $s) (start $s) (@custom "pad" {body}))"#);
        let bytes = wat::parse_str(&wat).unwrap();
        let moved = move_start(&bytes).unwrap().bytes;
        wasmparser::validate(&moved).unwrap();
        assert!(!has_start(&moved));
    }
}
