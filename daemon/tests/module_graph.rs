//! The daemon's module graph, checked: reads `daemon/src/**/*.rs`, collects the `crate::…` paths
//! each top-level module uses (`use crate::x::…`, `use crate::{x, y::…}`, inline `crate::x::f()`),
//! and fails on
//! - an import against the layer order below (a module may use its own layer and the layers under
//!   it, never one above),
//! - a cycle between top-level modules,
//! - a top-level module missing from the table (a new module gets a layer when it is added),
//! - an entry of [`KNOWN_EXCEPTIONS`] that no longer occurs (the list only shrinks).
//!
//! Comments (doc links included) are not imports and are stripped first; so are string literals.
//! The table is the one in ARCHITECTURE.md ("Layers"); change both together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, top first. A module may import modules of its own layer or of any layer below it.
const LAYERS: &[(&str, &[&str])] = &[
    ("process", &["server", "app", "cli"]),
    ("http edge", &["api", "error"]),
    ("services", &["service", "service_manager"]),
    ("shared state", &["state"]),
    ("retrieval", &["rag"]),
    ("ingestion", &["ingest"]),
    ("library", &["library"]),
    ("metrics", &["metrics"]),
    ("models", &["models"]),
    ("providers", &["provider"]),
    ("model registry", &["models_registry"]),
    ("platform", &["compute", "files", "state_format"]),
    ("settings", &["config"]),
    ("model files", &["models_library"]),
    ("leaves", &["fault", "blocking", "wire", "ids", "durable", "debug_hang", "telemetry", "sse_parser"]),
];

/// Imports that break the order today, each with the file that makes it and why it stays for
/// now. The test fails once one of them is gone, so the entry is removed with it.
const KNOWN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`api/chat.rs` → `api`, `state.rs` → `state`); `None`
/// for the crate roots.
fn top_level(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// `text` without comments and the contents of string and char literals.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'"' | b'#')) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) => {
                // A raw string: r"…", r#"…"#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' => {
                // A char literal ('a', '\n', '\''), or a lifetime ('a) which is kept.
                let literal = matches!((b.get(i + 1), b.get(i + 2)), (Some(b'\\'), _) | (Some(_), Some(b'\'')));
                if literal {
                    i += 2;
                    while i < b.len() && b[i] != b'\'' {
                        i += if b[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
            _ => {
                // Copy one whole character (the source is UTF-8).
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&text[i..i + len]);
                i += len;
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `code` (comments stripped) names through `crate::`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // `hearth_crate::`, not `crate::`
        }
        let trimmed = rest.trim_start();
        if let Some(group) = trimmed.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first identifier of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(trimmed);
            if !name.is_empty() {
                found.insert(name.to_owned());
            }
        }
    }
    found
}

/// from → to → the files that make the import.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    assert!(files.len() > 20, "found only {} source files under {}", files.len(), src.display());
    let mut g = Graph::new();
    for file in files {
        let Some(from) = top_level(src, &file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let entry = g.entry(from.clone()).or_default();
        for to in crate_imports(&strip(&text)) {
            if to != from && to != "self" && to != "super" {
                let rel = file.strip_prefix(src).unwrap_or(&file).display().to_string();
                entry.entry(to).or_default().insert(rel);
            }
        }
    }
    g
}

/// The rank of each module's layer (0 = top).
fn ranks() -> BTreeMap<&'static str, usize> {
    let mut ranks = BTreeMap::new();
    for (rank, (_, modules)) in LAYERS.iter().enumerate() {
        for m in *modules {
            assert!(ranks.insert(*m, rank).is_none(), "`{m}` is in two layers");
        }
    }
    ranks
}

/// Edges that go up the layer order, minus the known exceptions: (from, to, files).
fn upward(g: &Graph, ranks: &BTreeMap<&str, usize>) -> Vec<String> {
    let mut out = Vec::new();
    for (from, tos) in g {
        for (to, files) in tos {
            let (Some(rf), Some(rt)) = (ranks.get(from.as_str()), ranks.get(to.as_str())) else { continue };
            if rt < rf && !KNOWN_EXCEPTIONS.iter().any(|(f, t, _)| f == from && t == to) {
                out.push(format!("{from} ({}) imports {to} ({}), a layer above it, in {files:?}", LAYERS[*rf].0, LAYERS[*rt].0));
            }
        }
    }
    out
}

/// Every cycle's modules (strongly connected components of more than one module), over the
/// edges that are not known exceptions.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    let edges: BTreeMap<&str, Vec<&str>> = g
        .iter()
        .map(|(from, tos)| {
            let kept = tos.keys().filter(|to| !KNOWN_EXCEPTIONS.iter().any(|(f, t, _)| f == from && t == to)).map(String::as_str).collect();
            (from.as_str(), kept)
        })
        .collect();
    // Reachability by a depth-first walk from each module; a component is the modules that
    // reach each other. Small graph (a few dozen nodes): quadratic is fine.
    let reach = |start: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for &next in edges.get(n).into_iter().flatten() {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&str, BTreeSet<&str>> = edges.keys().map(|&n| (n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for (&n, r) in &reachable {
        if !r.contains(n) {
            continue;
        }
        let mut component: Vec<String> =
            r.iter().filter(|&&m| reachable.get(m).is_some_and(|back| back.contains(n))).map(|m| (*m).to_owned()).collect();
        component.sort();
        if !out.contains(&component) {
            out.push(component);
        }
    }
    out
}

#[test]
fn modules_import_only_downward_and_form_no_cycle() {
    let g = graph(&src_dir());
    let ranks = ranks();
    let mut problems = Vec::new();
    for m in g.keys() {
        if !ranks.contains_key(m.as_str()) {
            problems.push(format!("`{m}` has no layer: add it to LAYERS here and to ARCHITECTURE.md"));
        }
    }
    problems.extend(upward(&g, &ranks));
    for cycle in cycles(&g) {
        let files: Vec<String> = cycle
            .iter()
            .flat_map(|from| g[from].iter().filter(|(to, _)| cycle.contains(to)).map(move |(to, f)| format!("{from} -> {to} {f:?}")))
            .collect();
        problems.push(format!("cycle between {cycle:?}: {files:?}"));
    }
    for (from, to, why) in KNOWN_EXCEPTIONS {
        if !g.get(*from).is_some_and(|tos| tos.contains_key(*to)) {
            problems.push(format!("known exception {from} -> {to} ({why}) no longer occurs: remove it from KNOWN_EXCEPTIONS"));
        }
    }
    assert!(problems.is_empty(), "module graph:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_group_imports_and_ignores_comments_and_strings() {
    let code = strip(
        "use crate::{api::x, state::{A, B}, ids};\n/// [`crate::docs_only`]\nlet s = \"crate::in_string\";\nlet c = '\"'; crate::inline::f();\nmy_crate::not_this();",
    );
    let found: Vec<String> = crate_imports(&code).into_iter().collect();
    assert_eq!(found, ["api", "ids", "inline", "state"]);
}

#[test]
fn the_checker_finds_a_cycle_and_an_upward_import() {
    let mut g = Graph::new();
    let edge = |g: &mut Graph, from: &str, to: &str| {
        g.entry(from.into()).or_default().entry(to.into()).or_default().insert(format!("{from}.rs"));
    };
    edge(&mut g, "library", "rag");
    edge(&mut g, "rag", "library");
    edge(&mut g, "ids", "fault");
    assert_eq!(cycles(&g), vec![vec!["library".to_owned(), "rag".to_owned()]]);
    let up = upward(&g, &ranks());
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(up[0].starts_with("library (library) imports rag (retrieval)"), "{up:?}");
}
