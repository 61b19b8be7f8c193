//! cargo-fuzz entry point of target `documents` (see `src/documents.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::documents::run(data));
