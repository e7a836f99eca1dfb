//! The module dependencies run one way (docs/architecture.md, "Module
//! layering"): wire → ipvs → worker → io → daemon / ctl. This test reads
//! the sources of the lower layers and fails, naming the file and line,
//! where one of them uses a module above it (`crate::ctl::…`,
//! `super::super::ctl`, `xvs::daemon`, `use crate::{ctl, …}`, …).
//!
//! Test code is exempt: `#[cfg(test)]` items and the `tests*.rs` files
//! they include build fixtures with the control plane (a `Model` compiled
//! into a `Snapshot`), as any test above the layers may.

use std::path::{Path, PathBuf};

/// Each layer (a directory of `src/`) and the modules it must not use.
const LAYERS: &[(&str, &[&str])] = &[
    ("wire", &["ipvs", "worker", "io", "daemon", "ctl", "health", "monitor"]),
    ("ipvs", &["worker", "io", "daemon", "ctl", "health", "monitor"]),
    ("worker", &["io", "daemon", "ctl", "health", "monitor"]),
    ("io", &["daemon", "ctl", "health", "monitor"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file only compiled into tests (`#[cfg(test)] mod tests;`).
fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.starts_with("tests_") || p.components().any(|c| c.as_os_str() == "tests")
}

/// `line` with its `//` comment, string and char literals blanked, so
/// that braces and paths inside them count for nothing. `in_str` carries
/// an unfinished string over lines (raw strings with `#` are not used in
/// these layers' non-test code; an unbalanced result fails the test).
fn code_of(line: &str, in_str: &mut bool) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if *in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                *in_str = false;
            }
            out.push(' ');
            i += 1;
            continue;
        }
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => break,
            b'"' => {
                *in_str = true;
                out.push(' ');
            }
            // A char literal ('x', '\n', '{'); a lifetime ('a) is left alone.
            b'\'' if b.get(i + 2) == Some(&b'\'') => {
                out.push_str("   ");
                i += 3;
                continue;
            }
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                let end = b[i + 2..].iter().position(|&x| x == b'\'').map_or(b.len(), |p| i + 3 + p);
                out.push_str(&" ".repeat(end - i));
                i = end;
                continue;
            }
            _ => out.push(c as char),
        }
        i += 1;
    }
    out
}

/// Whether `code` names module `m` as a path segment of this crate:
/// `m::` after `crate::`, `super::`, `xvs::` or inside a `crate::{…}`
/// group, or `m` alone in such a group.
fn names_module(code: &str, m: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(p) = code[from..].find(m) {
        let at = from + p;
        from = at + m.len();
        let before = code[..at].trim_end();
        let after = code[at + m.len()..].trim_start();
        if code[..at].chars().next_back().is_some_and(ident) || code[at + m.len()..].chars().next().is_some_and(ident) {
            continue;
        }
        let as_path = before.ends_with("crate::") || before.ends_with("super::") || before.ends_with("xvs::");
        let in_group = (before.ends_with('{') || before.ends_with(',')) && (after.starts_with("::") || after.starts_with(',') || after.starts_with('}'));
        if as_path || (in_group && after.starts_with("::")) || (in_group && before.contains("crate::{")) {
            return true;
        }
    }
    false
}

/// The uses of forbidden modules in `text` (non-test code only): (line
/// number, module, the line).
fn violations(text: &str, forbidden: &[&str]) -> Result<Vec<(usize, String, String)>, String> {
    let mut found = Vec::new();
    let mut in_str = false;
    // Skipping a #[cfg(test)] item: waiting for its start, then its depth.
    let mut pending = false;
    let mut depth: Option<i64> = None;
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line, &mut in_str);
        let t = code.trim();
        if let Some(d) = depth.as_mut() {
            *d += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            if *d <= 0 {
                depth = None;
            }
            continue;
        }
        if t.starts_with("#[cfg(test)]") || t.starts_with("#[cfg(all(test") {
            pending = true;
            if t.ends_with(']') {
                continue;
            }
        }
        if pending {
            if t.starts_with("#[") || t.is_empty() {
                continue;
            }
            pending = false;
            let d = code.matches('{').count() as i64 - code.matches('}').count() as i64;
            if d > 0 {
                depth = Some(d);
            }
            // A one-line item (`mod tests;`, `use …;`, `fn f() {}`) ends here.
            continue;
        }
        for m in forbidden {
            if names_module(&code, m) {
                found.push((n + 1, m.to_string(), line.trim().to_string()));
            }
        }
    }
    if depth.is_some() || in_str {
        return Err("a #[cfg(test)] item or a string never ends: the scan lost its way".into());
    }
    Ok(found)
}

#[test]
fn lower_layers_import_nothing_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    let mut scanned = 0;
    for (layer, forbidden) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer} has no sources");
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let text = std::fs::read_to_string(f).unwrap();
            let rel = f.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
            scanned += 1;
            match violations(&text, forbidden) {
                Ok(v) => bad.extend(v.into_iter().map(|(n, m, l)| format!("{rel}:{n}: layer {layer} uses {m}: {l}"))),
                Err(e) => bad.push(format!("{rel}: {e}")),
            }
        }
    }
    assert!(scanned > 20, "only {scanned} files scanned");
    assert!(bad.is_empty(), "uses of a higher layer (docs/architecture.md, Module layering):\n{}", bad.join("\n"));
}

/// The scanner finds every spelling of a use, and none in comments,
/// strings or test code.
#[test]
fn the_scan_finds_uses_and_ignores_comments_strings_and_tests() {
    let text = r#"//! See `crate::ctl::snapshot` (a comment).
use crate::ctl::snapshot::Snapshot;
use crate::{ctl, wire};
use crate::{wire::Mac, ctl::model::Model};
fn f(s: &std::sync::Arc<crate::ctl::snapshot::Snapshot>) {
    let _ = "crate::ctl::x { ";
    let _ = '{';
    let _ = super::super::ctl::route::Routes::default();
    let ctl = 1; // a local named ctl is no module
    let _ = ctl + 1;
    let _ = xvs::ctl::config::load_str;
    let _ = crate::ctlx::y;
}
#[cfg(test)]
use crate::ctl::model::Model;
#[cfg(test)]
mod tests {
    use crate::ctl::config::load_str;
    fn g() { let _ = "}"; let _ = '}'; }
}
fn after_tests() { crate::ctl::config::load_str(); }
"#;
    let lines: Vec<usize> = violations(text, &["ctl"]).unwrap().into_iter().map(|(n, ..)| n).collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 8, 11, 21]);
    assert!(violations("#[cfg(test)]\nmod tests {\n    fn f() {\n", &["ctl"]).is_err(), "an unbalanced test module is an error");
    assert!(is_test_file(Path::new("src/worker/tests_l2.rs")) && is_test_file(Path::new("src/worker/sync/tests.rs")));
    assert!(!is_test_file(Path::new("src/worker/sync.rs")));
}
