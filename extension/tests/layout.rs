//! The crate's layout keeps its shape: no two files of `src/` import each other, directly or
//! round a longer loop; configuration imports nothing it configures; no function is over
//! [`MAX_FN_LINES`] lines and no `impl` block over [`MAX_IMPL_LINES`]. A file's imports are the `crate::`, `super::` and `self::` paths of its
//! code (comments and its `#[cfg(test)]` module aside), each taken to the file that defines the
//! module it names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its module path (`decision::ledger`; `` for lib.rs).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| {
            let rel = f
                .strip_prefix(src)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            (parts.join("::"), f)
        })
        .collect()
}

/// The file's code: no comment lines, no `#[cfg(test)]` module (it comes last in every file).
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names: `crate::a::b::C`, `super::x`, `self::y`, and each name of a
/// `use crate::{a, b::c}` group, absolute.
fn paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut found = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", here[..here.len().saturating_sub(1)].to_vec()),
        ("self::", here.clone()),
    ] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| ident(c) || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let item: Vec<String> = item
                        .trim()
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .take_while(|s| !s.is_empty() && s.chars().all(ident))
                        .collect();
                    found.push(base.iter().cloned().chain(item).collect());
                }
                continue;
            }
            // A path goes on while each segment is a name and nothing else.
            let mut path = Vec::new();
            for segment in rest.split("::") {
                let name: String = segment.chars().take_while(|&c| ident(c)).collect();
                if name.is_empty() {
                    break;
                }
                let whole = name.len() == segment.len();
                path.push(name);
                if !whole {
                    break;
                }
            }
            found.push(base.iter().cloned().chain(path).collect());
        }
    }
    found
}

/// Which file each file imports from.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = code(
            &std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        );
        let mut to = BTreeSet::new();
        for path in paths(module, &text) {
            // The longest prefix of the path that is a file of the crate.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].join("::"))
                .find(|m| modules.contains_key(m));
            if let Some(target) = target.filter(|t| t != module) {
                to.insert(target);
            }
        }
        graph.insert(module.clone(), to);
    }
    graph
}

/// The loops in `graph`, each once, as the modules round it.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        node: &str,
        path: &mut Vec<String>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                // Each loop once: rotated to start at its smallest name.
                let min = path
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, m)| *m)
                    .map(|(i, _)| i);
                let mut ring = path.clone();
                ring.rotate_left(min.unwrap_or(0));
                found.insert(ring);
            } else if !path.contains(next) && next.as_str() > start && path.len() < 12 {
                path.push(next.clone());
                visit(graph, start, next, path, found);
                path.pop();
            }
        }
    }
    for start in graph.keys() {
        visit(graph, start, start, &mut vec![start.clone()], &mut found);
    }
    found.into_iter().collect()
}

#[test]
fn no_two_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    assert!(graph.len() > 20, "{} files", graph.len());
    let loops = cycles(&graph);
    assert!(
        loops.is_empty(),
        "import cycles between files of extension/src:\n{}",
        loops
            .iter()
            .map(|l| format!("  {} -> {}", l.join(" -> "), l[0]))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The invocation core knows no transport, and the two transports (the blocking threads and
/// hyper) meet only through it: neither imports the other, the core imports neither, and both
/// drive the core.
#[test]
fn the_transports_meet_only_in_the_invocation_core() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    let within = |m: &str, room: &str| m == room || m.starts_with(&format!("{room}::"));
    const CORE: &str = "runtime_api::invocation";
    const TRANSPORTS: [&str; 2] = ["runtime_api::forwarder", "runtime_api::proxy"];
    let core: Vec<_> = graph.keys().filter(|m| within(m, CORE)).collect();
    assert!(core.len() >= 3, "{core:?}");
    for (module, to) in &graph {
        let own = TRANSPORTS.iter().find(|t| within(module, t));
        if own.is_none() && !within(module, CORE) {
            continue;
        }
        for transport in TRANSPORTS.iter().filter(|t| Some(*t) != own) {
            let reached: Vec<_> = to.iter().filter(|m| within(m, transport)).collect();
            assert!(reached.is_empty(), "{module} imports {reached:?}");
        }
    }
    for transport in TRANSPORTS {
        let to = &graph[transport];
        assert!(
            to.iter().any(|m| within(m, CORE)),
            "{transport} does not drive the core: {to:?}"
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_loop_and_its_files() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a", "d"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    // Paths resolve to the file that defines them, from `crate::`, `super::` and groups.
    let p = paths(
        "coordinator::redis",
        "use crate::{lease::Lease, config};\nuse super::Coordinator;\nlet x = crate::decision::ledger::InFlight::new();",
    );
    assert!(
        p.contains(&vec!["lease".to_string(), "Lease".to_string()]),
        "{p:?}"
    );
    assert!(p.contains(&vec!["config".to_string()]), "{p:?}");
    assert!(
        p.contains(&vec!["coordinator".to_string(), "Coordinator".to_string()]),
        "{p:?}"
    );
    assert!(p.contains(&vec![
        "decision".to_string(),
        "ledger".to_string(),
        "InFlight".to_string(),
        "new".to_string()
    ]));
}

/// Configuration holds plain data that the parts it configures read: it imports none of them.
#[test]
fn configuration_imports_nothing_it_configures() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = imports(&src);
    let config: Vec<_> = graph
        .iter()
        .filter(|(m, _)| *m == "config" || m.starts_with("config::"))
        .collect();
    assert!(config.len() >= 3, "{config:?}");
    for (module, to) in config {
        let outside: Vec<_> = to
            .iter()
            .filter(|t| *t != "config" && !t.starts_with("config::"))
            .collect();
        assert!(outside.is_empty(), "{module} imports {outside:?}");
    }
}

/// The longest function of the crate, in lines (signature and closing brace included).
const MAX_FN_LINES: usize = 60;
/// The longest `impl` block.
const MAX_IMPL_LINES: usize = 300;

/// The functions and `impl` blocks of `text` (tests aside) longer than the bounds, as
/// `(name, lines)`. rustfmt's layout is assumed: a block ends at a `}` at its own indentation.
fn too_long(text: &str) -> Vec<(String, usize)> {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    let lines: Vec<&str> = text[..end].lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let mut rest = line.trim_start();
        for qualifier in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "async ",
            "unsafe ",
        ] {
            rest = rest.strip_prefix(qualifier).unwrap_or(rest);
        }
        let (name, bound) = if let Some(f) = rest.strip_prefix("fn ") {
            let name: String = f
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (format!("fn {name}"), MAX_FN_LINES)
        } else if indent == 0 && (rest.starts_with("impl ") || rest.starts_with("impl<")) {
            (rest.trim_end_matches(" {").to_string(), MAX_IMPL_LINES)
        } else {
            continue;
        };
        let close = format!("{}}}", " ".repeat(indent));
        let mut opened = false;
        let mut length = None;
        for (j, l) in lines.iter().enumerate().skip(i) {
            opened |= l.contains('{');
            if !opened && l.trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            if (j == i && opened && l.trim_end().ends_with('}')) || *l == close {
                length = Some(j - i + 1);
                break;
            }
        }
        if let Some(n) = length.filter(|&n| n > bound) {
            found.push((name, n));
        }
    }
    found
}

#[test]
fn no_function_or_impl_is_too_long_to_read_whole() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut long = Vec::new();
    for (module, file) in modules(&src) {
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (name, n) in too_long(&text) {
            long.push(format!("  {module}: {name}: {n} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_FN_LINES} lines a function, {MAX_IMPL_LINES} an impl:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_measures_functions_and_impls() {
    let body = |n: usize| "        x();\n".repeat(n);
    let text = format!(
        "impl A {{\n    pub fn short() {{\n{}    }}\n\n    fn long(\n        a: u8,\n    ) -> u8 {{\n{}    }}\n    fn declared(&self);\n}}\n\nfn one() {{ x() }}\n",
        body(10),
        body(70)
    );
    assert_eq!(too_long(&text), vec![("fn long".to_string(), 74)]);
    let big = format!("impl B {{\n{}}}\n", body(310));
    assert_eq!(too_long(&big), vec![("impl B".to_string(), 312)]);
}
