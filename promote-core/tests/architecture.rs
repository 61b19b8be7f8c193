//! The workspace's layering, checked: no circle between the top-level modules of any crate (a module is
//! `src/X.rs` or `src/X/`; its `crate::` paths, and `super::` paths of a top-level file, are its imports),
//! except `digest`↔`error`, which the one-error rule implies. Comments and `#[cfg(test)]` modules are not
//! imports: unit tests may use the test kit of their own crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 4] = ["promote-core", "promote-oci", "promote-aws", "promote-k8s"];
const ALLOWED: [[&str; 2]; 1] = [["digest", "error"]];

#[test]
fn no_module_imports_another_in_a_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let mut found = Vec::new();
    for krate in CRATES {
        let graph = import_graph(&workspace.join(krate).join("src"));
        for circle in circles(&graph) {
            let allowed = ALLOWED.iter().any(|pair| circle.len() == 2 && pair.iter().all(|m| circle.contains(*m)));
            if !allowed {
                found.push(format!("{krate}: {}", circle.into_iter().collect::<Vec<_>>().join(" ↔ ")));
            }
        }
    }
    assert!(found.is_empty(), "modules that import each other in a circle:\n{}", found.join("\n"));
}

/// Each top-level module and the top-level modules it imports.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_dir() {
            files.insert(name, rust_files(&path));
        } else if let Some(module) = name.strip_suffix(".rs").filter(|m| !matches!(*m, "lib" | "main")) {
            files.insert(module.to_owned(), vec![path]);
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, paths)| {
            let single_file = paths.len() == 1 && paths[0].parent() == Some(src);
            let mut imports = BTreeSet::new();
            for path in paths {
                let text = std::fs::read_to_string(path).expect("read a source file");
                for target in imports_of(&without_tests_and_comments(&text), single_file) {
                    if modules.contains(&target) && &target != module {
                        imports.insert(target);
                    }
                }
            }
            (module.clone(), imports)
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read a module directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// The source up to its first `#[cfg(test)]` item, without comments.
fn without_tests_and_comments(text: &str) -> String {
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module names after `crate::` (and `super::`, for a module that is one file at the crate's top level).
fn imports_of(code: &str, single_file: bool) -> Vec<String> {
    let mut names = Vec::new();
    let prefixes: &[&str] = if single_file { &["crate::", "super::"] } else { &["crate::"] };
    for prefix in prefixes {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            names.push(name);
        }
        // `use crate::{a, b::c}` names several modules at once.
        for (at, _) in code.match_indices(&format!("{prefix}{{")) {
            let group = &code[at + prefix.len() + 1..];
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|part| {
                part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
            }));
        }
    }
    names
}

/// The strongly connected components of more than one module.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(module) = todo.pop() {
            for next in graph.get(&module).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reaches(m))).collect();
    let mut components: Vec<BTreeSet<String>> = Vec::new();
    for module in graph.keys() {
        let component: BTreeSet<String> = graph
            .keys()
            .filter(|other| other == &module || (reach[module].contains(*other) && reach[*other].contains(module)))
            .cloned()
            .collect();
        if component.len() > 1 && !components.contains(&component) {
            components.push(component);
        }
    }
    components
}
