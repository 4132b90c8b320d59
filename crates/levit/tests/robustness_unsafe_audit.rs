//! Every `unsafe` block and `unsafe impl` in the repository's Rust code carries a
//! `// SAFETY:` comment that argues it, on the line itself or in the comment block
//! directly above (the rule of clippy's `undocumented_unsafe_blocks`, checked here so
//! that `cargo test` enforces it for every crate, examples, tests and `fuzz/`).
//! `--nocapture` prints the inventory per file (docs/robustness.md lists what covers
//! each).

mod robustness_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The code part of a line: before a `//` comment, with string literals blanked (so a
/// quoted "unsafe {" is not code).
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if !in_str && c == '/' && chars.peek() == Some(&'/') {
            break;
        }
        if c == '"' && prev != '\\' {
            in_str = !in_str;
        }
        code.push(if in_str { ' ' } else { c });
        prev = c;
    }
    code
}

/// Whether the line opens an unsafe block or implements an unsafe trait.
fn is_unsafe_site(code: &str) -> bool {
    let mut rest = code;
    while let Some(i) = rest.find("unsafe") {
        let before_ok = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = rest[i + "unsafe".len()..].trim_start();
        if before_ok && (after.starts_with('{') || after.starts_with("impl")) {
            return true;
        }
        rest = &rest[i + "unsafe".len()..];
    }
    false
}

/// Whether the line itself, or the comment block directly above the statement holding
/// line `i` (attributes may sit between), has a `SAFETY` comment. A statement that
/// rustfmt broke after its `=` starts on the line above.
fn documented(lines: &[&str], i: usize) -> bool {
    if lines[i].contains("// SAFETY") {
        return true;
    }
    let mut j = i;
    while j > 0 && code_of(lines[j - 1]).trim_end().ends_with('=') {
        j -= 1;
    }
    while j > 0 {
        j -= 1;
        let t = lines[j].trim_start();
        if t.starts_with("//") {
            if t.contains("SAFETY") {
                return true;
            }
        } else if !t.starts_with("#[") {
            return false;
        }
    }
    false
}

#[test]
fn every_unsafe_block_has_a_safety_comment() {
    let repo = robustness_common::repo();
    let mut files = Vec::new();
    for dir in ["crates", "benches", "tests", "fuzz"] {
        rust_files(&repo.join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 20, "found only {} Rust files", files.len());
    let mut inventory: BTreeMap<String, usize> = BTreeMap::new();
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let rel = file.strip_prefix(&repo).unwrap().display().to_string();
        for (i, line) in lines.iter().enumerate() {
            if !is_unsafe_site(&code_of(line)) {
                continue;
            }
            *inventory.entry(rel.clone()).or_default() += 1;
            if !documented(&lines, i) {
                missing.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    let total: usize = inventory.values().sum();
    for (file, n) in &inventory {
        println!("{n:>4}  {file}");
    }
    println!("{total} unsafe blocks/impls in {} files", inventory.len());
    assert!(
        total > 0,
        "the scanner found no unsafe code at all: it is broken"
    );
    assert!(
        missing.is_empty(),
        "unsafe without a `// SAFETY:` comment directly above:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_recognises_what_it_must() {
    assert!(is_unsafe_site(&code_of("    let x = unsafe { f() };")));
    assert!(is_unsafe_site(&code_of("unsafe impl GlobalAlloc for A {")));
    assert!(!is_unsafe_site(&code_of("unsafe fn f() {")));
    assert!(!is_unsafe_site(&code_of("// unsafe { in a comment }")));
    assert!(!is_unsafe_site(&code_of(
        "let s = \"unsafe { in a string }\";"
    )));
    assert!(!is_unsafe_site(&code_of("let not_unsafe = 1;")));
    let split = ["// SAFETY: fine", "let x: T =", "    unsafe { f() };"];
    assert!(documented(&split, 2));
    let lines = [
        "// SAFETY: fine",
        "#[inline]",
        "unsafe { f() }",
        "g();",
        "unsafe { h() }",
    ];
    assert!(documented(&lines, 2));
    assert!(!documented(&lines, 4));
}
