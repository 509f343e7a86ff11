//! The modules of the engine and of the crypto crate depend on each other in one direction
//! only (issue #18; the picture is in docs/ARCHITECTURE.md). This test reads their sources,
//! builds the graph of which module names which (directly, `crate::module::…`, or through a
//! name the crate root re-exports, `crate::Name`), and fails on any cycle, naming it.
//!
//! The crate root (`lib.rs`) is the facade: it defines `Engine`, whose methods each module
//! adds in its own `impl Engine`, so it is not a node of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name → its source without its `#[cfg(test)]` module (tests may use anything).
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            out.insert(name, text);
        }
    }
    out
}

/// Names the crate root re-exports (`pub use module::{A, B};`) → the module they come from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = lib;
    while let Some(i) = rest.find("pub use ") {
        let stmt_end = rest[i..].find(';').map_or(rest.len(), |j| i + j);
        let stmt = &rest[i + 8..stmt_end];
        if let Some((module, names)) = stmt.split_once("::") {
            let names = names.trim().trim_start_matches('{').trim_end_matches('}');
            for n in names.split(',') {
                let n = n.trim();
                let n = n.rsplit("::").next().unwrap_or(n);
                let n = n.split(" as ").last().unwrap_or(n).trim();
                if !n.is_empty() {
                    out.insert(n.to_owned(), module.trim().to_owned());
                }
            }
        }
        rest = &rest[stmt_end..];
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `text` names `word` as a whole identifier right after `prefix`.
fn names(text: &str, prefix: &str, word: &str) -> bool {
    let needle = format!("{prefix}{word}");
    text.match_indices(&needle).any(|(i, _)| {
        let after = text[i + needle.len()..].chars().next();
        !after.is_some_and(is_ident)
    })
}

/// Every name inside `use crate::{…};` groups.
fn crate_groups(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use crate::{") {
        let body_start = i + "use crate::{".len();
        let end = rest[body_start..]
            .find("};")
            .map_or(rest.len(), |j| body_start + j);
        out.extend(
            rest[body_start..end]
                .split(|c: char| !is_ident(c))
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        rest = &rest[end..];
    }
    out
}

fn graph(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(crate_dir)
        .join("src");
    let mods = modules(&src);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let names_of = reexports(&lib);
    let mut g = BTreeMap::new();
    for (m, text) in &mods {
        let groups = crate_groups(text);
        let mut deps = BTreeSet::new();
        for other in mods.keys().filter(|o| *o != m) {
            if names(text, "crate::", &format!("{other}::"))
                || names(text, "crate::", other)
                || groups.iter().any(|g| g == other)
            {
                deps.insert(other.clone());
            }
        }
        for (name, from) in &names_of {
            if from != m
                && mods.contains_key(from)
                && (names(text, "crate::", name) || groups.iter().any(|g| g == name))
            {
                deps.insert(from.clone());
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// A cycle in `g`, if there is one, as the modules along it.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        n: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for d in &g[n] {
            if let Some(c) = visit(g, d, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_engines_modules_form_no_cycle() {
    let g = graph("crates/scaivault-engine");
    assert!(g.len() > 15, "the engine's modules were not found: {g:?}");
    // The layering docs/ARCHITECTURE.md draws, spot-checked.
    assert!(g["secrets"].contains("rotation_state"), "{g:#?}");
    assert!(g["rotation"].contains("secrets"), "{g:#?}");
    if let Some(c) = cycle(&g) {
        panic!("module cycle in the engine: {}\n{g:#?}", c.join(" → "));
    }
}

#[test]
fn the_crypto_crates_modules_form_no_cycle() {
    let g = graph("crates/scaivault-crypto");
    assert!(g["keys"].contains("aead"), "{g:#?}");
    if let Some(c) = cycle(&g) {
        panic!("module cycle in the crypto crate: {}", c.join(" → "));
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.insert("a".into(), ["b".to_owned()].into());
    g.insert("b".into(), ["c".to_owned()].into());
    g.insert("c".into(), ["a".to_owned()].into());
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert!(cycle(&g).is_none());
    let lib = "pub use secrets::{WriteOutcome, WriteRequest};\npub use caller::Caller;";
    let r = reexports(lib);
    assert_eq!(r["WriteRequest"], "secrets");
    assert_eq!(r["Caller"], "caller");
}
