//! cargo-fuzz entry point of target `reference` (see `src/reference.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::reference::run(data));
