//! An in-process fake Kubernetes API server for tests (feature `testing`; not a stable API).

#[allow(dead_code)] // Wired into the PATCH and write handlers as they land.
mod ssa;
