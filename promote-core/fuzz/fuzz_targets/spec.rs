//! cargo-fuzz entry point of target `spec` (see `src/spec.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::spec::run(data));
