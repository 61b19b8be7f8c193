//! Replays every committed input of promote-core's `oci_layout` fuzz target (its corpus and the inputs that
//! once crashed it) through the target's own `run`, on stable Rust and without a fuzzer. See
//! `promote-core/fuzz/README.md`.

#[path = "../../promote-core/fuzz/src/common.rs"]
#[allow(dead_code, reason = "the canary helpers serve the render targets, which replay in promote-core")]
mod common;
#[path = "../../promote-core/fuzz/src/oci_layout.rs"]
mod oci_layout;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|entry| entry.expect("list a fuzz directory").path()).collect();
    files.retain(|path| path.is_file());
    files.sort();
    files
}

#[test]
fn oci_layout_inputs_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../promote-core/fuzz");
    let corpus = inputs(&fuzz.join("corpus/oci_layout"));
    assert!(!corpus.is_empty(), "promote-core/fuzz/corpus/oci_layout holds no inputs: the replay would prove nothing");
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&inputs(&fuzz.join("artifacts/oci_layout"))) {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| oci_layout::run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{} input(s) of target oci_layout fail:\n{}", failed.len(), failed.join("\n"));
}
