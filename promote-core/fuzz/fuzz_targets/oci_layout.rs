//! cargo-fuzz entry point of target `oci_layout` (see `src/oci_layout.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::oci_layout::run(data));
