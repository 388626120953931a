//! No import circles between the source files of a crate.
//!
//! A module that imports another through `crate::` or `super::` depends on it;
//! a circle of such imports means neither side can be read, tested or moved
//! without the other. For each crate under `crates/*/src` this scans every
//! non-test source file for those paths (doc links count: they name the module
//! too), builds the module graph and finds its strongly connected components.
//!
//! Circles that existed when the check was written are listed in [`KNOWN`]. The
//! list may only shrink: the test fails when a circle appears that is not in it,
//! and also when a listed circle is gone, so that its entry is removed with the
//! fix and cannot hide a new circle between the same modules later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;

/// Circles still to be removed, as `crates/<crate>: <module>, <module>, ...`
/// with the modules sorted.
const KNOWN: &[&str] = &[];

#[test]
fn no_new_import_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let found: BTreeSet<String> = circles(root).into_iter().collect();
    let known: BTreeSet<String> = KNOWN.iter().map(|circle| (*circle).to_owned()).collect();
    let new: Vec<&String> = found.difference(&known).collect();
    let gone: Vec<&String> = known.difference(&found).collect();
    assert!(new.is_empty(), "import circles that must be broken: {new:?}");
    assert!(gone.is_empty(), "circles gone, remove them from KNOWN in modcycles.rs: {gone:?}");
}

#[test]
fn a_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("crates/demo/src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("tests")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\nmod c;\n").unwrap();
    std::fs::write(src.join("a.rs"), "mod inner;\nuse crate::b::Thing;\n").unwrap();
    std::fs::write(src.join("a/inner.rs"), "use crate::c::One;\n").unwrap();
    std::fs::write(src.join("b.rs"), "use crate::{c::One, a::Two};\n").unwrap();
    // Imports from tests do not count, in a test module or a test directory.
    std::fs::write(src.join("c.rs"), "#[cfg(test)]\nmod tests {\n use crate::b;\n}\n").unwrap();
    std::fs::write(src.join("tests/x.rs"), "use crate::a;\n").unwrap();
    assert_eq!(circles(dir.path()), ["crates/demo: a, b"]);
    // A doc link names a module too; `super::` of a top-level module is the root.
    std::fs::write(src.join("c.rs"), "/// See [`super::a::inner`].\npub struct One;\n").unwrap();
    assert_eq!(circles(dir.path()), ["crates/demo: a, b", "crates/demo: a::inner, c"]);
}

/// Every import circle of every crate under `root/crates`, sorted.
fn circles(root: &Path) -> Vec<String> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .map(|entry| entry.expect("crates/ entry").path())
        .collect();
    crates.sort();
    let mut out = Vec::new();
    for dir in crates {
        let src = dir.join("src");
        if !src.is_dir() {
            continue;
        }
        let name = dir.file_name().expect("crate dir").to_string_lossy().into_owned();
        let graph = module_graph(&src);
        for component in strongly_connected(&graph) {
            out.push(format!("crates/{name}: {}", component.join(", ")));
        }
    }
    out
}

/// Module path (`a::b`, `""` for the crate root) -> the modules its file names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    collect_modules(src, src, &mut files);
    let test_module = Regex::new(r"#\[cfg\(test\)\]\s*mod\s+tests").unwrap();
    let path =
        Regex::new(r"\b(crate|super)::((?:[a-z_][a-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*|\{)").unwrap();
    let brace_item = Regex::new(r"([a-z_][a-z0-9_]*)::").unwrap();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &files {
        let whole = std::fs::read_to_string(file).expect("source file");
        let text = test_module.split(&whole).next().unwrap_or("");
        let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
        let targets = edges.entry(module.clone()).or_default();
        for hit in path.captures_iter(text) {
            let base = if &hit[1] == "crate" { "" } else { parent };
            let within = |item: &[&str]| {
                let mut segments: Vec<&str> = Vec::new();
                if !base.is_empty() {
                    segments.push(base);
                }
                segments.extend_from_slice(item);
                segments.join("::")
            };
            let parts: Vec<&str> =
                hit[2].split("::").filter(|part| !part.is_empty() && *part != "{").collect();
            // The longest prefix of the path that names a module.
            let best = (1..=parts.len())
                .rev()
                .map(|len| within(&parts[..len]))
                .find(|candidate| files.contains_key(candidate));
            if best.is_none() && &hit[2] == "{" {
                // `crate::{a::X, b::Y}`: each item's first segment.
                let after = hit.get(0).expect("whole match").end();
                let group = &text[after..text[after..].find('}').map_or(text.len(), |i| after + i)];
                for item in brace_item.captures_iter(group) {
                    let candidate = within(&[&item[1]]);
                    if files.contains_key(&candidate) && &candidate != module {
                        targets.insert(candidate);
                    }
                }
                continue;
            }
            if let Some(best) = best
                && &best != module
                && !best.is_empty()
            {
                targets.insert(best);
            }
        }
    }
    edges
}

/// Adds each non-test `.rs` file under `dir` to `files` by module path.
fn collect_modules(src: &Path, dir: &Path, files: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("source dir")
        .map(|entry| entry.expect("source dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let relative = path.strip_prefix(src).expect("under src");
        if path.is_dir() {
            if relative.file_name().is_some_and(|name| name.to_string_lossy().starts_with("tests"))
            {
                continue;
            }
            collect_modules(src, &path, files);
            continue;
        }
        let name = path.file_name().expect("file name").to_string_lossy();
        if !name.ends_with(".rs") || name == "tests.rs" || name == "testing.rs" {
            continue;
        }
        let mut segments: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|segment| segment.to_string_lossy().into_owned())
            .collect();
        if segments.last().is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str())) {
            segments.pop();
        }
        files.insert(segments.join("::"), path);
    }
}

/// The strongly connected components of more than one module (Tarjan), each
/// sorted, in a stable order.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let number = self.index.len();
            self.index.insert(node, number);
            self.low.insert(node, number);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.components.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.components.sort();
    walk.components
}
