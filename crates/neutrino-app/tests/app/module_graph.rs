//! The resource modules of `src/neutron/` never import each other in a circle: shared
//! constants and helpers have one home each (owners, scopes, router flavours, scheduling).
//! Reads the sources as text, so it needs no build of the graph by the compiler.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module name → the text of its files (a folder module is all of its files).
fn modules(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).expect("src/neutron") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            let mut text = String::new();
            for file in fs::read_dir(&path).expect("folder module") {
                text += &fs::read_to_string(file.expect("entry").path()).unwrap_or_default();
            }
            out.insert(name, text);
        } else if name != "mod" && path.extension().is_some_and(|e| e == "rs") {
            out.insert(name, fs::read_to_string(&path).expect("module"));
        }
    }
    out
}

/// The code of `text` without comments (doc links name modules without using them).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sibling modules `text` uses: `super::m::...`, `super::{m, ...}`, `neutron::m`.
fn uses(text: &str, siblings: &BTreeSet<String>, me: &str) -> BTreeSet<String> {
    let code = code(text);
    let mut found = BTreeSet::new();
    for prefix in ["super::", "neutron::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect()
            } else {
                vec![rest.split("::").next().unwrap_or("")]
            };
            for name in names {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != me && siblings.contains(&name) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// A path from `from` back to itself, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in &graph[&at] {
            if next == from {
                let mut path = path.clone();
                path.push(next.clone());
                return Some(path);
            }
            if seen.insert(next.clone()) {
                let mut path = path.clone();
                path.push(next.clone());
                stack.push((next.clone(), path));
            }
        }
    }
    None
}

#[test]
fn resource_modules_import_each_other_in_no_circle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/neutron");
    let sources = modules(&dir);
    let names: BTreeSet<String> = sources.keys().cloned().collect();
    assert!(
        names.contains("routers") && names.contains("ports"),
        "{names:?}"
    );
    let graph: BTreeMap<String, BTreeSet<String>> = sources
        .iter()
        .map(|(name, text)| (name.clone(), uses(text, &names, name)))
        .collect();
    assert!(
        graph["routers"].contains("ports"),
        "the reader finds imports"
    );
    let circles: Vec<String> = names
        .iter()
        .filter_map(|m| circle(&graph, m))
        .map(|path| path.join(" → "))
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
