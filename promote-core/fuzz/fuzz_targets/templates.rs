//! cargo-fuzz entry point of target `templates` (see `src/templates.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::templates::run(data));
