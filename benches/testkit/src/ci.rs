//! Tests that need a third-party binary skip with a printed reason when it is missing, except under CI (the
//! `CI` variable is set), where a missing binary fails the test: CI must never pass by skipping.

use std::path::PathBuf;

/// Finds `binary` on `PATH`.
pub fn find_binary(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
}

/// Whether `binary` is on `PATH`. When it is not: under CI this panics (naming `install`, how to get it);
/// otherwise it prints why the test skips and returns `false`.
pub fn require(binary: &str, install: &str) -> bool {
    if find_binary(binary).is_some() {
        return true;
    }
    if under_ci() {
        panic!("`{binary}` is required when CI is set ({install})");
    }
    eprintln!("SKIPPED: `{binary}` is not installed ({install}); with CI set this test fails instead");
    false
}

/// Whether the tests run under CI.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}
