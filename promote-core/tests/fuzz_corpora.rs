//! Replays every committed fuzz input, on stable Rust and without a fuzzer: each file of
//! `fuzz/corpus/<target>/` (the minimised corpus a fuzzing campaign kept) and of `fuzz/artifacts/<target>/`
//! (inputs that once crashed or hung a target, kept as regression tests) goes through the same `run`
//! function the cargo-fuzz target calls, with its assertions. The OCI layout target replays in
//! promote-oci's tests. How to fuzz for longer: `fuzz/README.md`.

#[path = "../fuzz/src/common.rs"]
mod common;
#[path = "../fuzz/src/documents.rs"]
mod documents;
#[path = "../fuzz/src/ledger.rs"]
mod ledger;
#[path = "../fuzz/src/reference.rs"]
mod reference;
#[path = "../fuzz/src/render.rs"]
mod render;
#[path = "../fuzz/src/spec.rs"]
mod spec;
#[path = "../fuzz/src/templates.rs"]
mod templates;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Runs every committed input of `target` through `run`; fails naming each input that panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = inputs(&fuzz.join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target} holds no inputs: the replay would prove nothing");
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&inputs(&fuzz.join("artifacts").join(target))) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{} input(s) of target {target} fail:\n{}", failed.len(), failed.join("\n"));
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("list a fuzz directory").path())
        .filter(|path| path.is_file() && !path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

#[test]
fn reference_inputs_replay() {
    replay("reference", reference::run);
}

#[test]
fn spec_inputs_replay() {
    replay("spec", spec::run);
}

#[test]
fn ledger_inputs_replay() {
    replay("ledger", ledger::run);
}

#[test]
fn documents_inputs_replay() {
    replay("documents", documents::run);
}

#[test]
fn templates_inputs_replay() {
    replay("templates", templates::run);
}
