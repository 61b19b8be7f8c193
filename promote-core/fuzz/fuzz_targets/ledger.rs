//! cargo-fuzz entry point of target `ledger` (see `src/ledger.rs`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| promote_core_fuzz::ledger::run(data));
