//! The fuzz targets of promote-core (and of promote-oci's layout walk): one module per target, each with a
//! `run(&[u8])` that the cargo-fuzz binary in `fuzz_targets/` calls and that the replay tests
//! (`promote-core/tests/fuzz_corpora.rs`, `promote-oci/tests/fuzz_corpora.rs`) compile from the same file.

pub mod common;
pub mod documents;
pub mod ledger;
pub mod oci_layout;
pub mod reference;
pub mod render;
pub mod spec;
pub mod templates;
