//! The layout's rules, read from the sources: no cycle between core's modules (file by file),
//! the model imports nothing above it, channels' parsers import no flow, and a flow imports no
//! other flow's internals. A new import that breaks one fails here, naming the files.
//!
//! Test code (`#[cfg(test)]` modules, `tests.rs`, `fakes.rs`) is left out: tests may reach
//! across. References are read from `crate::` and `super::` paths and, in a `mod.rs` or
//! `lib.rs`, bare paths through the module's own children.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Module = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The code outside test modules, without comments: a `#[cfg(test)]` module is skipped, its
/// declaration (`mod tests;`) or its braces, wherever it stands in the file.
fn production_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]")
            && let Some(next) = lines.peek()
            && next.trim_start().starts_with("mod ")
        {
            let mut depth = 0i64;
            for module_line in lines.by_ref() {
                depth += module_line.matches('{').count() as i64;
                depth -= module_line.matches('}').count() as i64;
                let declared_only = module_line.trim_end().ends_with(';') && depth == 0;
                if declared_only || (depth <= 0 && module_line.contains('}')) {
                    break;
                }
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a file names, as segments from the crate root: `crate::a::b`, `super::c` and
/// the items of `use crate::{a, b::c}` groups; in a module's root file also `child::x`.
fn referenced_paths(code: &str, module: &Module, children: &BTreeSet<String>) -> Vec<Module> {
    let mut paths = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if i > 0 && (is_ident(chars[i - 1]) || chars[i - 1] == ':') {
            i += 1;
            continue;
        }
        let word_end = (i..chars.len())
            .find(|&j| !is_ident(chars[j]))
            .unwrap_or(chars.len());
        let word: String = chars[i..word_end].iter().collect();
        let followed_by_path =
            chars.get(word_end) == Some(&':') && chars.get(word_end + 1) == Some(&':');
        let base: Option<Module> = match word.as_str() {
            // `pub(crate)` and `pub(super)` name no module.
            "crate" | "super" if !followed_by_path => None,
            "crate" => Some(Vec::new()),
            "super" => {
                let mut parent = module.clone();
                parent.pop();
                Some(parent)
            }
            child if children.contains(child) => {
                // A bare path through a child module (only when followed by `::`).
                followed_by_path.then(|| module.clone())
            }
            _ => None,
        };
        let Some(base) = base else {
            i = word_end.max(i + 1);
            continue;
        };
        // For a bare child path the word itself is the first segment.
        let mut j = if word == "crate" || word == "super" {
            word_end
        } else {
            i
        };
        let mut segments = base;
        loop {
            if word != "crate" && word != "super" && j == i {
                // fallthrough: read the child's name as a segment below
            } else if chars.get(j) == Some(&':') && chars.get(j + 1) == Some(&':') {
                j += 2;
            } else {
                break;
            }
            if chars.get(j) == Some(&'{') {
                // A group: each top-level item is a path of its own.
                let mut depth = 0;
                let mut item = String::new();
                let mut k = j + 1;
                while k < chars.len() {
                    let c = chars[k];
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if c == ',' && depth == 0 {
                        push_group_item(&mut paths, &segments, &item);
                        item.clear();
                    } else {
                        item.push(c);
                    }
                    k += 1;
                }
                push_group_item(&mut paths, &segments, &item);
                j = k;
                segments.clear();
                break;
            }
            let end = (j..chars.len())
                .find(|&k| !is_ident(chars[k]))
                .unwrap_or(chars.len());
            if end == j {
                break;
            }
            segments.push(chars[j..end].iter().collect());
            j = end;
        }
        if !segments.is_empty() {
            paths.push(segments);
        }
        i = j.max(i + 1);
    }
    paths
}

fn push_group_item(paths: &mut Vec<Module>, base: &Module, item: &str) {
    let first = item.trim().split("::").next().unwrap_or("").trim();
    let first = first.split_whitespace().next().unwrap_or("");
    if first.is_empty() || first == "self" || first == "*" || first.starts_with('{') {
        if !base.is_empty() {
            paths.push(base.clone());
        }
        return;
    }
    let mut path = base.clone();
    path.extend(
        item.trim()
            .split("::")
            .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
            .take_while(|s| !s.is_empty() && !s.starts_with('{')),
    );
    paths.push(path);
}

/// The longest known module a path starts with.
fn resolve(path: &Module, modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains(prefix))
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".to_owned()
    } else {
        module.join("::")
    }
}

struct Graph {
    edges: BTreeMap<Module, BTreeSet<Module>>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let production: Vec<(Module, String)> = files
        .iter()
        // Test-only modules: `tests.rs`, anything under a `tests/` folder, the fakes.
        .filter(|f| {
            let relative = f.strip_prefix(&src).unwrap_or(f);
            !relative.components().any(|c| {
                let part = c.as_os_str().to_string_lossy();
                part == "tests" || part == "tests.rs" || part == "fakes.rs"
            })
        })
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            Some((module_of(&src, f), production_code(&text)))
        })
        .collect();
    let modules: BTreeSet<Module> = production.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, code) in &production {
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
        let targets = edges.entry(module.clone()).or_default();
        for path in referenced_paths(code, module, &children) {
            if let Some(target) = resolve(&path, &modules)
                && &target != module
                && !target.is_empty()
            {
                targets.insert(target);
            }
        }
    }
    Graph { edges }
}

fn find_cycle(graph: &Graph) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &Graph,
        done: &mut BTreeSet<Module>,
        stack: &mut Vec<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|m| m == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .edges
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn top(module: &Module) -> &str {
    module.first().map(String::as_str).unwrap_or("")
}

#[test]
fn core_has_no_module_cycle() {
    let graph = graph();
    // The graph must see the layout, or the check would pass on nothing.
    let orders: Module = vec!["flows".into(), "orders".into()];
    assert!(
        graph
            .edges
            .get(&orders)
            .is_some_and(|t| t.contains(&vec!["ports".to_owned()])),
        "the reader no longer sees flows::orders import the ports: {:?}",
        graph.edges.get(&orders)
    );
    if let Some(cycle) = find_cycle(&graph) {
        let names: Vec<String> = cycle.iter().map(name).collect();
        panic!("a module cycle in shared/core: {}", names.join(" -> "));
    }
}

#[test]
fn core_s_folders_import_each_other_without_a_cycle() {
    let files = graph();
    let mut folders = Graph {
        edges: BTreeMap::new(),
    };
    for (from, targets) in &files.edges {
        let from_top = vec![top(from).to_owned()];
        let entry = folders.edges.entry(from_top.clone()).or_default();
        for to in targets {
            let to_top = vec![top(to).to_owned()];
            if to_top != from_top {
                entry.insert(to_top);
            }
        }
    }
    if let Some(cycle) = find_cycle(&folders) {
        let names: Vec<String> = cycle.iter().map(name).collect();
        panic!(
            "a cycle between shared/core's folders: {}",
            names.join(" -> ")
        );
    }
}

#[test]
fn each_layer_imports_only_what_lies_below_it() {
    let graph = graph();
    let mut broken = Vec::new();
    for (from, targets) in &graph.edges {
        for to in targets {
            let rule = match (top(from), top(to)) {
                ("model", other) if !matches!(other, "model" | "error") => {
                    Some("the model imports only the model")
                }
                ("channels", "flows" | "ports" | "runtime") => {
                    Some("a channel's parser produces the model and imports no flow or port")
                }
                ("flows", "flows") if from.get(1) != to.get(1) => {
                    Some("a flow imports no other flow (move what two share down)")
                }
                ("ports" | "mapping" | "config" | "runtime" | "error", "flows" | "channels") => {
                    Some("what lies below the flows imports no flow or channel")
                }
                _ => None,
            };
            if let Some(rule) = rule {
                broken.push(format!("{} -> {}: {rule}", name(from), name(to)));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_reader_sees_paths_groups_and_children() {
    let module: Module = vec!["flows".into(), "orders".into()];
    let children: BTreeSet<String> = ["edits".to_owned()].into();
    let code = "use crate::{config::Config, model::ids::Sku};\nuse super::stock;\nlet p = edits::plan();\nlet q = crate::ports::once(x);\n";
    let paths = referenced_paths(code, &module, &children);
    let names: Vec<String> = paths.iter().map(name).collect();
    assert_eq!(
        names,
        [
            "config::Config",
            "model::ids::Sku",
            "flows::stock",
            "flows::orders::edits::plan",
            "ports::once"
        ]
    );
}
